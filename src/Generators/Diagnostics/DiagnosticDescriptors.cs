using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Diagnostics;

/// <summary>
/// Every diagnostic the SparseAttention generator reports, in one place. IDs are stable once shipped
/// (see AnalyzerReleases.Shipped.md / Unshipped.md); each message says what to change.
/// </summary>
internal static class DiagnosticDescriptors
{
    public const string Category = "SparseAttention";

    public const string KernelClassShapeId = "SPA0001";
    public const string UnsupportedHeadDimId = "SPA0002";
    public const string InvalidPatternValueId = "SPA0003";
    public const string WindowSizeWithLeftRightId = "SPA0004";
    public const string MalformedAttributeId = "SPA0005";

    public static readonly DiagnosticDescriptor KernelClassShape = new(
        KernelClassShapeId,
        "Attention kernel must be a static partial class",
        "'{0}' must be a non-generic 'static partial class' whose containing types are all partial, so the generator can add its Forward method",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor UnsupportedHeadDim = new(
        UnsupportedHeadDimId,
        "Unsupported HeadDim",
        "HeadDim must be a multiple of 8 from 8 to 256 (8, 16, 24, ..., 256); got {0}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InvalidPatternValue = new(
        InvalidPatternValueId,
        "Invalid attention pattern value",
        "{0}",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor WindowSizeWithLeftRight = new(
        WindowSizeWithLeftRightId,
        "SlidingWindow Size set together with Left or Right",
        "Set either SlidingWindow(Size = W), the causal shorthand for Left = W - 1, Right = 0, or Left/Right, not both",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor MalformedAttribute = new(
        MalformedAttributeId,
        "Attention attribute cannot be read",
        "The [{0}] attribute on '{1}' has an argument the generator cannot read; fix the compiler errors on it",
        Category,
        DiagnosticSeverity.Error,
        isEnabledByDefault: true);
}
