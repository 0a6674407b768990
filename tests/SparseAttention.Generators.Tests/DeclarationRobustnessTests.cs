using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using SparseAttention.Testing;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// Declarations that are valid C# but were hard on the generator: keyword names, names that differ only by case, the
/// kernel attribute on two parts of one class, and projects on C# versions older than the generated code needs (13). None may throw into the compiler, and
/// no declaration's trouble may take another declaration's generated members with it.
/// </summary>
public class DeclarationRobustnessTests
{
    /// <summary>A kernel the other declarations must never break; the use below binds only if its members exist.</summary>
    private const string Bystander = """
        namespace Bystanders
        {
            [SparseAttention.AttentionKernel(HeadDim = 16)]
            [SparseAttention.SlidingWindow(Size = 4)]
            public static partial class Unrelated { }

            public static class Use
            {
                public static void Run(float[] q, float[] k, float[] v, float[] o) => Unrelated.Forward(q, k, v, o, new SparseAttention.AttentionShape(1, 1, 2));
            }
        }
        """;

    /// <summary>Keywords as namespace and class names: the '@' stays in the code, and out of the file name.</summary>
    private const string KeywordNames = """
        using SparseAttention;
        namespace @class.@record
        {
            public static partial class @struct
            {
                [AttentionKernel(HeadDim = 16)]
                [SlidingWindow(Size = 4)]
                public static partial class @object { }
            }

            [AttentionKernel(HeadDim = 8, Causal = false)]
            [GlobalTokens(1)]
            public static partial class @required { }

            [AttentionKernel(HeadDim = 8)]
            public static partial class @var { }
        }
        """;

    /// <summary>Names equal but for case: Roslyn compares hint names ignoring case, so these collided (CS8785).</summary>
    private const string CaseCollisions = """
        using SparseAttention;
        namespace Collide
        {
            [AttentionKernel(HeadDim = 16)] [SlidingWindow(Size = 3)] public static partial class Attn { }
            [AttentionKernel(HeadDim = 16)] [SlidingWindow(Size = 5)] public static partial class ATTN { }
            [AttentionKernel(HeadDim = 8)] public static partial class attn { }
        }
        """;

    /// <summary>[AttentionKernel] on two parts of one class: the compiler's CS0579, and two pipeline items for one type.</summary>
    private const string KernelOnTwoParts = """
        using SparseAttention;
        namespace Parts
        {
            [AttentionKernel(HeadDim = 16)] [SlidingWindow(Size = 4)] public static partial class Twice { }
            [AttentionKernel(HeadDim = 16)] public static partial class Twice { }
        }
        """;

    [Fact]
    public void Keyword_names_keep_their_at_sign_in_code_and_get_legal_hint_names()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(KeywordNames);
        AssertGeneratorHeld(result, expectedSources: 3, sharedHeadDims: new[] { 8, 16 });
        Assert.Empty(result.CompilationErrors);
        Assert.All(result.Run.Results.Single().GeneratedSources, source => Assert.DoesNotContain("@", source.HintName));
        string objectSource = result.Source("class.record.struct.object");
        Assert.Contains("namespace @class.@record", objectSource);
        Assert.Contains("static partial class @struct", objectSource);
        Assert.Contains("static partial class @object", objectSource);
        Assert.Contains("static partial class @required", result.Source("class.record.required"));
        Assert.Contains("static partial class @var", result.Source("class.record.var"));

        // And the kernel inside all those keywords runs and matches the reference.
        (Assembly assembly, System.Runtime.Loader.AssemblyLoadContext context) = GeneratorHarness.Load(result.Output);
        try
        {
            KernelUnderTest kernel = KernelUnderTest.FromType(assembly.GetType("class.record.struct+object", throwOnError: true)!);
            var shape = new AttentionShape(2, 1, 9);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(6), shape, kernel.HeadDim);
            AttentionCheck.AssertClose(AttentionCheck.Reference(kernel, inputs), AttentionCheck.Run(kernel, inputs, AttentionOptions.Default), shape, kernel.HeadDim, "@object");
        }
        finally
        {
            context.Unload();
        }
    }

    [Fact]
    public void Names_that_differ_only_by_case_each_get_their_own_file()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(CaseCollisions);
        AssertGeneratorHeld(result, expectedSources: 3, sharedHeadDims: new[] { 8, 16 });
        Assert.Empty(result.CompilationErrors);
        string[] hintNames = result.Run.Results.Single().GeneratedSources.Select(source => source.HintName).ToArray();
        Assert.Equal(5, hintNames.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        hintNames = hintNames.Where(hint => !hint.StartsWith("SparseAttention.Generated.", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, hintNames.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        Assert.Contains("WindowComponent(left: 2,", result.Source("Collide.Attn"));
        Assert.Contains("WindowComponent(left: 4,", result.Source("Collide.ATTN"));
        Assert.Contains("components: new global::SparseAttention.PatternComponent[] { }", result.Source("Collide.attn"));
    }

    [Fact]
    public void The_kernel_attribute_on_two_parts_is_generated_once()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(KernelOnTwoParts);
        AssertGeneratorHeld(result, expectedSources: 1, sharedHeadDims: new[] { 16 });
        Assert.Contains(result.Output.GetDiagnostics(), diagnostic => diagnostic.Id == "CS0579");
        Assert.DoesNotContain(result.CompilationErrors, diagnostic => diagnostic.Id != "CS0579");
    }

    /// <summary>
    /// Every declaration that broke the generator before (a keyword namespace threw CS8785, case-twins and a kernel on
    /// two parts collided on hint names) in one project with an unrelated kernel: that kernel keeps its members.
    /// </summary>
    [Fact]
    public void No_declaration_takes_another_declarations_members_with_it()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(KeywordNames, CaseCollisions, KernelOnTwoParts, Bystander);
        AssertGeneratorHeld(result, expectedSources: 3 + 3 + 1 + 1, sharedHeadDims: new[] { 8, 16 });
        Assert.Single(result.Run.Results.Single().GeneratedSources, source => GeneratorHarness.IsHintNameOf(source.HintName, "Bystanders.Unrelated"));
        Assert.DoesNotContain(result.CompilationErrors, diagnostic => diagnostic.Id is "CS0117" or "CS0103" or "CS8785");
        Assert.All(result.CompilationErrors, diagnostic => Assert.Equal("CS0579", diagnostic.Id));
    }

    /// <summary>
    /// The emitter's guard, driven with a model the parser never produces (HeadDim 0): TryEmit reports the failure
    /// instead of throwing, which is what keeps one declaration's bug to itself (SPA0014).
    /// </summary>
    [Fact]
    public void An_emitter_failure_is_reported_not_thrown()
    {
        const string construction = "global::SparseAttention.AttentionPattern.Dense(causal: true)";
        (bool emitted, string? failure) = GeneratorInternals.TryEmit("Broken", headDim: 0, causal: true, construction);
        Assert.False(emitted);
        Assert.Contains("ArgumentOutOfRangeException", failure);
        Assert.Contains("HeadDim must be 1 or more", failure);

        (bool emptyEmitted, string? emptyFailure) = GeneratorInternals.TryEmit("Empty", headDim: 64, causal: true, construction: " ");
        Assert.False(emptyEmitted);
        Assert.Contains("construction expression is empty", emptyFailure);

        // And the same path with a good model emits.
        Assert.True(GeneratorInternals.TryEmit("Fine", headDim: 64, causal: true, construction).Emitted);

        string message = string.Format(System.Globalization.CultureInfo.InvariantCulture, GeneratorInternals.Descriptor("GenerationFailed").MessageFormat.ToString(), "Broken", failure);
        Assert.Contains("could not generate 'Broken'", message);
        Assert.Contains("every other kernel is generated", message);
    }

    [Theory]
    [InlineData(LanguageVersion.CSharp9)]
    [InlineData(LanguageVersion.CSharp10)]
    [InlineData(LanguageVersion.CSharp11)]
    [InlineData(LanguageVersion.CSharp12)]
    public void A_project_before_CSharp_13_gets_one_located_error_per_kernel_and_no_generated_code(LanguageVersion version)
    {
        const string source = """
            using SparseAttention;
            namespace Old
            {
                [AttentionKernel(HeadDim = 64)] [SlidingWindow(Size = 8)] public static partial class First { }
                [AttentionKernel(HeadDim = 32, Causal = false)] public static partial class Second { }
            }
            """;
        GeneratorHarness.Result result = GeneratorHarness.Run(version, source);
        AssertGeneratorHeld(result, expectedSources: 0, sharedHeadDims: Array.Empty<int>());
        Assert.Empty(result.CompilationErrors); // no CS8706 or CS9202 from generated code: there is none
        Diagnostic[] diagnostics = GeneratorHarness.Analyze(result.Output).OrderBy(diagnostic => diagnostic.Location.SourceSpan.Start).ToArray();
        Assert.Equal(new[] { "SPA0012", "SPA0012" }, diagnostics.Select(diagnostic => diagnostic.Id));
        Assert.Equal("AttentionKernel(HeadDim = 64)", diagnostics[0].Location.SourceTree!.GetText().ToString(diagnostics[0].Location.SourceSpan));
        Assert.Contains($"this project compiles with C# {version.ToDisplayString()}", diagnostics[0].GetMessage(), StringComparison.Ordinal);
        Assert.Contains("<LangVersion>13</LangVersion>", diagnostics[1].GetMessage(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(LanguageVersion.CSharp13)]
    [InlineData(LanguageVersion.Preview)]
    [InlineData(LanguageVersion.Latest)]
    public void The_generated_code_compiles_from_CSharp_13_on(LanguageVersion version)
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(version, KeywordNames, CaseCollisions, Bystander,
            "using SparseAttention;\n[AttentionKernel(HeadDim = 64, Causal = false)] [SlidingWindow(Left = 4, Right = 4)] [Dilation(1, 2)] [GlobalTokens(0, 9)] [Strided(Stride = 7)] public static partial class Everything { }");
        AssertGeneratorHeld(result, expectedSources: 3 + 3 + 1 + 1, sharedHeadDims: new[] { 8, 16, 64 });
        Assert.Empty(result.CompilationErrors);
        Assert.Empty(GeneratorHarness.Analyze(result.Output));
    }

    /// <summary>
    /// The generator neither threw nor dropped its output: <paramref name="expectedSources"/> declaration files, and one
    /// shared kernel file for each HeadDim in <paramref name="sharedHeadDims"/>.
    /// </summary>
    private static void AssertGeneratorHeld(GeneratorHarness.Result result, int expectedSources, int[] sharedHeadDims)
    {
        GeneratorRunResult run = result.Run.Results.Single();
        Assert.Null(run.Exception);
        Assert.DoesNotContain(result.GeneratorDiagnostics, diagnostic => diagnostic.Id is "CS8785" or "SPA0014");
        string[] shared = run.GeneratedSources.Select(source => source.HintName).Where(hint => hint.StartsWith("SparseAttention.Generated.HeadDim", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(sharedHeadDims.Select(headDim => $"SparseAttention.Generated.HeadDim{headDim}.g.cs").Order(StringComparer.Ordinal), shared);
        Assert.Equal(expectedSources, run.GeneratedSources.Length - shared.Length);
    }
}
