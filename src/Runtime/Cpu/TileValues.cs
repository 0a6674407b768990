using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// A boundary tile's P·V for one row of the generated tile kernels: the keys the row sees outside the tile's common range
/// (the keys every row sees, which the kernel adds blocked over rows). A window's boundary rows have a few such keys; a
/// neighbourhood's gathered stream, whose rows move by a key line, has dozens per row. Written in the kernel, this loop's
/// accumulators lived on the stack among the kernel's many locals (a load, an FMA and a store per vector and key: about a
/// fifth of the HeadDim 32 neighbourhood kernel's time); here, in a small method of its own, they stay in registers.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TileValues
{
    /// <summary>
    /// output += Σ p_k · value_k over the tile keys k in [<paramref name="from"/>, <paramref name="to"/>] outside
    /// [<paramref name="commonFrom"/>, <paramref name="commonTo"/>] (an empty common range has commonTo = commonFrom - 1).
    /// </summary>
    /// <param name="lanes">The kernel's vector width in floats: 16, 8 or 4.</param>
    /// <param name="rowOutput">The row's <paramref name="headDim"/> accumulators.</param>
    /// <param name="rowProbabilities">The row's probabilities for the tile's keys, key 0 first.</param>
    /// <param name="tileValues">The value row of the tile's key 0; key k's is <paramref name="valueStride"/> x k floats on.</param>
    /// <param name="valueStride">Floats between consecutive keys' value rows.</param>
    /// <param name="from">The row's first key in the tile (tile-relative).</param>
    /// <param name="to">The row's last key in the tile.</param>
    /// <param name="commonFrom">The first key every row of the tile sees.</param>
    /// <param name="commonTo">The last key every row of the tile sees.</param>
    /// <param name="headDim">Floats per value row and per output row: a multiple of <paramref name="lanes"/>.</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void AddKeysOutsideCommon(int lanes, ref float rowOutput, ref float rowProbabilities, ref float tileValues, nint valueStride, nint from, nint to, nint commonFrom, nint commonTo, int headDim)
    {
        // Before the common range, then after it.
        nint beforeTo = Math.Min(to, commonFrom - 1), afterFrom = Math.Max(from, commonTo + 1);
        switch (lanes)
        {
            case 16:
                Add<Lanes512, Vector512<float>>(ref rowOutput, ref rowProbabilities, ref tileValues, valueStride, from, beforeTo, afterFrom, to, headDim);
                break;
            case 8:
                Add<Lanes256, Vector256<float>>(ref rowOutput, ref rowProbabilities, ref tileValues, valueStride, from, beforeTo, afterFrom, to, headDim);
                break;
            default:
                Add<Lanes128, Vector128<float>>(ref rowOutput, ref rowProbabilities, ref tileValues, valueStride, from, beforeTo, afterFrom, to, headDim);
                break;
        }
    }

    /// <summary>Keys [firstFrom, firstTo] and [secondFrom, secondTo] (either may be empty), four vectors of columns at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add<TLanes, TVector>(ref float rowOutput, ref float rowProbabilities, ref float tileValues, nint valueStride, nint firstFrom, nint firstTo, nint secondFrom, nint secondTo, int headDim)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        int width = TLanes.Count, column = 0;
        for (; column + 4 * width <= headDim; column += 4 * width)
        {
            TVector a = TLanes.LoadUnsafe(ref rowOutput, column), b = TLanes.LoadUnsafe(ref rowOutput, column + width);
            TVector c = TLanes.LoadUnsafe(ref rowOutput, column + 2 * width), d = TLanes.LoadUnsafe(ref rowOutput, column + 3 * width);
            for (int range = 0; range < 2; range++)
            {
                nint from = range == 0 ? firstFrom : secondFrom, to = range == 0 ? firstTo : secondTo;
                if (from > to)
                {
                    continue;
                }

                ref float valueRow = ref Unsafe.Add(ref tileValues, from * valueStride + column);
                for (nint k = from; k <= to; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
                {
                    TVector p = TLanes.Create(Unsafe.Add(ref rowProbabilities, k));
                    a = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 0), a);
                    b = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, width), b);
                    c = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 2 * width), c);
                    d = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 3 * width), d);
                }
            }

            TLanes.StoreUnsafe(a, ref rowOutput, column);
            TLanes.StoreUnsafe(b, ref rowOutput, column + width);
            TLanes.StoreUnsafe(c, ref rowOutput, column + 2 * width);
            TLanes.StoreUnsafe(d, ref rowOutput, column + 3 * width);
        }

        for (; column < headDim; column += width)
        {
            TVector a = TLanes.LoadUnsafe(ref rowOutput, column);
            for (int range = 0; range < 2; range++)
            {
                nint from = range == 0 ? firstFrom : secondFrom, to = range == 0 ? firstTo : secondTo;
                if (from > to)
                {
                    continue;
                }

                ref float valueRow = ref Unsafe.Add(ref tileValues, from * valueStride + column);
                for (nint k = from; k <= to; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
                {
                    a = TLanes.MultiplyAdd(TLanes.Create(Unsafe.Add(ref rowProbabilities, k)), TLanes.LoadUnsafe(ref valueRow, 0), a);
                }
            }

            TLanes.StoreUnsafe(a, ref rowOutput, column);
        }
    }
}
