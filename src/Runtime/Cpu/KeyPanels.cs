using System;

namespace SparseAttention.Cpu;

/// <summary>
/// Keys rearranged for the tile kernel's QKᵀ: for each KV head and each residue stream of a dilation D
/// (positions r, r + D, r + 2D, ...), panels of <c>lanes</c> keys stored dimension by dimension, so one
/// vector load gives one dimension of <c>lanes</c> consecutive stream keys. The softmax scale is folded in.
/// Packing is O(n·HeadDim) per KV head and dilation, against O(n·window·HeadDim) for the attention itself.
/// </summary>
internal static class KeyPanels
{
    /// <summary>Panels a stream of <paramref name="streamLength"/> keys needs, with a key tile of zero padding.</summary>
    public static int PanelsPerStream(int streamLength, int lanes, int keyTile) => (streamLength + lanes - 1) / lanes + keyTile / lanes;

    /// <summary>Keys in residue stream <paramref name="residue"/> of dilation <paramref name="dilation"/>.</summary>
    public static int StreamLength(int seqLen, int dilation, int residue) => residue >= seqLen ? 0 : (seqLen - residue + dilation - 1) / dilation;

    /// <summary>Floats of panels for one KV head at one dilation (all its residue streams).</summary>
    public static long FloatsPerKvHead(int seqLen, int dilation, int headDim, int lanes, int keyTile)
    {
        long floats = 0;
        for (int residue = 0; residue < dilation; residue++)
        {
            floats += (long)PanelsPerStream(StreamLength(seqLen, dilation, residue), lanes, keyTile) * headDim * lanes;
        }

        return floats;
    }

    /// <summary>Offset of residue stream <paramref name="residue"/> within one KV head's panels.</summary>
    public static long StreamOffset(int seqLen, int dilation, int residue, int headDim, int lanes, int keyTile)
    {
        long offset = 0;
        for (int r = 0; r < residue; r++)
        {
            offset += (long)PanelsPerStream(StreamLength(seqLen, dilation, r), lanes, keyTile) * headDim * lanes;
        }

        return offset;
    }

    /// <summary>Packs one KV head's keys (<c>[SeqLen, HeadDim]</c>) for one dilation into <paramref name="destination"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Pack(float* keys, int seqLen, int headDim, int dilation, int lanes, int keyTile, float scale, float* destination)
    {
        float* panel = destination;
        for (int residue = 0; residue < dilation; residue++)
        {
            int streamLength = StreamLength(seqLen, dilation, residue);
            int panels = PanelsPerStream(streamLength, lanes, keyTile);
            for (int p = 0; p < panels; p++, panel += headDim * lanes)
            {
                for (int lane = 0; lane < lanes; lane++)
                {
                    int streamKey = p * lanes + lane;
                    if (streamKey < streamLength)
                    {
                        float* key = keys + (long)(residue + streamKey * dilation) * headDim;
                        for (int d = 0; d < headDim; d++)
                        {
                            panel[d * lanes + lane] = key[d] * scale;
                        }
                    }
                    else
                    {
                        for (int d = 0; d < headDim; d++)
                        {
                            panel[d * lanes + lane] = 0f;
                        }
                    }
                }
            }
        }
    }
}
