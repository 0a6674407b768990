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
        for (int residue = 0; residue < dilation; residue++)
        {
            int streamLength = StreamLength(seqLen, dilation, residue);
            int panels = PanelsPerStream(streamLength, lanes, keyTile);
            for (int p = 0; p < panels; p++, panel += headDim * lanes)
            {
                int firstKey = p * lanes;
                float* firstRow = keys + (residue + (long)firstKey * dilation) * rowStride;
                if (firstKey + lanes <= streamLength && TryPackWholePanel(firstRow, keyStride, headDim, lanes, scale, panel))
                {
                    continue;
                }

                for (int lane = 0; lane < lanes; lane++)
                {
                    int streamKey = firstKey + lane;
                    float* key = firstRow + lane * keyStride;
                    for (int d = 0; d < headDim; d++)
                    {
                        panel[d * lanes + lane] = streamKey < streamLength ? key[d] * scale : 0f;
                    }
                }
            }
        }
    }

    /// <summary>
    /// One whole panel as register transposes: <paramref name="lanes"/> keys' rows loaded a square block at a time
    /// (lanes x lanes floats), transposed in registers and stored as lanes dimensions of the panel. Replaced hardware
    /// gathers, one per dimension, which took 7% of a 4K-token window call (measured; a gather of 8 floats is about as
    /// many operations as the 8 scalar loads it stands for). HeadDim is a multiple of lanes wherever a kernel of that
    /// width exists. Returns false where the instruction set has no such transpose here (the scalar loop packs it).
    /// It and the transposes are compiled fully optimised from the first call, as <see cref="Pack"/> is: at tier 0 a
    /// transpose is unoptimised vector code and packing ran 10x slower (30 us instead of 3 for 936 keys at HeadDim 32)
    /// for the first few thousand calls, which a call or two of any pattern reach.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe bool TryPackWholePanel(float* firstRow, long keyStride, int headDim, int lanes, float scale, float* panel)
    {
        if (lanes == 16 && Avx512F.IsSupported)
        {
            Vector512<float> factor = Vector512.Create(scale);
            for (int d = 0; d < headDim; d += 16)
            {
                Transpose16(firstRow + d, keyStride, factor, panel + d * 16);
            }

            return true;
        }

        if (lanes == 8 && Avx.IsSupported)
        {
            Vector256<float> factor = Vector256.Create(scale);
            for (int d = 0; d < headDim; d += 8)
            {
                Transpose8(firstRow + d, keyStride, factor, panel + d * 8);
            }

            return true;
        }

        if (lanes == 4 && Sse.IsSupported)
        {
            Vector128<float> factor = Vector128.Create(scale);
            for (int d = 0; d < headDim; d += 4)
            {
                Transpose4(firstRow + d, keyStride, factor, panel + d * 4);
            }

            return true;
        }

        return false;
    }

    /// <summary>
    /// 16 rows of 16 floats (rows <paramref name="rowStride"/> apart) times <paramref name="factor"/>, stored transposed:
    /// column j at <paramref name="destination"/> + 16 j. Pairs, then quads interleave within 128-bit blocks; two rounds of
    /// block shuffles finish it (64 shuffles for 256 floats).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Transpose16(float* source, long rowStride, Vector512<float> factor, float* destination)
    {
        Vector512<float> r0 = Vector512.Load(source) * factor, r1 = Vector512.Load(source + rowStride) * factor;
        Vector512<float> r2 = Vector512.Load(source + 2 * rowStride) * factor, r3 = Vector512.Load(source + 3 * rowStride) * factor;
        Vector512<float> r4 = Vector512.Load(source + 4 * rowStride) * factor, r5 = Vector512.Load(source + 5 * rowStride) * factor;
        Vector512<float> r6 = Vector512.Load(source + 6 * rowStride) * factor, r7 = Vector512.Load(source + 7 * rowStride) * factor;
        Vector512<float> r8 = Vector512.Load(source + 8 * rowStride) * factor, r9 = Vector512.Load(source + 9 * rowStride) * factor;
        Vector512<float> r10 = Vector512.Load(source + 10 * rowStride) * factor, r11 = Vector512.Load(source + 11 * rowStride) * factor;
        Vector512<float> r12 = Vector512.Load(source + 12 * rowStride) * factor, r13 = Vector512.Load(source + 13 * rowStride) * factor;
        Vector512<float> r14 = Vector512.Load(source + 14 * rowStride) * factor, r15 = Vector512.Load(source + 15 * rowStride) * factor;

        // Pairs: t(2i) holds rows 2i, 2i+1 interleaved at elements 0-1 of each block, t(2i+1) at elements 2-3.
        Vector512<float> t0 = Avx512F.UnpackLow(r0, r1), t1 = Avx512F.UnpackHigh(r0, r1), t2 = Avx512F.UnpackLow(r2, r3), t3 = Avx512F.UnpackHigh(r2, r3);
        Vector512<float> t4 = Avx512F.UnpackLow(r4, r5), t5 = Avx512F.UnpackHigh(r4, r5), t6 = Avx512F.UnpackLow(r6, r7), t7 = Avx512F.UnpackHigh(r6, r7);
        Vector512<float> t8 = Avx512F.UnpackLow(r8, r9), t9 = Avx512F.UnpackHigh(r8, r9), t10 = Avx512F.UnpackLow(r10, r11), t11 = Avx512F.UnpackHigh(r10, r11);
        Vector512<float> t12 = Avx512F.UnpackLow(r12, r13), t13 = Avx512F.UnpackHigh(r12, r13), t14 = Avx512F.UnpackLow(r14, r15), t15 = Avx512F.UnpackHigh(r14, r15);

        // Quads: q holds four rows' element k of each block (k = 0, 1, 2, 3 for q0..q3 of rows 0-3, and so on).
        Vector512<float> q0 = Pairs(t0, t2, low: true), q1 = Pairs(t0, t2, low: false), q2 = Pairs(t1, t3, low: true), q3 = Pairs(t1, t3, low: false);
        Vector512<float> q4 = Pairs(t4, t6, low: true), q5 = Pairs(t4, t6, low: false), q6 = Pairs(t5, t7, low: true), q7 = Pairs(t5, t7, low: false);
        Vector512<float> q8 = Pairs(t8, t10, low: true), q9 = Pairs(t8, t10, low: false), q10 = Pairs(t9, t11, low: true), q11 = Pairs(t9, t11, low: false);
        Vector512<float> q12 = Pairs(t12, t14, low: true), q13 = Pairs(t12, t14, low: false), q14 = Pairs(t13, t15, low: true), q15 = Pairs(t13, t15, low: false);

        // Blocks: rows 0-7 (q0..q7) then 8-15 (q8..q15) gathered block by block; 0x88 takes blocks 0 and 2 of each
        // source, 0xDD blocks 1 and 3.
        Vector512<float> b0 = Avx512F.Shuffle4x128(q0, q4, 0x88), b1 = Avx512F.Shuffle4x128(q1, q5, 0x88), b2 = Avx512F.Shuffle4x128(q2, q6, 0x88), b3 = Avx512F.Shuffle4x128(q3, q7, 0x88);
        Vector512<float> b4 = Avx512F.Shuffle4x128(q0, q4, 0xDD), b5 = Avx512F.Shuffle4x128(q1, q5, 0xDD), b6 = Avx512F.Shuffle4x128(q2, q6, 0xDD), b7 = Avx512F.Shuffle4x128(q3, q7, 0xDD);
        Vector512<float> b8 = Avx512F.Shuffle4x128(q8, q12, 0x88), b9 = Avx512F.Shuffle4x128(q9, q13, 0x88), b10 = Avx512F.Shuffle4x128(q10, q14, 0x88), b11 = Avx512F.Shuffle4x128(q11, q15, 0x88);
        Vector512<float> b12 = Avx512F.Shuffle4x128(q8, q12, 0xDD), b13 = Avx512F.Shuffle4x128(q9, q13, 0xDD), b14 = Avx512F.Shuffle4x128(q10, q14, 0xDD), b15 = Avx512F.Shuffle4x128(q11, q15, 0xDD);

        Avx512F.Shuffle4x128(b0, b8, 0x88).Store(destination);
        Avx512F.Shuffle4x128(b1, b9, 0x88).Store(destination + 16);
        Avx512F.Shuffle4x128(b2, b10, 0x88).Store(destination + 32);
        Avx512F.Shuffle4x128(b3, b11, 0x88).Store(destination + 48);
        Avx512F.Shuffle4x128(b4, b12, 0x88).Store(destination + 64);
        Avx512F.Shuffle4x128(b5, b13, 0x88).Store(destination + 80);
        Avx512F.Shuffle4x128(b6, b14, 0x88).Store(destination + 96);
        Avx512F.Shuffle4x128(b7, b15, 0x88).Store(destination + 112);
        Avx512F.Shuffle4x128(b0, b8, 0xDD).Store(destination + 128);
        Avx512F.Shuffle4x128(b1, b9, 0xDD).Store(destination + 144);
        Avx512F.Shuffle4x128(b2, b10, 0xDD).Store(destination + 160);
        Avx512F.Shuffle4x128(b3, b11, 0xDD).Store(destination + 176);
        Avx512F.Shuffle4x128(b4, b12, 0xDD).Store(destination + 192);
        Avx512F.Shuffle4x128(b5, b13, 0xDD).Store(destination + 208);
        Avx512F.Shuffle4x128(b6, b14, 0xDD).Store(destination + 224);
        Avx512F.Shuffle4x128(b7, b15, 0xDD).Store(destination + 240);

        static Vector512<float> Pairs(Vector512<float> a, Vector512<float> b, bool low) =>
            (low ? Avx512F.UnpackLow(a.AsDouble(), b.AsDouble()) : Avx512F.UnpackHigh(a.AsDouble(), b.AsDouble())).AsSingle();
    }

    /// <summary>8 rows of 8 floats times <paramref name="factor"/>, stored transposed (column j at destination + 8 j).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Transpose8(float* source, long rowStride, Vector256<float> factor, float* destination)
    {
        Vector256<float> r0 = Vector256.Load(source) * factor, r1 = Vector256.Load(source + rowStride) * factor;
        Vector256<float> r2 = Vector256.Load(source + 2 * rowStride) * factor, r3 = Vector256.Load(source + 3 * rowStride) * factor;
        Vector256<float> r4 = Vector256.Load(source + 4 * rowStride) * factor, r5 = Vector256.Load(source + 5 * rowStride) * factor;
        Vector256<float> r6 = Vector256.Load(source + 6 * rowStride) * factor, r7 = Vector256.Load(source + 7 * rowStride) * factor;
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(destination);
        Avx.Permute2x128(u1, u5, 0x20).Store(destination + 8);
        Avx.Permute2x128(u2, u6, 0x20).Store(destination + 16);
        Avx.Permute2x128(u3, u7, 0x20).Store(destination + 24);
        Avx.Permute2x128(u0, u4, 0x31).Store(destination + 32);
        Avx.Permute2x128(u1, u5, 0x31).Store(destination + 40);
        Avx.Permute2x128(u2, u6, 0x31).Store(destination + 48);
        Avx.Permute2x128(u3, u7, 0x31).Store(destination + 56);
    }

    /// <summary>4 rows of 4 floats times <paramref name="factor"/>, stored transposed (column j at destination + 4 j).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Transpose4(float* source, long rowStride, Vector128<float> factor, float* destination)
    {
        Vector128<float> r0 = Vector128.Load(source) * factor, r1 = Vector128.Load(source + rowStride) * factor;
        Vector128<float> r2 = Vector128.Load(source + 2 * rowStride) * factor, r3 = Vector128.Load(source + 3 * rowStride) * factor;
        Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackLow(r2, r3), t2 = Sse.UnpackHigh(r0, r1), t3 = Sse.UnpackHigh(r2, r3);
        Sse.MoveLowToHigh(t0, t1).Store(destination);
        Sse.MoveHighToLow(t1, t0).Store(destination + 4);
        Sse.MoveLowToHigh(t2, t3).Store(destination + 8);
        Sse.MoveHighToLow(t3, t2).Store(destination + 12);
    }
}
