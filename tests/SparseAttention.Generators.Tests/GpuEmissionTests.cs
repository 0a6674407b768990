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
        string shared = SharedSource(result.Run.Results.Single(), headDim: 64);

        // The ILGPU kernel is written once per HeadDim; the declaration's overloads reach it through the runtime.
        Assert.Contains("private static void AttendQueryBlock<TRowSets>(", shared);
        Assert.Contains("internal static readonly global::SparseAttention.Gpu.GpuAttentionKernel GpuKernel = new(", shared);
        Assert.DoesNotContain("AttendQueryBlock", source);
        Assert.Contains("global::SparseAttention.Generated.HeadDim64.GpuKernel", source);
        Assert.Contains("public static void Forward(global::ILGPU.Runtime.Accelerator accelerator, global::ILGPU.ArrayView<float> query", source);
        Assert.Contains("public static void Forward(global::SparseAttention.AttentionDevice device", source);

        // Nothing of the declaration is written into the shared kernels: the pattern reaches them as data (bands, tile
        // table), so one kernel serves every declaration of this HeadDim.
        Assert.DoesNotContain("ManyGlobals", shared);
    }

    [Theory]
    [InlineData(8, 1, 4)]
    [InlineData(64, 2, 4)]
    [InlineData(128, 4, 4)]
    [InlineData(256, 8, 2)]
    public void TheGpuKernelKeepsEveryPerLaneValueInAScalarLocal(int headDim, int chunksPerLane, int keysPerLane)
    {
        // ILGPU places an array indexed by a loop counter in local memory: the kernel must have none, and its micro-tile
        // must be written out as one local per row and key (scores) and per row, chunk and component (accumulators).
        GeneratorHarness.Result result = GeneratorHarness.Run(Kernel.Replace("HeadDim = 64", "HeadDim = " + headDim, StringComparison.Ordinal));
        Assert.Empty(result.CompilationErrors);
        string shared = SharedSource(result.Run.Results.Single(), headDim);
        string kernel = shared[shared.IndexOf("private static void AttendQueryBlock<TRowSets>(", StringComparison.Ordinal)..];

        Assert.DoesNotContain("LocalMemory", kernel);
        Assert.DoesNotContain("stackalloc", kernel);
        Assert.DoesNotContain("new float[", kernel);
        Assert.Contains($" s3{keysPerLane - 1} = 0f", kernel, StringComparison.Ordinal);
        Assert.DoesNotContain($" s3{keysPerLane} = 0f", kernel, StringComparison.Ordinal);
        Assert.Contains($"o3_{chunksPerLane - 1}W = 0f", kernel, StringComparison.Ordinal);
        Assert.DoesNotContain($"o3_{chunksPerLane}W = 0f", kernel, StringComparison.Ordinal);
        Assert.Contains("default(TRowSets).Max(", kernel, StringComparison.Ordinal);
    }

    private static string SharedSource(GeneratorRunResult run, int headDim) =>
        run.GeneratedSources.Single(source => source.HintName == $"SparseAttention.Generated.HeadDim{headDim}.g.cs").SourceText.ToString();

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
        GeneratorRunResult run = driver.GetRunResult().Results.Single();
        Assert.Equal(2, run.GeneratedSources.Length); // the declaration and the HeadDim 64 kernels
        string source = run.GeneratedSources.Single(generated => GeneratorHarness.IsHintNameOf(generated.HintName, "App.ManyGlobals")).SourceText.ToString();
        string shared = SharedSource(run, headDim: 64);
        foreach (string text in new[] { source, shared })
        {
            Assert.DoesNotContain("ILGPU", text);
            Assert.DoesNotContain("GpuKernel", text);
        }

        Assert.Contains("public static void Forward(global::System.ReadOnlySpan<float> query", source);
        Assert.Contains("AccumulateBandTile", shared);
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
