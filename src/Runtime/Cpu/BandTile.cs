using System;
using System.ComponentModel;

namespace SparseAttention.Cpu;

/// <summary>
/// One tile of the band pass: up to <see cref="IAttentionTileKernel.TileRows"/> consecutive queries of a
/// residue stream (positions r, r + D, r + 2D, ... for dilation D) and the stream's keys. In stream
/// coordinates query m sees keys m - left .. m + right, cut to [0, StreamLength); the generator bakes
/// left and right into each kernel as constants (from <see cref="AttentionPattern.TryGetBand"/>).
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

    /// <summary>Keys (and queries) in the stream.</summary>
    public int StreamLength;

    /// <summary>Per row: the running max of the scores.</summary>
    public Span<float> RowMax;

    /// <summary>Per row: the running sum of exp(score - max).</summary>
    public Span<float> RowSum;

    /// <summary>Per row: HeadDim floats of unnormalised output.</summary>
    public Span<float> Accumulators;

    /// <summary>TileRows * KeyTile floats of scratch for one tile's probabilities.</summary>
    public Span<float> Probabilities;
}
