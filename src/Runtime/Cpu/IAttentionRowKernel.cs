using System;
using System.ComponentModel;

namespace SparseAttention.Cpu;

/// <summary>
/// What the source generator emits for each declared kernel and instruction set: attention for one query
/// row over a list of key segments, with HeadDim and tile sizes as compile-time constants. The runtime's
/// <see cref="CpuAttention"/> calls it through a struct type parameter, so each call site is specialised
/// and inlined by the JIT; nothing is looked up or compiled at run time.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public interface IAttentionRowKernel
{
    /// <summary>Size of one head's vector.</summary>
    static abstract int HeadDim { get; }

    /// <summary>Floats of per-thread scratch <see cref="AccumulateRow"/> needs (one key tile of scores).</summary>
    static abstract int ScratchLength { get; }

    /// <summary>
    /// Adds the keys in <paramref name="segments"/> to one row's online-softmax state: the running max, the
    /// running sum of exp(score - max) and the unnormalised output <paramref name="accumulator"/> (HeadDim
    /// floats). <paramref name="keys"/> and <paramref name="values"/> point at key position 0 of the row's KV
    /// head; the key at position j starts at offset j * HeadDim. Only keys in the segments are read.
    /// The softmax is in base 2: <paramref name="scale"/> includes log2(e), the state's max is in that unit,
    /// and each key adds 2^(score - max). <typeparamref name="TScores"/> modifies each score before the softmax
    /// (<see cref="IScoreModifier"/>), told where it sits by <paramref name="row"/>.
    /// </summary>
    static abstract void AccumulateRow<TScores>(ref float query, ref float keys, ref float values, ReadOnlySpan<KeySegment> segments, in ScoreRow row, float scale, Span<float> scratch, ref float runningMax, ref float runningSum, Span<float> accumulator)
        where TScores : IScoreModifier;
}

/// <summary>
/// A row kernel that also has a register-blocked tile kernel for bands and rectangles of keys (<see cref="BandTile"/>):
/// <see cref="TileRows"/> queries against <see cref="KeyTile"/> keys at a time,
/// QKᵀ from transposed key panels, online softmax per row, PV by broadcast + FMA.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public interface IAttentionTileKernel : IAttentionRowKernel
{
    /// <summary>Keys per packed panel: the vector width in floats.</summary>
    static abstract int Lanes { get; }

    /// <summary>Queries per tile (Br).</summary>
    static abstract int TileRows { get; }

    /// <summary>Keys per tile (Bc), a multiple of <see cref="Lanes"/>.</summary>
    static abstract int KeyTile { get; }

    /// <summary>
    /// Adds the tile's band of keys (<see cref="BandTile"/>) to the online-softmax state of the tile's rows, each score
    /// modified by <typeparamref name="TScores"/> first.
    /// </summary>
    static abstract void AccumulateBandTile<TScores>(ref BandTile tile)
        where TScores : IScoreModifier;

    /// <summary>
    /// Queries per tile of <see cref="AccumulateNeighborhoodTile"/>, or 0 where the generator emitted none (no declaration
    /// of this HeadDim has a neighbourhood): neighbourhood tiles then run through <see cref="AccumulateBandTile"/>.
    /// </summary>
    /// <remarks>
    /// A neighbourhood's rows move by a column of keys (one key per key line), so a tile's rows share fewer of their keys
    /// than a window's: six rows of a 7 x 7 neighbourhood span 84 stream keys for 49 each, four span 70. Fewer rows per
    /// tile compute fewer scores no row sees (design §7).
    /// </remarks>
    static virtual int NeighborhoodTileRows => 0;

    /// <summary>As <see cref="AccumulateBandTile"/>, for tiles of at most <see cref="NeighborhoodTileRows"/> queries.</summary>
    static virtual void AccumulateNeighborhoodTile<TScores>(ref BandTile tile)
        where TScores : IScoreModifier =>
        throw new NotSupportedException("This kernel has no neighbourhood tile kernel (NeighborhoodTileRows is 0); run its neighbourhood tiles through AccumulateBandTile.");
}
