using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators.Models;

/// <summary>
/// Everything the emitters need for one declared kernel, as plain values: no symbol, syntax node or
/// location survives the parser, so the model compares by value and an unrelated edit leaves it equal.
/// </summary>
/// <param name="EmitGpu">
/// Whether the compilation references ILGPU and SparseAttention's GPU plumbing, so the ILGPU kernel and its
/// overloads can be emitted. Set after parsing, from the compilation, not from the declaration.
/// </param>
internal sealed record KernelModel(HierarchyInfo Hierarchy, PatternModel Pattern, bool EmitGpu = false);

/// <summary>The declared pattern, already validated.</summary>
internal sealed record PatternModel(
    int HeadDim,
    bool Causal,
    int? WindowLeft,
    int? WindowRight,
    EquatableArray<int> Dilations,
    EquatableArray<int> GlobalTokens,
    int? Stride);

/// <summary>
/// Where the kernel class sits: its namespace and the chain of types that contain it, as C# writes them (a keyword used as
/// a name keeps its '@', so <c>namespace @class</c> and <c>class @object</c> are emitted as declared).
/// </summary>
/// <param name="Namespace">The namespace as C# source (each keyword segment escaped), or null for the global namespace.</param>
/// <param name="Types">The containing types, outermost first, then the kernel class itself.</param>
/// <param name="FullName">The plain dotted name (no '@'), for the header comment and the hint name.</param>
internal sealed record HierarchyInfo(string? Namespace, EquatableArray<ContainingTypeInfo> Types, string FullName);

/// <summary>One type of the hierarchy: its keyword (class, struct, record ...) and its name as C# source.</summary>
internal sealed record ContainingTypeInfo(string Keyword, string Name);
