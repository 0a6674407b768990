using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Tests;

/// <summary>Invalid declarations get a located diagnostic and no code; the generator never throws.</summary>
public class DiagnosticTests
{
    public static TheoryData<string, string, string> InvalidDeclarations() => new()
    {
        // id, source (the [| |] marks where the diagnostic must point), message fragment
        { "SPA0001", "[AttentionKernel(HeadDim = 64)] public partial class [|NotStatic|];", "static partial class" },
        { "SPA0001", "[AttentionKernel(HeadDim = 64)] public static class [|NotPartial|];", "static partial class" },
        { "SPA0001", "public class Outer { [AttentionKernel(HeadDim = 64)] public static partial class [|Inner|]; }", "containing types" },
        { "SPA0002", "[AttentionKernel([|HeadDim = 12|])] public static partial class K;", "multiple of 8 from 8 to 256" },
        { "SPA0002", "[AttentionKernel([|HeadDim = 264|])] public static partial class K;", "got 264" },
        { "SPA0002", "[[|AttentionKernel|]] public static partial class K;", "HeadDim is not set" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Left = -1|])] public static partial class K;", "Left must be 0 or more" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Size = 0|])] public static partial class K;", "at least 1" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = 4)] [Dilation(1, [|0|])] public static partial class K;", "Dilation values must be 1 or more" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [GlobalTokens(3, [|-1|])] public static partial class K;", "cannot be negative" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [Strided([|Stride = 0|])] public static partial class K;", "Stride must be 1 or more" },
        { "SPA0003", "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = 4)] [[|Dilation(new[] { 2, 0 })|]] public static partial class K;", "got 0" },
        { "SPA0004", "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Size = 8|], Left = 2)] public static partial class K;", "not both" },
    };

    [Theory]
    [MemberData(nameof(InvalidDeclarations))]
    public void InvalidDeclarationIsReportedAtTheArgumentAndEmitsNothing(string id, string markedSource, string messageFragment)
    {
        string prefix = "using SparseAttention;\n";
        int start = prefix.Length + markedSource.IndexOf("[|", StringComparison.Ordinal);
        string source = prefix + markedSource.Replace("[|", "").Replace("|]", "");
        int end = prefix.Length + markedSource.Replace("[|", "").IndexOf("|]", StringComparison.Ordinal);

        GeneratorHarness.Result result = GeneratorHarness.Run(source);
        Diagnostic diagnostic = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains(messageFragment, diagnostic.GetMessage());
        Assert.Equal((start, end), (diagnostic.Location.SourceSpan.Start, diagnostic.Location.SourceSpan.End));
        Assert.Empty(result.Run.Results.Single().GeneratedSources);
    }

    [Theory]
    [InlineData("[AttentionKernel(HeadDim = )] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = \"64\")] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 1.5)] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = 64)] [Dilation(\"x\")] [SlidingWindow(Left = 1)] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = int.MaxValue)] [SlidingWindow(Left = int.MaxValue, Right = int.MaxValue)] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = int.MaxValue)] [Dilation(int.MaxValue)] [GlobalTokens(int.MaxValue)] [Strided(Stride = int.MaxValue)] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = 64)] [GlobalTokens(null)] public static partial class K;")]
    [InlineData("[AttentionKernel(HeadDim = 64, Causal = )] public static partial class K")]
    [InlineData("[AttentionKernel(HeadDim = 64)] public static partial class K<T>;")]
    public void HalfTypedDeclarationsNeverCrashTheGenerator(string declaration)
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n" + declaration);
        GeneratorRunResult run = result.Run.Results.Single();
        Assert.Null(run.Exception);
        Assert.DoesNotContain(result.GeneratorDiagnostics, diagnostic => diagnostic.Id is "CS8785" or "AD0001");

        // Whatever was accepted must compile; the input's own errors are not the generator's.
        foreach (var source in run.GeneratedSources)
        {
            Assert.DoesNotContain(result.Output.GetDiagnostics(), diagnostic => diagnostic.Severity == DiagnosticSeverity.Error && diagnostic.Location.SourceTree?.FilePath.EndsWith(source.HintName, StringComparison.Ordinal) == true);
        }
    }

    [Fact]
    public void ValidDeclarationWithHugeWindowGeneratesCompilingCode()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = int.MaxValue)] [Dilation(int.MaxValue)] [GlobalTokens(int.MaxValue)] [Strided(Stride = int.MaxValue)] public static partial class K;");
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompilationErrors);
    }
}
