using System;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>
    /// Packs one KV head's keys (<paramref name="seqLen"/> rows of HeadDim floats, <paramref name="rowStride"/> floats apart:
    /// HeadDim for a dense layout, more for a tensor view) for one dilation into <paramref name="destination"/>.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Pack(float* keys, long rowStride, int seqLen, int headDim, int dilation, int lanes, int keyTile, float scale, float* destination)
    {
        float* panel = destination;
        long keyStride = dilation * rowStride;

        // The gathers take 32-bit offsets of up to lanes - 1 keys (measured from the panel's first and, at 16 lanes, ninth key).
        bool gathers = keyStride * 8 <= int.MaxValue;
        for (int residue = 0; residue < dilation; residue++)
        {
            int streamLength = StreamLength(seqLen, dilation, residue);
            int panels = PanelsPerStream(streamLength, lanes, keyTile);
            for (int p = 0; p < panels; p++, panel += headDim * lanes)
            {
                int firstKey = p * lanes;
                float* firstRow = keys + (residue + (long)firstKey * dilation) * rowStride;
                if (gathers && firstKey + lanes <= streamLength && TryPackWholePanel(firstRow, (int)keyStride, headDim, lanes, scale, panel))
                {
                    continue;
                }

                for (int lane = 0; lane < lanes; lane++)
                {
                    int streamKey = firstKey + lane;
                    float* key = firstRow + (long)lane * keyStride;
                    for (int d = 0; d < headDim; d++)
                    {
                        panel[d * lanes + lane] = streamKey < streamLength ? key[d] * scale : 0f;
                    }
                }
            }
        }
    }

    /// <summary>
    /// One whole panel with hardware gathers per dimension: the lanes keys' value at dimension d, scaled,
    /// stored as one vector. Returns false where no gather of that width exists (the scalar loop packs it).
    /// </summary>
    private static unsafe bool TryPackWholePanel(float* firstRow, int keyStride, int headDim, int lanes, float scale, float* panel)
    {
        if (lanes == 16 && Avx2.IsSupported)
        {
            // .NET exposes no 512-bit gather: two 256-bit ones, for keys 0-7 and 8-15 of the panel.
            Vector256<int> offsets = Vector256<int>.Indices * keyStride;
            float* secondHalf = firstRow + 8L * keyStride;
            Vector512<float> scaleVector = Vector512.Create(scale);
            for (int d = 0; d < headDim; d++)
            {
                Vector512<float> column = Vector512.Create(Avx2.GatherVector256(firstRow + d, offsets, 4), Avx2.GatherVector256(secondHalf + d, offsets, 4));
                (column * scaleVector).Store(panel + d * 16);
            }

            return true;
        }

        if (lanes == 8 && Avx2.IsSupported)
        {
            Vector256<int> offsets = Vector256<int>.Indices * keyStride;
            Vector256<float> scaleVector = Vector256.Create(scale);
            for (int d = 0; d < headDim; d++)
            {
                (Avx2.GatherVector256(firstRow + d, offsets, 4) * scaleVector).Store(panel + d * 8);
            }

            return true;
        }

        return false;
    }
}
