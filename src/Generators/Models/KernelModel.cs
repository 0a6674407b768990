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
/// <param name="EmitTensors">
/// Whether the compilation references the runtime's tensor plumbing (and System.Numerics.Tensors), so the TensorSpan and
/// packed-sequence overloads can be emitted. Set after parsing, from the compilation.
/// </param>
/// <param name="Scores">What the declaration does to each score before the softmax (softcap, ALiBi, mask, score mod, sinks).</param>
internal sealed record KernelModel(HierarchyInfo Hierarchy, PatternModel Pattern, ScoresModel Scores, bool EmitGpu = false, bool EmitTensors = false);

/// <summary>
/// A declaration's score modifiers, validated: the softcap, ALiBi, the names of its mask and score-mod methods (checked to
/// exist in the kernel class with the right signature), and learned sinks.
/// </summary>
internal sealed record ScoresModel(float? Softcap, bool Alibi, string? MaskMethod, string? ScoreModMethod, bool LearnedSinks)
{
    public static readonly ScoresModel None = new(null, false, null, null, false);

    /// <summary>Whether any modifier acts on the scores themselves (sinks act only on the softmax's denominator).</summary>
    public bool ModifiesScores => Softcap is not null || Alibi || MaskMethod is not null || ScoreModMethod is not null;

    /// <summary>Whether the user's code runs per score (a mask or a score mod): the GPU kernel is then the declaration's own.</summary>
    public bool CallsUserCode => MaskMethod is not null || ScoreModMethod is not null;

    /// <summary>Whether there is anything to tell the runtime (a <c>ScoreModifiers</c> other than None).</summary>
    public bool Any => ModifiesScores || LearnedSinks;
}

/// <summary>One HeadDim's shared kernels: emitted once per compilation, whatever the number of declarations using it.</summary>
/// <param name="EmitNeighborhoodTile">Whether a declaration of this HeadDim has a neighbourhood, which gets its own tile kernel.</param>
internal sealed record SharedKernelsModel(int HeadDim, bool EmitGpu, bool EmitNeighborhoodTile);

/// <summary>What one declaration asks of its HeadDim's shared kernels.</summary>
internal readonly record struct SharedKernelsUse(int HeadDim, bool Neighborhood);

/// <summary>
/// The declared pattern, already validated, as the emitter needs it: all meaning was worked out by the runtime's own
/// <c>AttentionPattern</c> in the parser, so the emitter only writes text and knows no pattern kind.
/// </summary>
/// <param name="Construction">A C# expression that builds the pattern (<c>AttentionPattern.ToCSharp()</c>).</param>
/// <param name="Description">The pattern in words, for the header.</param>
/// <param name="StreamingProblem">Why a rolling KV cache cannot serve it, or null.</param>
/// <param name="RingSlots">Ring slots per KV head of its rolling cache (0 when it cannot stream).</param>
/// <param name="PinnedSlots">Pinned global-token slots per KV head.</param>
internal sealed record PatternModel(
    int HeadDim,
    bool Causal,
    string Construction,
    string Description,
    string? StreamingProblem,
    int RingSlots,
    int PinnedSlots,
    int GridAxes = 0);

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
