using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace SparseAttention.Generators.Tests;

/// <summary>An edit that does not touch a kernel declaration must not re-run the emit step.</summary>
public class IncrementalityTests
{
    private const string Kernel = """
        using SparseAttention;
        namespace App;
        [AttentionKernel(HeadDim = 64)]
        [SlidingWindow(Size = 512)]
        public static partial class Window;
        """;

    private const string Other = """
        namespace App;
        public static class Helper { public static int Value() => 1; }
        """;

    [Theory]
    [InlineData("namespace App; public static class Helper { public static int Value() => 2; }")]
    [InlineData("namespace App; public static class Helper { public static int Value() => 1; public static int More() => 3; }")]
    public void UnrelatedEditLeavesTheEmitStepCached(string editedOther)
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel, Other);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);

        SyntaxTree otherTree = compilation.SyntaxTrees.Single(tree => tree.FilePath == "Source1.cs");
        CSharpCompilation edited = compilation.ReplaceSyntaxTree(otherTree, CSharpSyntaxTree.ParseText(editedOther, GeneratorHarness.ParseOptions, path: "Source1.cs"));
        GeneratorRunResult rerun = driver.RunGenerators(edited).GetRunResult().Results.Single();

        AssertAllCachedOrUnchanged(rerun, AttentionGenerator.TrackingNames.Kernels);
        Assert.All(rerun.TrackedOutputSteps.SelectMany(step => step.Value).SelectMany(run => run.Outputs),
            output => Assert.True(output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"an output step ran again: {output.Reason}"));
    }

    [Fact]
    public void MovingTheDeclarationKeepsTheModelUnchanged()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        SyntaxTree tree = compilation.SyntaxTrees.Single();
        CSharpCompilation moved = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText("// a comment that shifts every line\n\n" + Kernel, GeneratorHarness.ParseOptions, path: tree.FilePath));
        GeneratorRunResult rerun = driver.RunGenerators(moved).GetRunResult().Results.Single();

        // The parser re-ran on the changed tree but produced an equal model, so everything after it is reused.
        Assert.All(rerun.TrackedSteps[AttentionGenerator.TrackingNames.Parse].SelectMany(step => step.Outputs), output => Assert.Equal(IncrementalStepRunReason.Unchanged, output.Reason));
        AssertAllCachedOrUnchanged(rerun, AttentionGenerator.TrackingNames.Kernels);
    }

    [Fact]
    public void ChangingThePatternRegenerates()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        SyntaxTree tree = compilation.SyntaxTrees.Single();
        CSharpCompilation changed = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText(Kernel.Replace("512", "1024"), GeneratorHarness.ParseOptions, path: tree.FilePath));
        GeneratorRunResult rerun = driver.RunGenerators(changed).GetRunResult().Results.Single();
        Assert.Contains(rerun.TrackedSteps[AttentionGenerator.TrackingNames.Kernels].SelectMany(step => step.Outputs), output => output.Reason == IncrementalStepRunReason.Modified);
    }

    /// <summary>
    /// The shared kernels depend only on the HeadDims in use: changing a pattern re-emits that declaration's small file,
    /// never the HeadDim's kernels; a declaration of a new HeadDim adds that HeadDim's file and leaves the others cached.
    /// </summary>
    [Fact]
    public void ThePatternNeverReEmitsTheSharedKernelsOnlyANewHeadDimAddsSome()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        SyntaxTree tree = compilation.SyntaxTrees.Single();

        CSharpCompilation changed = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText(Kernel.Replace("512", "1024"), GeneratorHarness.ParseOptions, path: tree.FilePath));
        driver = driver.RunGenerators(changed);
        GeneratorRunResult rerun = driver.GetRunResult().Results.Single();
        Assert.Contains(rerun.TrackedSteps[AttentionGenerator.TrackingNames.Outputs].SelectMany(step => step.Outputs), output => output.Reason == IncrementalStepRunReason.Modified);
        AssertAllCachedOrUnchanged(rerun, AttentionGenerator.TrackingNames.SharedKernels);

        const string another = "namespace App; [SparseAttention.AttentionKernel(HeadDim = 32)] public static partial class Small;";
        GeneratorRunResult added = driver.RunGenerators(changed.AddSyntaxTrees(CSharpSyntaxTree.ParseText(another, GeneratorHarness.ParseOptions, path: "Source9.cs"))).GetRunResult().Results.Single();
        var shared = added.TrackedSteps[AttentionGenerator.TrackingNames.SharedKernels].SelectMany(step => step.Outputs).ToList();
        Assert.Equal(2, shared.Count);
        Assert.Contains(shared, output => output.Reason == IncrementalStepRunReason.New && output.Value.ToString()!.Contains("HeadDim = 32", StringComparison.Ordinal));
        Assert.Contains(shared, output => output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged && output.Value.ToString()!.Contains("HeadDim = 64", StringComparison.Ordinal));
        Assert.Equal(2 + 2, added.GeneratedSources.Length);
    }

    /// <summary>
    /// Only a HeadDim with a neighbourhood declaration gets the neighbourhood tile kernel (a second band tile kernel per
    /// instruction set, with fewer rows): declaring one re-emits that HeadDim's kernels with it and leaves the others cached.
    /// </summary>
    [Fact]
    public void ANeighborhoodAddsItsTileKernelToItsHeadDimOnly()
    {
        const string small = "namespace App; [SparseAttention.AttentionKernel(HeadDim = 32)] public static partial class Small;";
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Kernel, small);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        Assert.All(driver.GetRunResult().Results.Single().GeneratedSources, source => Assert.DoesNotContain("AccumulateNeighborhoodTile", source.SourceText.ToString(), StringComparison.Ordinal));

        const string image = "namespace App; [SparseAttention.AttentionKernel(HeadDim = 32, Causal = false)] [SparseAttention.Neighborhood(3, 3)] public static partial class Image;";
        GeneratorRunResult added = driver.RunGenerators(compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText(image, GeneratorHarness.ParseOptions, path: "Source9.cs"))).GetRunResult().Results.Single();
        var shared = added.TrackedSteps[AttentionGenerator.TrackingNames.SharedKernels].SelectMany(step => step.Outputs).ToList();
        Assert.Contains(shared, output => output.Reason == IncrementalStepRunReason.Modified && output.Value.ToString()!.Contains("HeadDim = 32", StringComparison.Ordinal));
        Assert.Contains(shared, output => output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged && output.Value.ToString()!.Contains("HeadDim = 64", StringComparison.Ordinal));

        string headDim32 = added.GeneratedSources.Single(source => source.HintName == "SparseAttention.Generated.HeadDim32.g.cs").SourceText.ToString();
        string headDim64 = added.GeneratedSources.Single(source => source.HintName == "SparseAttention.Generated.HeadDim64.g.cs").SourceText.ToString();
        // HeadDim 32 has a kernel for each of the three widths, each with its neighbourhood tile: 4 rows, 3 on Vector128.
        Assert.Equal(3, headDim32.Split("public static void AccumulateNeighborhoodTile<TScores>").Length - 1);
        Assert.Equal(2, headDim32.Split("public static int NeighborhoodTileRows => 4;").Length - 1);
        Assert.Equal(1, headDim32.Split("public static int NeighborhoodTileRows => 3;").Length - 1);
        Assert.DoesNotContain("AccumulateNeighborhoodTile", headDim64, StringComparison.Ordinal);
    }

    /// <summary>
    /// What a further declaration of an existing HeadDim costs in generated code: its public members only (at most 400
    /// lines: span, slice, decode, tensor, packed-sequence and GPU overloads with their docs; 367 today), since the kernels
    /// of that HeadDim are emitted once.
    /// </summary>
    [Fact]
    public void EachFurtherDeclarationOfAHeadDimAddsOnlyItsPublicMembers()
    {
        static int GeneratedLines(int declarations)
        {
            string[] sources = Enumerable.Range(0, declarations)
                .Select(index => $"namespace App; [SparseAttention.AttentionKernel(HeadDim = 64)] [SparseAttention.SlidingWindow(Size = {64 + index})] public static partial class K{index};")
                .ToArray();
            GeneratorHarness.Result result = GeneratorHarness.Run(sources);
            Assert.Empty(result.CompilationErrors);
            return result.Run.Results.Single().GeneratedSources.Sum(source => source.SourceText.Lines.Count);
        }

        int one = GeneratedLines(1);
        int five = GeneratedLines(5);
        // About 440 lines of public members and their docs (Forward, Decode, tensor and device overloads); a kernel is thousands.
        Assert.InRange((five - one) / 4.0, 1, 500);
    }

    private static void AssertAllCachedOrUnchanged(GeneratorRunResult run, string stepName)
    {
        var outputs = run.TrackedSteps[stepName].SelectMany(step => step.Outputs).ToList();
        Assert.NotEmpty(outputs);
        Assert.All(outputs, output => Assert.True(output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"{stepName} re-ran: {output.Reason}"));
    }
}
