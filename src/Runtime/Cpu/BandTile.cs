using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// One tile for the tile kernel: up to <see cref="IAttentionTileKernel.TileRows"/> queries and one stream of keys (a
/// residue stream, positions r, r + D, r + 2D, ..., or a component's gathered stream). Row t sits at stream coordinate
/// q_t = <see cref="FirstQuery"/> + t · <see cref="QueryStep"/> and sees keys q_t - <see cref="Left"/> .. q_t +
/// <see cref="Right"/>, cut to [<see cref="KeyFirst"/>, <see cref="KeyLast"/>]: a window or strided band (the
/// component's <c>TileBands</c>), with Left and Right unbounded a rectangle of keys every row sees (a block component's
/// run), or a neighbourhood's band over its gathered key lines (step = key lines per column).
/// The kernel depends only on HeadDim and the instruction set; the band comes with the tile.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public ref struct BandTile
{
    /// <summary>The tile's first query row; row t starts at offset t * <see cref="QueryStride"/>.</summary>
    public ref float Query;

    /// <summary>Floats between consecutive query rows of the stream (D * HeadDim).</summary>
    public int QueryStride;

    /// <summary>Valid rows in this tile (at most TileRows).</summary>
    public int Rows;

    /// <summary>
    /// The stream's keys as transposed panels of Lanes keys: panel p holds keys p*Lanes .. p*Lanes + Lanes - 1,
    /// dimension by dimension, already multiplied by the softmax scale; past the stream's end it is zero.
    /// </summary>
    public ref float KeyPanels;

    /// <summary>The stream's first value row; stream key k starts at offset k * <see cref="ValueStride"/>.</summary>
    public ref float Values;

    /// <summary>Floats between consecutive value rows of the stream (D * HeadDim).</summary>
    public int ValueStride;

    /// <summary>The tile's first query, in stream coordinates.</summary>
    public int FirstQuery;

    /// <summary>
    /// Stream keys between consecutive rows' coordinates: 1 for a residue stream or a block's run (set it: a tile made
    /// without it has every row at <see cref="FirstQuery"/>); M for a neighbourhood's stream, whose keys go column by
    /// column with M key lines each, so the next query along the line sees the same band M keys on.
    /// </summary>
    public int QueryStep;

    /// <summary>Stream keys a row sees before the query (int.MaxValue: all).</summary>
    public long Left;

    /// <summary>Stream keys a row sees after the query; negative when the band ends before it (int.MaxValue: all).</summary>
    public long Right;

    /// <summary>The first stream key of the tile's keys.</summary>
    public int KeyFirst;

    /// <summary>The last stream key of the tile's keys.</summary>
    public int KeyLast;

    /// <summary>Per row: the running max of the scores.</summary>
    public Span<float> RowMax;

    /// <summary>Per row: the running sum of exp(score - max).</summary>
    public Span<float> RowSum;

    /// <summary>Per row: HeadDim floats of unnormalised output.</summary>
    public Span<float> Accumulators;

    /// <summary>TileRows * KeyTile floats of scratch for one tile's probabilities.</summary>
    public Span<float> Probabilities;

    // Where the tile sits in the sequence, for score modifiers (ALiBi's distance, which the kernels add in registers, and a
    // mask's or score mod's arguments in ApplyUserCode); a declaration without modifiers never reads them.

    /// <summary>The query head.</summary>
    public int Head;

    /// <summary>The head's ALiBi slope in base-2 units (0 without ALiBi).</summary>
    public float AlibiSlope;

    /// <summary>The absolute position of the tile's row 0, and the positions between its rows.</summary>
    public int QueryPosition, QueryPositionStep;

    /// <summary>The absolute position of stream key 0, and the positions between stream keys (a residue stream).</summary>
    public int KeyPosition, KeyPositionStep;

    /// <summary>
    /// For a gathered stream, the absolute position of each stream key, padded by a key tile past its end (vector loads
    /// of a boundary tile read there); empty otherwise.
    /// </summary>
    public ReadOnlySpan<int> GatheredKeyPositions;

    /// <summary>The absolute position of row <paramref name="row"/> (rows past the tile's end repeat its last row, as the kernels do).</summary>
    public readonly int QueryPositionOf(int row) => QueryPosition + QueryPositionStep * Math.Min(row, Rows - 1);

    /// <summary>
    /// The softcap (<typeparamref name="TScores"/>'s) on the tile's score block of <paramref name="count"/> scores from
    /// <paramref name="scores"/>: one call per key tile, before the kernel reads each row back (ALiBi is added then, in
    /// registers). Not inlined, so the kernel's own inlining (its 2^x) is untouched: an inlined softcap per tile row ran at
    /// 0.55-0.76 of plain speed. A softcapped non-finite score becomes NaN, so the kernel's test of what it holds still
    /// sees a non-finite raw score; masked lanes are selected away afterwards, whatever they hold.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ApplySoftcap<TScores>(ref float scores, int count)
        where TScores : IScoreModifier =>
        ScoreMath.Softcap(MemoryMarshal.CreateSpan(ref scores, count), TScores.SoftcapBase2);

    /// <summary>
    /// Applies the declaration's mask and score mod (<see cref="IScoreModifier.ApplyUserCode"/>) to row
    /// <paramref name="row"/>'s scores of stream keys <paramref name="from"/> .. <paramref name="to"/> (the keys of this key
    /// tile the row's band covers), stored from <paramref name="rowScores"/> for the tile's first key
    /// <paramref name="keyStart"/> on. Not inlined on purpose: each tile row of the kernel calls it, and a copy of the
    /// user's loop per row would bloat the kernel more than the call costs.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public readonly void ApplyUserCode<TScores>(ref float rowScores, int row, long keyStart, long from, long to)
        where TScores : IScoreModifier
    {
        if (from > to)
        {
            return;
        }

        var site = GatheredKeyPositions.IsEmpty
            ? new ScoreSite(QueryPositionOf(row), Head, AlibiSlope, KeyPosition + (int)from * KeyPositionStep, KeyPositionStep, ReadOnlySpan<int>.Empty)
            : new ScoreSite(QueryPositionOf(row), Head, AlibiSlope, 0, 0, GatheredKeyPositions.Slice((int)from));
        TScores.ApplyUserCode(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref rowScores, (nint)(from - keyStart)), (int)(to - from + 1)), site);
    }
}
