using System.Collections.Immutable;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace SparseAttention.Generators.Tests;

/// <summary>Runs the generator on source text in memory, the way the compiler does.</summary>
internal static class GeneratorHarness
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    /// <summary>The framework plus SparseAttention's abstractions, runtime and ILGPU, as a user's project sees them.</summary>
    public static readonly ImmutableArray<MetadataReference> References = LoadReferences();

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        string trusted = (string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!;
        return trusted.Split(Path.PathSeparator)
            .Where(path => Path.GetFileName(path).StartsWith("System.", StringComparison.Ordinal) || Path.GetFileName(path) is "mscorlib.dll" or "netstandard.dll")
            .Append(typeof(AttentionKernelAttribute).Assembly.Location)
            .Append(typeof(AttentionPattern).Assembly.Location)
            .Append(typeof(ILGPU.Context).Assembly.Location)
            .Distinct()
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))
            .ToImmutableArray();
    }

    public static CSharpCompilation CreateCompilation(params string[] sources) => CreateCompilation(LanguageVersion.Latest, sources);

    /// <summary>A compilation of <paramref name="sources"/> as a project with <c>&lt;LangVersion&gt;</c> <paramref name="languageVersion"/> builds it.</summary>
    public static CSharpCompilation CreateCompilation(LanguageVersion languageVersion, params string[] sources) => CSharpCompilation.Create(
        "UserAssembly" + Guid.NewGuid().ToString("N"),
        sources.Select((source, index) => CSharpSyntaxTree.ParseText(source, ParseOptions.WithLanguageVersion(languageVersion), path: $"Source{index}.cs")),
        References,
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, optimizationLevel: OptimizationLevel.Release, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver CreateDriver(bool trackSteps = false, LanguageVersion languageVersion = LanguageVersion.Latest) => CSharpGeneratorDriver.Create(
        new[] { new AttentionGenerator().AsSourceGenerator() },
        parseOptions: ParseOptions.WithLanguageVersion(languageVersion),
        driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    public sealed record Result(Compilation Output, ImmutableArray<Diagnostic> GeneratorDiagnostics, GeneratorDriverRunResult Run)
    {
        /// <summary>
        /// The generated source of the kernel named <paramref name="fullName"/> (namespace and types, dotted): its hint
        /// name is that name, a hash of it, and ".g.cs".
        /// </summary>
        public string Source(string fullName) => Run.Results.Single().GeneratedSources.Single(source => IsHintNameOf(source.HintName, fullName)).SourceText.ToString();

        public ImmutableArray<Diagnostic> CompilationErrors => Output.GetDiagnostics().Where(diagnostic => diagnostic.Severity == DiagnosticSeverity.Error).ToImmutableArray();
    }

    /// <summary>Whether <paramref name="hintName"/> is <c>{fullName}.{8 hex digits}.g.cs</c>.</summary>
    public static bool IsHintNameOf(string hintName, string fullName) =>
        hintName.StartsWith(fullName + ".", StringComparison.Ordinal)
        && hintName.EndsWith(".g.cs", StringComparison.Ordinal)
        && hintName.Length == fullName.Length + 1 + 8 + ".g.cs".Length
        && hintName.Substring(fullName.Length + 1, 8).All(Uri.IsHexDigit);

    public static Result Run(params string[] sources) => Run(LanguageVersion.Latest, sources);

    public static Result Run(LanguageVersion languageVersion, params string[] sources)
    {
        CSharpCompilation compilation = CreateCompilation(languageVersion, sources);
        GeneratorDriver driver = CreateDriver(languageVersion: languageVersion).RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out ImmutableArray<Diagnostic> diagnostics);
        return new Result(output, diagnostics, driver.GetRunResult());
    }

    /// <summary>
    /// Runs <see cref="AttentionAnalyzer"/> over <paramref name="compilation"/> the way the IDE and the build do.
    /// An analyzer exception surfaces as AD0001 among the returned diagnostics.
    /// </summary>
    public static ImmutableArray<Diagnostic> Analyze(Compilation compilation)
    {
        var analyzers = ImmutableArray.Create<Microsoft.CodeAnalysis.Diagnostics.DiagnosticAnalyzer>(new AttentionAnalyzer());
        var options = new Microsoft.CodeAnalysis.Diagnostics.CompilationWithAnalyzersOptions(
            new Microsoft.CodeAnalysis.Diagnostics.AnalyzerOptions(ImmutableArray<AdditionalText>.Empty), onAnalyzerException: null, concurrentAnalysis: false, logAnalyzerExecutionTime: false);
        return new Microsoft.CodeAnalysis.Diagnostics.CompilationWithAnalyzers(compilation, analyzers, options).GetAnalyzerDiagnosticsAsync().GetAwaiter().GetResult();
    }

    /// <summary>Emits the compilation and loads it into a collectible context, so each test can unload it.</summary>
    public static (Assembly Assembly, System.Runtime.Loader.AssemblyLoadContext Context) Load(Compilation compilation)
    {
        using var stream = new MemoryStream();
        Microsoft.CodeAnalysis.Emit.EmitResult emit = compilation.Emit(stream);
        Assert.True(emit.Success, string.Join("\n", emit.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        stream.Position = 0;
        var context = new System.Runtime.Loader.AssemblyLoadContext("generated" + Guid.NewGuid().ToString("N"), isCollectible: true);
        return (context.LoadFromStream(stream), context);
    }
}
