using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using SparseAttention.Generators.Models;

namespace SparseAttention.Generators;

/// <summary>
/// The SparseAttention source generator. For each <c>static partial class</c> marked
/// <c>[AttentionKernel]</c> it emits <c>HeadDim</c>, <c>Pattern</c>, <c>Forward</c> and one row kernel per
/// instruction set, specialised to the declared pattern.
/// </summary>
/// <remarks>
/// Pipeline: <see cref="SyntaxValueProvider.ForAttributeWithMetadataName"/> → <see cref="Parser"/> (all semantic
/// work; returns values only, null for an invalid declaration) → <see cref="Emitter"/>. Diagnostics never travel
/// on this path: <see cref="AttentionAnalyzer"/> runs the same parser and reports them. Tracking names let the
/// tests prove that an unrelated edit does not re-run the emit step.
/// </remarks>
[Generator(LanguageNames.CSharp)]
public sealed partial class AttentionGenerator : IIncrementalGenerator
{
    public const string AttentionKernelAttributeName = "SparseAttention.AttentionKernelAttribute";

    /// <summary>The runtime type the emitted ILGPU code builds on; without it (and ILGPU) only CPU kernels are emitted.</summary>
    public const string GpuKernelTypeName = "SparseAttention.Gpu.GpuAttentionKernel";

    /// <summary>Tracking names of the pipeline steps, for incrementality tests.</summary>
    public static class TrackingNames
    {
        public const string Parse = nameof(Parse);
        public const string Kernels = nameof(Kernels);
        public const string GpuAvailable = nameof(GpuAvailable);
        public const string Outputs = nameof(Outputs);
    }

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        // Validation is reported by AttentionAnalyzer; here an invalid declaration simply yields no model and no code.
        IncrementalValuesProvider<KernelModel> kernels = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                AttentionKernelAttributeName,
                predicate: static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax,
                transform: static (context, cancellationToken) => Parser.Parse((INamedTypeSymbol)context.TargetSymbol, diagnostics: null, cancellationToken))
            .WithTrackingName(TrackingNames.Parse)
            .Where(static kernel => kernel is not null)
            .Select(static (kernel, _) => kernel!)
            .WithTrackingName(TrackingNames.Kernels);

        // A bool, so that edits which do not change whether the GPU plumbing is referenced stop here.
        IncrementalValueProvider<bool> gpuAvailable = context.CompilationProvider
            .Select(static (compilation, _) =>
                compilation.GetTypeByMetadataName(GpuKernelTypeName) is not null
                && compilation.GetTypeByMetadataName("ILGPU.Runtime.Accelerator") is not null)
            .WithTrackingName(TrackingNames.GpuAvailable);

        IncrementalValuesProvider<KernelModel> outputs = kernels
            .Combine(gpuAvailable)
            .Select(static (pair, _) => pair.Left with { EmitGpu = pair.Right })
            .WithTrackingName(TrackingNames.Outputs);
        context.RegisterSourceOutput(outputs, static (output, kernel) =>
            output.AddSource(Emitter.HintName(kernel), Emitter.Emit(kernel)));
    }
}
