using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using SparseAttention.Generators.Helpers;
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

    /// <summary>The runtime type behind the tensor and packed-sequence overloads; they are emitted only when it is referenced.</summary>
    public const string TensorAttentionTypeName = "SparseAttention.Tensors.TensorAttention";

    /// <summary>Tracking names of the pipeline steps, for incrementality tests.</summary>
    public static class TrackingNames
    {
        public const string Parse = nameof(Parse);
        public const string Kernels = nameof(Kernels);
        public const string GpuAvailable = nameof(GpuAvailable);
        public const string TensorsAvailable = nameof(TensorsAvailable);
        public const string Outputs = nameof(Outputs);
        public const string SharedKernels = nameof(SharedKernels);
    }

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        // Validation is reported by AttentionAnalyzer; here an invalid declaration simply yields no model and no code.
        IncrementalValuesProvider<KernelModel> kernels = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                AttentionKernelAttributeName,
                predicate: static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax,
                transform: static (context, cancellationToken) => IsFirstKernelDeclaration(context)
                    ? Parser.Parse((INamedTypeSymbol)context.TargetSymbol, diagnostics: null, cancellationToken)
                    : null)
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

        // Likewise for the tensor plumbing (System.Numerics.Tensors through the runtime's TensorAttention).
        IncrementalValueProvider<bool> tensorsAvailable = context.CompilationProvider
            .Select(static (compilation, _) =>
                compilation.GetTypeByMetadataName(TensorAttentionTypeName) is not null
                && compilation.GetTypeByMetadataName("System.Numerics.Tensors.ReadOnlyTensorSpan`1") is not null)
            .WithTrackingName(TrackingNames.TensorsAvailable);

        IncrementalValuesProvider<KernelModel> outputs = kernels
            .Combine(gpuAvailable)
            .Combine(tensorsAvailable)
            .Select(static (pair, _) => pair.Left.Left with { EmitGpu = pair.Left.Right, EmitTensors = pair.Right })
            .WithTrackingName(TrackingNames.Outputs);
        context.RegisterSourceOutput(outputs, static (output, kernel) => AddKernel(output, kernel));

        // The kernels that depend only on HeadDim, once per compilation per HeadDim in use: a second declaration with the
        // same HeadDim adds only its public members. The distinct HeadDims compare by value, so most edits stop here.
        // SelectMany's items are compared by position, so the HeadDims keep their order of first declaration (not sorted):
        // a declaration of a new HeadDim in a new file appends one item and leaves the other HeadDims' files cached.
        IncrementalValuesProvider<SharedKernelsModel> shared = kernels
            .Select(static (kernel, _) => new SharedKernelsUse(kernel.Pattern.HeadDim, kernel.Pattern.GridAxes > 0))
            .Collect()
            .Select(static (uses, _) => new EquatableArray<SharedKernelsUse>(MergeByHeadDim(uses)))
            .Combine(gpuAvailable)
            .SelectMany(static (pair, _) => pair.Left.AsImmutableArray().Select(use => new SharedKernelsModel(use.HeadDim, pair.Right, use.Neighborhood)))
            .WithTrackingName(TrackingNames.SharedKernels);
        context.RegisterSourceOutput(shared, static (output, model) => AddSharedKernels(output, model));
    }

    /// <summary>One use per HeadDim, in order of first declaration, with a neighbourhood if any declaration of it has one.</summary>
    private static SharedKernelsUse[] MergeByHeadDim(ImmutableArray<SharedKernelsUse> uses)
    {
        var merged = new List<SharedKernelsUse>();
        foreach (SharedKernelsUse use in uses)
        {
            int index = merged.FindIndex(existing => existing.HeadDim == use.HeadDim);
            if (index < 0)
            {
                merged.Add(use);
            }
            else if (use.Neighborhood)
            {
                merged[index] = use;
            }
        }

        return merged.ToArray();
    }

    /// <summary>Adds one HeadDim's shared kernels; an emitter failure is SPA0014, as for a declaration.</summary>
    private static void AddSharedKernels(SourceProductionContext output, SharedKernelsModel model)
    {
        string source;
        try
        {
            source = Emitter.EmitSharedKernels(model.HeadDim, model.EmitGpu, model.EmitNeighborhoodTile);
        }
        catch (System.Exception exception) when (exception is not System.OperationCanceledException)
        {
            output.ReportDiagnostic(Diagnostic.Create(Diagnostics.DiagnosticDescriptors.GenerationFailed, Location.None, "the shared kernels of HeadDim " + model.HeadDim, exception.GetType().Name + ": " + exception.Message));
            return;
        }

        output.AddSource(Emitter.SharedHintName(model.HeadDim), source);
    }

    /// <summary>
    /// Adds one kernel's source. An exception in a source output makes the compiler drop every generator output (CS8785),
    /// so an emitter failure — always a bug — is kept to this declaration: no code for it, and SPA0014 naming it. The
    /// compiler checks hint names after this callback returns, so those are made legal and unique by construction
    /// (<see cref="Emitter.HintName"/>, one model per type).
    /// </summary>
    private static void AddKernel(SourceProductionContext output, KernelModel kernel)
    {
        if (Emitter.TryEmit(kernel, out string hintName, out string source, out string? failure))
        {
            output.AddSource(hintName, source);
        }
        else
        {
            output.ReportDiagnostic(Diagnostic.Create(Diagnostics.DiagnosticDescriptors.GenerationFailed, Location.None, kernel.Hierarchy.FullName, failure));
        }
    }

    /// <summary>
    /// Whether this syntax node carries the type's first <c>[AttentionKernel]</c>. A partial class with the attribute on
    /// two parts (the compiler's CS0579) reaches the pipeline once per part; one model per type keeps its hint name unique.
    /// </summary>
    private static bool IsFirstKernelDeclaration(GeneratorAttributeSyntaxContext context)
    {
        SyntaxReference? first = null;
        foreach (AttributeData attribute in context.TargetSymbol.GetAttributes())
        {
            if (attribute.AttributeClass?.ToDisplayString() == AttentionKernelAttributeName)
            {
                first = attribute.ApplicationSyntaxReference;
                break;
            }
        }

        // context.Attributes lists the matching attributes of every part, so the test is on the node: does the first
        // attribute's list belong to this declaration?
        return first is null || first.SyntaxTree == context.TargetNode.SyntaxTree && first.GetSyntax().Parent?.Parent == context.TargetNode;
    }
}
