using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// Thousands of random and half-typed declarations through the generator and the analyzer, the way an editor
/// feeds them while someone types: neither may throw (no CS8785 from the generator, no AD0001 from the analyzer),
/// and every declaration the generator accepts must produce code that compiles.
/// </summary>
public class FuzzTests
{
    private const int Batches = 8;
    private const int DeclarationsPerBatch = 250;

    /// <summary>Argument values: valid, boundary, absurd, wrong-typed and unfinished.</summary>
    private static readonly string[] Numbers =
    {
        "0", "1", "2", "3", "7", "8", "16", "64", "100", "128", "255", "256", "4096", "-1", "-8", "int.MaxValue", "int.MinValue",
        "int.MaxValue - 1", "1 << 30", "2147483647", "64 / 2", "Size", "1.5", "\"64\"", "true", "null", "", "'a'", "(int)2.9", "unchecked(int.MaxValue + 1)",
    };

    private static readonly string[] ClassShapes =
    {
        "public static partial class {0};", "public static partial class {0} {{ }}", "static partial class {0};", "public partial class {0};",
        "public static class {0};", "public static partial class {0}<T>;", "public partial record {0};", "public partial struct {0};",
        "public partial class Outer{0} {{ [ATTRS] public static partial class {0}; }}", "public class Outer{0} {{ [ATTRS] public static partial class {0}; }}",
        "public static partial class {0}", "public static partial class",
        "public static partial class {0} {{ static bool M(int q, int k, int h) => q >= k; }}",
        "public static partial class {0} {{ static float M(float s, int q, int k, int h) => s; }}",
        "public static partial class {0} {{ bool M(int q, int k, int h) => true; }}",
    };

    /// <summary>
    /// Names that were hard on the generator: keywords (kept with '@' in code, dropped from file names) and, further down,
    /// twins that differ only by case (Roslyn compares hint names ignoring case).
    /// </summary>
    private static readonly string[] KeywordNames = { "@object", "@class", "@record", "@required", "@var", "@int", "@file", "@scoped", "@dynamic" };

    /// <summary>The C# versions a batch compiles with: most at the latest, two on C# 9 and 10 (before C# 13, which the generated code needs).</summary>
    private static readonly LanguageVersion[] BatchLanguageVersions =
    {
        LanguageVersion.Latest, LanguageVersion.CSharp9, LanguageVersion.Latest, LanguageVersion.Latest,
        LanguageVersion.CSharp10, LanguageVersion.Latest, LanguageVersion.Latest, LanguageVersion.Latest,
    };

    [Fact]
    public void RandomAndHalfTypedDeclarationsNeverCrashAndAcceptedOnesCompile()
    {
        var random = new Random(5150);
        int accepted = 0, latestDeclarations = 0;
        // A tree whose text an earlier batch of the same language version already bound without errors (a head size's
        // shared kernels, which refer to nothing of the declarations' own) is not bound again: binding the generated code
        // is nearly all of this test's time. The version is part of the key, since a tree may bind in one and not another.
        var bound = new HashSet<(LanguageVersion Version, string Text)>();
        for (int batch = 0; batch < Batches; batch++)
        {
            LanguageVersion version = BatchLanguageVersions[batch];
            string[] sources = Enumerable.Range(0, DeclarationsPerBatch).Select(index => RandomSource(random, batch, index)).ToArray();
            GeneratorHarness.Result result = GeneratorHarness.Run(version, sources);
            GeneratorRunResult run = result.Run.Results.Single();
            Assert.Null(run.Exception);
            Assert.DoesNotContain(result.GeneratorDiagnostics, diagnostic => diagnostic.Id is "CS8785" or "AD0001");
            Assert.Empty(result.GeneratorDiagnostics); // the generator reports nothing; the analyzer does
            Assert.Equal(run.GeneratedSources.Length, run.GeneratedSources.Select(source => source.HintName).Distinct(StringComparer.OrdinalIgnoreCase).Count());
            // The analyzer on the declarations alone: it only reads attributed types, and binding the generated kernels
            // again here would double the test's time for nothing.
            var analyzerDiagnostics = GeneratorHarness.Analyze(GeneratorHarness.CreateCompilation(version, sources));
            Assert.DoesNotContain(analyzerDiagnostics, diagnostic => diagnostic.Id == "AD0001");

            // Only the generated trees are checked: the inputs' own errors are the point of the exercise.
            var generatedTrees = result.Output.SyntaxTrees.Skip(sources.Length).ToList();
            Assert.Equal(run.GeneratedSources.Length, generatedTrees.Count);
            foreach (SyntaxTree tree in generatedTrees)
            {
                if (!bound.Add((version, tree.ToString())))
                {
                    continue;
                }

                Diagnostic[] errors = result.Output.GetSemanticModel(tree).GetDiagnostics().Where(diagnostic => diagnostic.Severity == DiagnosticSeverity.Error).ToArray();
                Assert.True(errors.Length == 0, $"{tree.FilePath} does not compile: {string.Join("; ", errors.Take(3))}");
            }

            if (version < LanguageVersion.CSharp13)
            {
                // Before C# 13 nothing is generated; every kernel the latest C# would accept gets SPA0012 instead.
                Assert.Empty(generatedTrees);
                Assert.Contains(analyzerDiagnostics, diagnostic => diagnostic.Id == "SPA0012");
                continue;
            }

            accepted += generatedTrees.Count;
            latestDeclarations += DeclarationsPerBatch;
        }

        // The mix must exercise both sides: plenty accepted, plenty rejected.
        Assert.InRange(accepted, latestDeclarations / 10, latestDeclarations * 9 / 10);
    }

    /// <summary>
    /// One file: a random declaration in its own namespace (sometimes a keyword namespace, sometimes a keyword class
    /// name), and now and then a twin of it whose name differs only by case.
    /// </summary>
    private static string RandomSource(Random random, int batch, int index)
    {
        string name = random.Next(6) == 0 ? KeywordNames[random.Next(KeywordNames.Length)] : "K" + index;
        string ns = "Fuzz" + batch + "_" + index + (random.Next(8) == 0 ? ".@class" : "");
        // A block namespace, which every C# version reads (file-scoped ones need C# 10).
        string source = "using SparseAttention;\nnamespace " + ns + "\n{\n" + RandomDeclaration(random, name);
        if (random.Next(6) == 0)
        {
            string twin = name.StartsWith('@') ? "@" + name.Substring(1).ToUpperInvariant() : name.ToLowerInvariant();
            source += "\n" + RandomDeclaration(random, twin);
        }

        return source + "\n}\n";
    }

    private static string RandomDeclaration(Random random, string name)
    {
        var attributes = new List<string>();
        if (random.Next(8) != 0)
        {
            attributes.Add(Attribute(random, "AttentionKernel", Named(random, "HeadDim", 0.9), Named(random, "Causal", 0.4, "true", "false", "1", "", "null")));
        }

        if (random.Next(2) == 0)
        {
            attributes.Add(Attribute(random, "SlidingWindow", Named(random, "Size", 0.4), Named(random, "Left", 0.4), Named(random, "Right", 0.3)));
        }

        if (random.Next(4) == 0)
        {
            attributes.Add(Attribute(random, "Dilation", List(random)));
        }

        if (random.Next(4) == 0)
        {
            attributes.Add(Attribute(random, "GlobalTokens", List(random)));
        }

        if (random.Next(5) == 0)
        {
            attributes.Add(Attribute(random, "Strided", Named(random, "Stride", 0.9)));
        }

        if (random.Next(8) == 0)
        {
            attributes.Add(Attribute(random, "FixedFactorized", Named(random, "Block", 0.9), Named(random, "Summary", 0.8), Named(random, "VaryByHead", 0.3, "true", "false")));
        }

        if (random.Next(8) == 0)
        {
            attributes.Add(Attribute(random, "BlockSparse", Named(random, "BlockSize", 0.9), Named(random, "WindowBlocks", 0.6),
                random.Next(2) == 0 ? "GlobalBlocks = " + List(random) : null, Named(random, "RandomBlocks", 0.6), Named(random, "Seed", 0.4)));
        }

        // Score modifiers: plausible and broken arguments alike (a cap of 0 or NaN, a method that is not there).
        if (random.Next(8) == 0)
        {
            attributes.Add(Attribute(random, "Softcap", random.Next(3) == 0 ? Numbers[random.Next(Numbers.Length)] : (random.Next(1, 100) / 2f).ToString(System.Globalization.CultureInfo.InvariantCulture) + "f"));
        }

        if (random.Next(10) == 0)
        {
            attributes.Add(random.Next(2) == 0 ? "Alibi" : "LearnedSinks");
        }

        if (random.Next(10) == 0)
        {
            string[] methods = { "nameof(M)", "\"M\"", "\"\"", "null", "nameof(Missing)", "\"ToString\"" };
            attributes.Add(Attribute(random, random.Next(2) == 0 ? "AttentionMask" : "ScoreMod", methods[random.Next(methods.Length)]));
        }

        if (random.Next(20) == 0 && attributes.Count > 0)
        {
            attributes.Add(attributes[random.Next(attributes.Count)]); // a duplicate attribute
        }

        string attributeText = string.Concat(attributes.Select(attribute => "[" + attribute + "]\n"));
        string shape = ClassShapes[random.Next(ClassShapes.Length)];
        string declaration = shape.Contains("[ATTRS]", StringComparison.Ordinal)
            ? string.Format(System.Globalization.CultureInfo.InvariantCulture, shape, name).Replace("[ATTRS]", attributeText)
            : attributeText + string.Format(System.Globalization.CultureInfo.InvariantCulture, shape, name);

        // Half-typed: cut the text somewhere, as an editor sees it mid-keystroke.
        return random.Next(8) == 0 ? declaration.Substring(0, random.Next(declaration.Length)) : declaration;
    }

    private static string Attribute(Random random, string name, params string?[] arguments)
    {
        string[] present = arguments.Where(argument => argument is not null).Select(argument => argument!).ToArray();
        return present.Length == 0 && random.Next(2) == 0 ? name : name + "(" + string.Join(", ", present) + ")";
    }

    private static string? Named(Random random, string name, double probability, params string[] values)
    {
        if (random.NextDouble() >= probability)
        {
            return null;
        }

        string value = values.Length > 0 && random.Next(2) == 0 ? values[random.Next(values.Length)] : Number(random, name);
        return random.Next(40) == 0 ? "Unknown = " + value : name + " = " + value;
    }

    /// <summary>Mostly plausible numbers for the named argument, sometimes anything from <see cref="Numbers"/>.</summary>
    private static string Number(Random random, string name) => random.Next(3) != 0
        ? name switch
        {
            "HeadDim" => (8 * random.Next(1, 33)).ToString(System.Globalization.CultureInfo.InvariantCulture),
            "Causal" => random.Next(2) == 0 ? "true" : "false",
            _ => random.Next(0, 300).ToString(System.Globalization.CultureInfo.InvariantCulture),
        }
        : Numbers[random.Next(Numbers.Length)];

    private static string List(Random random)
    {
        int count = random.Next(0, 12);
        var items = Enumerable.Range(0, count).Select(_ => random.Next(4) != 0 ? random.Next(0, 200).ToString(System.Globalization.CultureInfo.InvariantCulture) : Numbers[random.Next(Numbers.Length)]);
        string joined = string.Join(", ", items);
        return random.Next(6) switch
        {
            0 => "new[] { " + joined + " }",
            1 => "new int[] { " + joined + " }",
            2 => "[" + joined + "]",
            _ => joined,
        };
    }
}
