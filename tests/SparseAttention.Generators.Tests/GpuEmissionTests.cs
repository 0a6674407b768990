using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace SparseAttention.Generators.Tests;

/// <summary>The ILGPU part of the output: emitted when the compilation can use it, left out when it cannot.</summary>
public class GpuEmissionTests
{
    private const string Kernel = """
        using SparseAttention;
        namespace App;
        [AttentionKernel(HeadDim = 64)]
        [SlidingWindow(Size = 128)]
        [GlobalTokens(0, 5, 9, 12, 100, 200, 300, 400, 500)]
        public static partial class ManyGlobals;
        """;

    [Fact]
    public void WithIlgpuReferencedTheGpuKernelAndOverloadsAreEmitted()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(Kernel);
        Assert.Empty(result.CompilationErrors);
        string source = result.Source("App.ManyGlobals");
        Assert.Contains("private static void GpuKernel(", source);
        Assert.Contains("public static void Forward(global::ILGPU.Runtime.Accelerator accelerator, global::ILGPU.ArrayView<float> query", source);
        Assert.Contains("public static void Forward(global::SparseAttention.AttentionDevice device", source);
        // Nine global tokens: more than an inline test holds, so membership is a loop over the constants.
        Assert.Contains("for (int index = 0; index < GpuGlobalTokenCount; index++)", source);
    }

    [Fact]
    public void WithoutIlgpuOnlyTheCpuKernelsAreEmitted()
    {
        // A compilation that sees the abstractions but neither the runtime's GPU type nor ILGPU (e.g. a library
        // that only declares patterns): the output must not mention ILGPU, or it would not compile.
        ImmutableArray<MetadataReference> references = GeneratorHarness.References
            .Where(reference => !Path.GetFileName(reference.Display ?? "").StartsWith("ILGPU", StringComparison.Ordinal)
                && Path.GetFileName(reference.Display ?? "") != "SparseAttention.Runtime.dll")
            .ToImmutableArray();
        CSharpCompilation compilation = CSharpCompilation.Create("NoGpu", new[] { CSharpSyntaxTree.ParseText(Kernel, GeneratorHarness.ParseOptions) }, references, new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        GeneratorDriver driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        string source = driver.GetRunResult().Results.Single().GeneratedSources.Single().SourceText.ToString();
        Assert.DoesNotContain("ILGPU", source);
        Assert.DoesNotContain("GpuKernel", source);
        Assert.Contains("public static void Forward(global::System.ReadOnlySpan<float> query", source);
    }

    [Fact]
    public void AnEditElsewhereDoesNotReEmitWhenGpuAvailabilityIsUnchanged()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel, "namespace App; static class Other { }");
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        SyntaxTree other = compilation.SyntaxTrees.Single(tree => tree.FilePath == "Source1.cs");
        CSharpCompilation edited = compilation.ReplaceSyntaxTree(other, CSharpSyntaxTree.ParseText("namespace App; static class Other { static int X; }", GeneratorHarness.ParseOptions, path: "Source1.cs"));
        GeneratorRunResult rerun = driver.RunGenerators(edited).GetRunResult().Results.Single();

        // The availability check runs on every compilation, but its answer is equal, so the emit step is reused.
        Assert.All(rerun.TrackedSteps[AttentionGenerator.TrackingNames.GpuAvailable].SelectMany(step => step.Outputs), output => Assert.Equal(IncrementalStepRunReason.Unchanged, output.Reason));
        Assert.All(rerun.TrackedSteps[AttentionGenerator.TrackingNames.Outputs].SelectMany(step => step.Outputs), output => Assert.Equal(IncrementalStepRunReason.Cached, output.Reason));
    }
}
