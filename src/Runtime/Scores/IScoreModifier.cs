using System;
using System.ComponentModel;

namespace SparseAttention.Cpu;

/// <summary>
/// What a declaration does to a score between q·k and the softmax (docs/design.md §2.4): softcap, ALiBi, then the user's
/// mask and score mod, in that order. The generator emits one struct per declaration that has any of them; the kernels
/// take it as a type parameter and read its constants, so the JIT keeps only the modifiers declared: a declaration
/// without any runs <see cref="NoScoreModifier"/> and every hook folds away. Softcap and ALiBi are the runtime's own
/// vector code (the tile kernels apply them in registers); only the user's methods are called per key.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public interface IScoreModifier
{
    /// <summary>Whether any modifier is declared (false: the kernels skip every hook).</summary>
    static abstract bool ModifiesScores { get; }

    /// <summary>The softcap in the kernels' base-2 units (cap x log2(e)); 0 for none.</summary>
    static abstract float SoftcapBase2 { get; }

    /// <summary>Whether ALiBi's bias is added (the slope comes with each call, per head).</summary>
    static abstract bool Alibi { get; }

    /// <summary>Whether a user mask or score mod is declared (<see cref="ApplyUserCode"/> does something).</summary>
    static abstract bool CallsUserCode { get; }

    /// <summary>
    /// Applies the user's mask and score mod to <paramref name="scores"/>, one query row's scores (base-2 units, softcap
    /// and ALiBi already applied) against the keys <paramref name="site"/> names, in place; a masked key becomes -inf.
    /// Only keys the pattern's structure makes visible to the row are passed, so a user method never sees an
    /// out-of-range position.
    /// </summary>
    static abstract void ApplyUserCode(Span<float> scores, in ScoreSite site);
}

/// <summary>The modifier of a declaration that has none: the kernels' hooks compile to nothing.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly struct NoScoreModifier : IScoreModifier
{
    /// <inheritdoc/>
    public static bool ModifiesScores => false;

    /// <inheritdoc/>
    public static float SoftcapBase2 => 0f;

    /// <inheritdoc/>
    public static bool Alibi => false;

    /// <inheritdoc/>
    public static bool CallsUserCode => false;

    /// <inheritdoc/>
    public static void ApplyUserCode(Span<float> scores, in ScoreSite site)
    {
    }
}

/// <summary>
/// Where a run of scores sits: one query (absolute position and query head) against keys at absolute positions
/// <see cref="FirstKey"/> + k x <see cref="KeyStep"/>, or <see cref="GatheredKeys"/>[k] when that is not empty (a
/// component's gathered stream of scattered positions).
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly ref struct ScoreSite
{
    /// <summary>A site; see the properties.</summary>
    public ScoreSite(int query, int head, float alibiSlope, int firstKey, int keyStep, ReadOnlySpan<int> gatheredKeys)
    {
        Query = query;
        Head = head;
        AlibiSlope = alibiSlope;
        FirstKey = firstKey;
        KeyStep = keyStep;
        GatheredKeys = gatheredKeys;
    }

    /// <summary>The query's absolute position in the sequence.</summary>
    public int Query { get; }

    /// <summary>The query head.</summary>
    public int Head { get; }

    /// <summary>This head's ALiBi slope in base-2 units (slope x log2(e)); 0 without ALiBi.</summary>
    public float AlibiSlope { get; }

    /// <summary>The first key's absolute position (when <see cref="GatheredKeys"/> is empty).</summary>
    public int FirstKey { get; }

    /// <summary>Positions between consecutive keys (when <see cref="GatheredKeys"/> is empty).</summary>
    public int KeyStep { get; }

    /// <summary>The keys' positions one by one, for a gathered stream; empty otherwise.</summary>
    public ReadOnlySpan<int> GatheredKeys { get; }

    /// <summary>The absolute position of the <paramref name="k"/>-th key.</summary>
    public int KeyAt(int k) => GatheredKeys.IsEmpty ? FirstKey + k * KeyStep : GatheredKeys[k];
}

/// <summary>
/// One query row as the row kernel sees it: its position and head, its head's ALiBi slope (base 2), and, when its key
/// segments are slots of a KV store rather than positions, the position of each segment's first key.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly ref struct ScoreRow
{
    /// <summary>A row; see the properties.</summary>
    public ScoreRow(int query, int head, float alibiSlope, ReadOnlySpan<int> segmentPositions)
    {
        Query = query;
        Head = head;
        AlibiSlope = alibiSlope;
        SegmentPositions = segmentPositions;
    }

    /// <summary>The query's absolute position.</summary>
    public int Query { get; }

    /// <summary>The query head.</summary>
    public int Head { get; }

    /// <summary>The head's ALiBi slope in base-2 units; 0 without ALiBi.</summary>
    public float AlibiSlope { get; }

    /// <summary>Per segment, the position of its first key; empty when the segments are positions themselves.</summary>
    public ReadOnlySpan<int> SegmentPositions { get; }

    /// <summary>The site of keys <paramref name="first"/>.. of segment <paramref name="index"/>.</summary>
    public ScoreSite Site(int index, KeySegment segment, int first)
    {
        int start = SegmentPositions.IsEmpty ? segment.Start : SegmentPositions[index];
        return new ScoreSite(Query, Head, AlibiSlope, start + first * segment.Step, segment.Step, ReadOnlySpan<int>.Empty);
    }
}
