using System.Linq;
using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Diagnostics;

/// <summary>
/// Every diagnostic SparseAttention reports, in one place. IDs are stable once shipped (AnalyzerReleases.Shipped.md /
/// Unshipped.md record them); each has a page in docs/diagnostics/ and a message that says what to change.
/// A test checks that this catalog, the pages and the release files name the same IDs.
/// </summary>
internal static class DiagnosticDescriptors
{
    public const string Category = "SparseAttention";

    /// <summary>
    /// Where the pages live. Relative to the repository root until the project has a public home; the IDE shows it
    /// as the rule's help link and the page's name is the ID.
    /// </summary>
    public const string HelpLinkBase = "docs/diagnostics/";

    public const string KernelClassShapeId = "SPA0001";
    public const string UnsupportedHeadDimId = "SPA0002";
    public const string InvalidPatternValueId = "SPA0003";
    public const string WindowSizeWithLeftRightId = "SPA0004";
    public const string MalformedAttributeId = "SPA0005";
    public const string DilationWithoutWindowId = "SPA0006";
    public const string DilationWithoutEffectId = "SPA0007";
    public const string DuplicateGlobalTokenId = "SPA0008";
    public const string CausalHidesRightId = "SPA0009";
    public const string PatternWithoutKernelId = "SPA0010";
    public const string StreamingNotSupportedId = "SPA0011";
    public const string LanguageVersionTooLowId = "SPA0012";
    public const string EmptyValueListId = "SPA0013";
    public const string GenerationFailedId = "SPA0014";
    public const string InvalidSoftcapId = "SPA0015";
    public const string InvalidModifierMethodId = "SPA0016";

    public static readonly DiagnosticDescriptor KernelClassShape = Create(
        KernelClassShapeId,
        "Attention kernel must be a static partial class",
        "'{0}' must be a non-generic 'static partial class' whose containing types are all partial, so the generator can add its Forward methods",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor UnsupportedHeadDim = Create(
        UnsupportedHeadDimId,
        "Unsupported HeadDim",
        "HeadDim must be a multiple of 8 from 8 to 256 (8, 16, 24, ..., 256); got {0}",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor InvalidPatternValue = Create(
        InvalidPatternValueId,
        "Invalid attention pattern value",
        "{0}",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor WindowSizeWithLeftRight = Create(
        WindowSizeWithLeftRightId,
        "SlidingWindow Size set together with Left or Right",
        "Set either SlidingWindow(Size = W), the causal shorthand for Left = W - 1, Right = 0, or Left/Right, not both",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor MalformedAttribute = Create(
        MalformedAttributeId,
        "Attention attribute cannot be read",
        "The [{0}] attribute on '{1}' has an argument the generator cannot read; fix the compiler errors on it",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor DilationWithoutWindow = Create(
        DilationWithoutWindowId,
        "Dilation without SlidingWindow",
        "[Dilation] spaces out the sliding window's keys, but '{0}' has no [SlidingWindow]; add one (e.g. [SlidingWindow(Left = 256, Right = 256)]) or remove [Dilation]",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor DilationWithoutEffect = Create(
        DilationWithoutEffectId,
        "Dilation has no effect",
        "[Dilation] has no effect on '{0}': its window is the query alone (Left = Right = 0), and dilation only spaces out the other keys; widen the window or remove [Dilation]",
        DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor DuplicateGlobalToken = Create(
        DuplicateGlobalTokenId,
        "Global token listed twice",
        "Global token {0} is listed more than once; remove the repeat (a position is global or not, listing it twice changes nothing)",
        DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor CausalHidesRight = Create(
        CausalHidesRightId,
        "Causal kernel with a window reaching right",
        "'{0}' is causal, so the window's Right = {1} keys after the query are never visible; set Right = 0, or Causal = false on [AttentionKernel] if queries should see later keys",
        DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor PatternWithoutKernel = Create(
        PatternWithoutKernelId,
        "Pattern attribute without AttentionKernel",
        "[{0}] on '{1}' does nothing without [AttentionKernel(HeadDim = ...)] on the same class; add it, or remove [{0}]",
        DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor StreamingNotSupported = Create(
        StreamingNotSupportedId,
        "Kernel cannot decode with a rolling KV cache",
        "'{0}.{1}' always throws: {2}",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor LanguageVersionTooLow = Create(
        LanguageVersionTooLowId,
        "C# version too old for the generated kernels",
        "'{0}' needs C# {1} or later: the generated kernels implement static abstract interface members and call .NET 10 vector APIs that only C# 13 binds; this project compiles with C# {2}. Set <LangVersion>{3}</LangVersion> or later in the project file, or remove <LangVersion> to use the SDK's default (C# 14 on .NET 10).",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor EmptyValueList = Create(
        EmptyValueListId,
        "Pattern attribute lists no values",
        "[{0}] on '{1}' lists no {2}, so it changes nothing; {3} or remove [{0}]",
        DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor GenerationFailed = Create(
        GenerationFailedId,
        "Kernel could not be generated",
        "SparseAttention could not generate '{0}' ({1}); its members are missing, every other kernel is generated. This is a bug in SparseAttention: please report it with the declaration.",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor InvalidSoftcap = Create(
        InvalidSoftcapId,
        "Softcap must be a finite number greater than 0",
        "[Softcap] on '{0}' is {1}; the cap must be a finite number greater than 0 (Gemma 2 uses [Softcap(50)]), or remove [Softcap]",
        DiagnosticSeverity.Error);

    public static readonly DiagnosticDescriptor InvalidModifierMethod = Create(
        InvalidModifierMethodId,
        "Mask or score-mod method not found or wrong signature",
        "[{0}] on '{1}': {2}; it must name a method of '{1}' declared as '{3}', e.g. [{0}(nameof(...))]",
        DiagnosticSeverity.Error);

    /// <summary>What <see cref="AttentionAnalyzer"/> reports: every validation rule.</summary>
    public static readonly DiagnosticDescriptor[] Analyzer =
    {
        KernelClassShape, UnsupportedHeadDim, InvalidPatternValue, WindowSizeWithLeftRight, MalformedAttribute,
        DilationWithoutWindow, DilationWithoutEffect, DuplicateGlobalToken, CausalHidesRight, PatternWithoutKernel,
        StreamingNotSupported, LanguageVersionTooLow, EmptyValueList, InvalidSoftcap, InvalidModifierMethod,
    };

    /// <summary>
    /// Every descriptor, for the catalog tests: the analyzer's, and the one the generator reports itself when emitting a
    /// valid declaration fails (a bug, kept to that declaration instead of taking every kernel's output down).
    /// </summary>
    public static readonly DiagnosticDescriptor[] All = Analyzer.Concat(new[] { GenerationFailed }).OrderBy(descriptor => descriptor.Id, System.StringComparer.Ordinal).ToArray();

    private static DiagnosticDescriptor Create(string id, string title, string message, DiagnosticSeverity severity) =>
        new(id, title, message, Category, severity, isEnabledByDefault: true, helpLinkUri: HelpLinkBase + id + ".md");
}
