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

    private static void AssertAllCachedOrUnchanged(GeneratorRunResult run, string stepName)
    {
        var outputs = run.TrackedSteps[stepName].SelectMany(step => step.Outputs).ToList();
        Assert.NotEmpty(outputs);
        Assert.All(outputs, output => Assert.True(output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"{stepName} re-ran: {output.Reason}"));
    }
}
