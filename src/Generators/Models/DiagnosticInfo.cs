using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators.Models;

/// <summary>
/// A diagnostic as data: the descriptor, where it points and its message arguments. Unlike
/// <see cref="Diagnostic"/> it holds no syntax tree, so it can flow through the incremental pipeline.
/// </summary>
internal sealed record DiagnosticInfo(DiagnosticDescriptor Descriptor, LocationInfo? Location, EquatableArray<string> Arguments)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, Location? location, params string[] arguments) =>
        new(descriptor, LocationInfo.From(location), new EquatableArray<string>(arguments));

    public Diagnostic ToDiagnostic() =>
        Diagnostic.Create(Descriptor, Location?.ToLocation(), System.Linq.Enumerable.ToArray<object?>(Arguments));
}

/// <summary>A source location as values (file, span, line span) rather than a tree-bound <see cref="Location"/>.</summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public static LocationInfo? From(Location? location) =>
        location is null || !location.IsInSource ? null : new LocationInfo(location.SourceTree!.FilePath, location.SourceSpan, location.GetLineSpan().Span);

    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);
}
