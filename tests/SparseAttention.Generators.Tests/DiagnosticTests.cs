using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// Every diagnostic ID: the analyzer reports it with its severity, at the offending argument; errors leave the
/// generator without output, warnings do not stop it. The generator itself never reports anything.
/// </summary>
public class DiagnosticTests
{
    public static TheoryData<string, DiagnosticSeverity, string, string> Declarations() => new()
    {
        // id, severity, source (the [| |] marks where the diagnostic must point), message fragment
        { "SPA0001", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] public partial class [|NotStatic|];", "static partial class" },
        { "SPA0001", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] public static class [|NotPartial|];", "static partial class" },
        { "SPA0001", DiagnosticSeverity.Error, "public class Outer { [AttentionKernel(HeadDim = 64)] public static partial class [|Inner|]; }", "containing types" },
        { "SPA0001", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] public static partial class [|Generic|]<T>;", "non-generic" },
        { "SPA0001", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] public partial record [|Record|];", "static partial class" },
        { "SPA0002", DiagnosticSeverity.Error, "[AttentionKernel([|HeadDim = 12|])] public static partial class K;", "multiple of 8 from 8 to 256" },
        { "SPA0002", DiagnosticSeverity.Error, "[AttentionKernel([|HeadDim = 264|])] public static partial class K;", "got 264" },
        { "SPA0002", DiagnosticSeverity.Error, "[[|AttentionKernel|]] public static partial class K;", "HeadDim is not set" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Left = -1|])] public static partial class K;", "Left must be 0 or more" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [SlidingWindow(Left = 2, [|Right = -3|])] public static partial class K;", "Right must be 0 or more" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Size = 0|])] public static partial class K;", "at least 1" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = 4)] [Dilation(1, [|0|])] public static partial class K;", "Dilation values must be 1 or more" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [GlobalTokens(3, [|-1|])] public static partial class K;", "cannot be negative" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [Strided([|Stride = 0|])] public static partial class K;", "Stride must be 1 or more" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [[|Strided|]] public static partial class K;", "Stride must be 1 or more" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = 4)] [[|Dilation(new[] { 2, 0 })|]] public static partial class K;", "got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [FixedFactorized([|Block = 0|], Summary = 1)] public static partial class K;", "FixedFactorized Block is the number of positions per block and must be 1 or more; got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [[|FixedFactorized|]] public static partial class K;", "FixedFactorized Block is the number of positions per block and must be 1 or more; got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [FixedFactorized(Block = 16, [|Summary = 17|])] public static partial class K;", "from 1 to Block (16); got 17" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [FixedFactorized(Block = 16, Summary = 5, [|VaryByHead = true|])] public static partial class K;", "Block (16) must be a multiple of Summary (5)" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [BlockSparse([|BlockSize = 0|], WindowBlocks = 1)] public static partial class K;", "BlockSparse BlockSize is the number of positions per block and must be 1 or more; got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [BlockSparse(BlockSize = 64, [|WindowBlocks = -1|])] public static partial class K;", "WindowBlocks counts the neighbouring blocks on each side a block sees, so it must be 0 or more; got -1" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [BlockSparse(BlockSize = 64, [|RandomBlocks = -3|], Seed = 1)] public static partial class K;", "RandomBlocks counts the random key blocks each query block sees, so it must be 0 or more; got -3" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [[|Neighborhood(7, 0)|]] public static partial class K;", "Neighbourhood kernel sizes must be 1 or more (keys per axis); got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [[|Neighborhood(3, 3, 3, 3)|]] public static partial class K;", "A neighbourhood has 1 to 3 axes (one kernel size per axis); got 4" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [Neighborhood(7, 7, [|Dilation = new[] { 2 }|])] public static partial class K;", "Dilation needs one value per axis of the neighbourhood (2); got 1" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [Neighborhood(7, 7, [|Dilation = new[] { 1, 0 }|])] public static partial class K;", "Neighbourhood dilations must be 1 or more (1 means none); got 0" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [Neighborhood(7, 7, [|CausalAxes = new[] { true, false, false }|])] public static partial class K;", "CausalAxes needs one value per axis of the neighbourhood (2); got 3" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [[|Neighborhood(7, 7)|]] public static partial class K;", "set Causal = false on [AttentionKernel]" },
        { "SPA0003", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, [|Causal = true|])] [Neighborhood(7)] public static partial class K;", "causality is per axis" },
        { "SPA0004", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow([|Size = 8|], Left = 2)] public static partial class K;", "not both" },
        { "SPA0005", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [[|GlobalTokens(\"a\")|]] public static partial class K;", "cannot read" },
        { "SPA0006", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [[|Dilation(2)|]] [Strided(Stride = 4)] public static partial class K;", "has no [SlidingWindow]" },
        { "SPA0007", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 1)] [[|Dilation(2, 3)|]] public static partial class K;", "no effect" },
        { "SPA0008", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [GlobalTokens(0, 5, [|0|])] public static partial class K;", "Global token 0 is listed more than once" },
        { "SPA0009", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Left = 8, [|Right = 4|])] public static partial class K;", "Right = 4 keys after the query are never visible" },
        { "SPA0010", DiagnosticSeverity.Warning, "[[|SlidingWindow(Size = 512)|]] public static partial class K;", "does nothing without [AttentionKernel" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64, Causal = false)] [SlidingWindow(Left = 4, Right = 4)] public static partial class K; static class Use { static void Run(KvCache cache) { [|K.Decode(new float[64], cache, new float[64])|]; } }", "'K.Decode' always throws: the pattern is bidirectional" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] public static partial class K; static class Use { static KvCache Run() => [|K.CreateCache(8)|]; }", "[SlidingWindow(Size = W)]" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] [Strided(Stride = 4)] public static partial class K; static class Use { static void Run(KvCache cache) { System.Action<float[], KvCache, float[]> decode = (q, c, o) => [|K.Prefill(q, q, q, o, new AttentionShape(1, 1, 1), c)|]; } }", "remove [Strided]" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 8)] [SlidingWindow(Size = int.MaxValue)] public static partial class K; static class Use { static KvCache Run() => [|K.CreateCache(1)|]; }", "make the window (Left x Dilation) smaller" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [FixedFactorized(Block = 128, Summary = 8)] public static partial class K; static class Use { static KvCache Run() => [|K.CreateCache(8)|]; }", "summary positions stay visible to every later block" },
        { "SPA0011", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [BlockSparse(BlockSize = 64, WindowBlocks = 1, GlobalBlocks = new[] { 0 }, RandomBlocks = 3)] public static partial class K; static class Use { static void Run(KvCache cache) { [|K.Decode(new float[64], cache, new float[64])|]; } }", "global and random blocks reach any distance back" },
        { "SPA0012", DiagnosticSeverity.Error, "[[|AttentionKernel(HeadDim = 64)|]] [SlidingWindow(Size = 8)] public static partial class K;", "needs C# 13.0 or later" },
        { "SPA0013", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] [[|GlobalTokens()|]] public static partial class K;", "[GlobalTokens] on 'K' lists no positions" },
        { "SPA0013", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] [[|Dilation()|]] public static partial class K;", "[Dilation] on 'K' lists no dilations" },
        { "SPA0013", DiagnosticSeverity.Warning, "[AttentionKernel(HeadDim = 64)] [[|Dilation(new int[0])|]] public static partial class K;", "so it changes nothing" },
        { "SPA0015", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [Softcap([|0|])] public static partial class K;", "[Softcap] on 'K' is 0; the cap must be a finite number greater than 0" },
        { "SPA0015", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [Softcap([|float.NaN|])] public static partial class K;", "is NaN" },
        { "SPA0015", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [Softcap([|-50|])] public static partial class K;", "is -50" },
        { "SPA0016", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [AttentionMask([|\"Missing\"|])] public static partial class K;", "[AttentionMask] on 'K': 'K' has no method named 'Missing'; it must name a method of 'K' declared as 'static bool Missing(int query, int key, int head)'" },
        { "SPA0016", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [AttentionMask([|nameof(M)|])] public static partial class K { static bool M(long query, int key, int head) => true; }", "'M' does not have that signature" },
        { "SPA0016", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [ScoreMod([|nameof(F)|])] public static partial class K { static double F(float score, int query, int key, int head) => score; }", "'static float F(float score, int query, int key, int head)'" },
        { "SPA0016", DiagnosticSeverity.Error, "[AttentionKernel(HeadDim = 64)] [ScoreMod([|\"\"|])] public static partial class K;", "[ScoreMod] on 'K': it names no method" },
    };

    /// <summary>The C# version a row's project compiles with, where it is not the latest.</summary>
    private static readonly Dictionary<string, Microsoft.CodeAnalysis.CSharp.LanguageVersion> LanguageVersions = new() { ["SPA0012"] = Microsoft.CodeAnalysis.CSharp.LanguageVersion.CSharp10 };

    /// <summary>IDs reported at a call rather than on a declaration: the kernel is valid and generated.</summary>
    private static readonly HashSet<string> CallSiteIds = new() { "SPA0011" };

    [Theory]
    [MemberData(nameof(Declarations))]
    public void AnalyzerReportsTheIdAtTheArgumentWithItsSeverity(string id, DiagnosticSeverity severity, string markedSource, string messageFragment)
    {
        (string source, int start, int end) = Unmark(markedSource);
        GeneratorHarness.Result result = GeneratorHarness.Run(LanguageVersions.GetValueOrDefault(id, Microsoft.CodeAnalysis.CSharp.LanguageVersion.Latest), source);
        Diagnostic diagnostic = Assert.Single(GeneratorHarness.Analyze(result.Output));
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(severity, diagnostic.Severity);
        Assert.Contains(messageFragment, diagnostic.GetMessage());
        Assert.Equal((start, end), (diagnostic.Location.SourceSpan.Start, diagnostic.Location.SourceSpan.End));
        Assert.Equal("docs/diagnostics/" + id + ".md", diagnostic.Descriptor.HelpLinkUri);

        // Diagnostics are the analyzer's job; the generator only decides whether there is code to emit.
        Assert.Empty(result.GeneratorDiagnostics);
        bool kernelDeclared = source.Contains("AttentionKernel", StringComparison.Ordinal);
        if ((severity == DiagnosticSeverity.Error && !CallSiteIds.Contains(id)) || !kernelDeclared)
        {
            Assert.Empty(result.Run.Results.Single().GeneratedSources);
        }
        else
        {
            // The declaration's file and its HeadDim's shared kernels.
            Assert.Equal(2, result.Run.Results.Single().GeneratedSources.Length);
            Assert.Single(result.Run.Results.Single().GeneratedSources, generated => generated.HintName.StartsWith("SparseAttention.Generated.HeadDim", StringComparison.Ordinal));
            Assert.Empty(result.CompilationErrors);
        }
    }

    [Fact]
    public void EveryIdHasATestCase()
    {
        var tested = Declarations().Select(row => (string)row[0]).ToHashSet();
        Assert.All(new AttentionAnalyzer().SupportedDiagnostics, descriptor => Assert.Contains(descriptor.Id, tested));
    }

    [Fact]
    public void StreamingCallsOnAStreamableKernelAreNotReported()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] [GlobalTokens(0)] public static partial class K;"
            + " static class Use { static void Run() { KvCache cache = K.CreateCache(2); cache.Append(new float[128], new float[128]); K.Decode(new float[128], cache, new float[128]);"
            + " System.Action<float[], float[], AttentionShape> prefill = (q, o, s) => K.Prefill(q, q, q, o, s, cache); } }");
        Assert.Empty(GeneratorHarness.Analyze(result.Output));
        Assert.Empty(result.CompilationErrors);
    }

    [Fact]
    public void AMethodGroupOfAStreamingMemberIsReportedToo()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 64, Causal = false)] public static partial class K;"
            + " static class Use { static System.Func<int, KvCache> Create() => K.CreateCache; }");
        Diagnostic diagnostic = Assert.Single(GeneratorHarness.Analyze(result.Output));
        Assert.Equal("SPA0011", diagnostic.Id);
        Assert.Contains("'K.CreateCache' always throws", diagnostic.GetMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void AValidDeclarationHasNoDiagnostic()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 64, Causal = false)] [SlidingWindow(Left = 4, Right = 4)] [Dilation(1, 2)] [GlobalTokens(0, 7)] [Strided(Stride = 9)] public static partial class K;");
        Assert.Empty(GeneratorHarness.Analyze(result.Output));
        Assert.Empty(result.CompilationErrors);
    }

    [Fact]
    public void DuplicateAttributesAreTheCompilersErrorAndNothingCrashes()
    {
        // AllowMultiple = false on every attribute, so C# itself reports the repeat (CS0579) at the second one.
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] [SlidingWindow(Size = 16)] public static partial class K;");
        Assert.Contains(result.Output.GetDiagnostics(), diagnostic => diagnostic.Id == "CS0579" && diagnostic.GetMessage().Contains("SlidingWindow", StringComparison.Ordinal));
        Assert.DoesNotContain(GeneratorHarness.Analyze(result.Output), diagnostic => diagnostic.Id == "AD0001");
        Assert.Null(result.Run.Results.Single().Exception);
    }

    [Fact]
    public void SeveralProblemsAreAllReported()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n[AttentionKernel(HeadDim = 7)] [GlobalTokens(1, 1)] [SlidingWindow(Left = 3, Right = 2)] public static partial class K;");
        Assert.Equal(new[] { "SPA0002", "SPA0008", "SPA0009" }, GeneratorHarness.Analyze(result.Output).Select(diagnostic => diagnostic.Id).OrderBy(id => id));
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
    public void HalfTypedDeclarationsNeverCrashTheGeneratorOrTheAnalyzer(string declaration)
    {
        GeneratorHarness.Result result = GeneratorHarness.Run("using SparseAttention;\n" + declaration);
        GeneratorRunResult run = result.Run.Results.Single();
        Assert.Null(run.Exception);
        Assert.DoesNotContain(result.GeneratorDiagnostics, diagnostic => diagnostic.Id is "CS8785" or "AD0001");
        Assert.DoesNotContain(GeneratorHarness.Analyze(result.Output), diagnostic => diagnostic.Id == "AD0001");

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
        Assert.Empty(GeneratorHarness.Analyze(result.Output));
        Assert.Empty(result.CompilationErrors);
    }

    private static (string Source, int Start, int End) Unmark(string markedSource)
    {
        const string Prefix = "using SparseAttention;\n";
        int start = Prefix.Length + markedSource.IndexOf("[|", StringComparison.Ordinal);
        int end = Prefix.Length + markedSource.Replace("[|", "").IndexOf("|]", StringComparison.Ordinal);
        return (Prefix + markedSource.Replace("[|", "").Replace("|]", ""), start, end);
    }
}
