using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// A boundary tile's P·V outside the tile's common range (the keys every row sees, which the generated kernel adds
/// blocked over rows), for the generated tile kernels. Each row's keys in the tile are one run, and in a band the runs'
/// ends move forward with the row, so a key is seen by a contiguous range of rows that changes only where some row's run
/// starts or ends. Between those points the keys go through P·V blocked over their rows: each value vector loaded once
/// for all of them. A window's boundary rows have a few such keys each; a neighbourhood's gathered stream, whose rows move
/// by a whole key line, has dozens, in steps of a line. Written in the kernel, row by row, this loop kept its
/// accumulators on the stack among the kernel's many locals (a load, an FMA and a store per vector and key: about a fifth
/// of the HeadDim 32 neighbourhood kernel's time). The pieces are for Vector512's 64-key tiles; the narrower kernels'
/// 16- and 8-key tiles go row by row, with the accumulators in registers all the same.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TileValues
{
    /// <summary>The most rows a tile has (every generated kernel's tiles have 6).</summary>
    public const int MaxRows = 6;

    /// <summary>
    /// output_t += Σ p_tk · value_k for each row t of a band tile over the tile's keys k that row sees outside
    /// [<paramref name="commonFrom"/>, <paramref name="commonTo"/>] (tile-relative; an empty common range has
    /// commonTo = commonFrom - 1). Row t sits at stream coordinate firstQuery + t x queryStep and sees stream keys
    /// [q_t - left, q_t + right] within [firstKey, lastKey], as in the kernel.
    /// </summary>
    /// <param name="lanes">The kernel's vector width in floats: 16, 8 or 4.</param>
    /// <param name="rows">The tile's rows, at most <see cref="MaxRows"/>.</param>
    /// <param name="accumulators">Row t's <paramref name="headDim"/> accumulators at t x headDim.</param>
    /// <param name="probabilities">Row t's probabilities for the tile's keys at t x keyTile.</param>
    /// <param name="keyTile">Keys per tile.</param>
    /// <param name="tileValues">The value row of the tile's key 0; key k's is <paramref name="valueStride"/> x k floats on.</param>
    /// <param name="valueStride">Floats between consecutive keys' value rows.</param>
    /// <param name="headDim">Floats per value and output row: a multiple of <paramref name="lanes"/>.</param>
    /// <param name="keyStart">The tile's first key (stream coordinate).</param>
    /// <param name="firstKey">The first key of the stream the tile may see.</param>
    /// <param name="lastKey">The last key of the stream the tile may see.</param>
    /// <param name="firstQuery">Row 0's stream coordinate.</param>
    /// <param name="queryStep">How far each row's coordinate moves (1, or a neighbourhood's key-line count).</param>
    /// <param name="left">Keys a row sees before its coordinate.</param>
    /// <param name="right">Keys a row sees after its coordinate.</param>
    /// <param name="commonFrom">The first key every row of the tile sees (tile-relative).</param>
    /// <param name="commonTo">The last key every row of the tile sees.</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void AddBoundaryKeys(int lanes, int rows, ref float accumulators, ref float probabilities, int keyTile, ref float tileValues, nint valueStride, int headDim,
        long keyStart, long firstKey, long lastKey, long firstQuery, long queryStep, long left, long right, nint commonFrom, nint commonTo)
    {
        switch (lanes)
        {
            case 16:
                Add<Lanes512, Vector512<float>>(rows, ref accumulators, ref probabilities, keyTile, ref tileValues, valueStride, headDim, keyStart, firstKey, lastKey, firstQuery, queryStep, left, right, commonFrom, commonTo);
                break;
            case 8:
                Add<Lanes256, Vector256<float>>(rows, ref accumulators, ref probabilities, keyTile, ref tileValues, valueStride, headDim, keyStart, firstKey, lastKey, firstQuery, queryStep, left, right, commonFrom, commonTo);
                break;
            default:
                Add<Lanes128, Vector128<float>>(rows, ref accumulators, ref probabilities, keyTile, ref tileValues, valueStride, headDim, keyStart, firstKey, lastKey, firstQuery, queryStep, left, right, commonFrom, commonTo);
                break;
        }
    }

    /// <summary>
    /// Whether keys [<paramref name="from"/>, <paramref name="to"/>] (tile-relative; empty when <paramref name="to"/> &lt;
    /// <paramref name="from"/>) have only finite values. A window's boundary tile adds such keys through the kernel's
    /// blocked P·V over all its rows, where the rows that do not see a key multiply its value by a probability of 0: exact
    /// for a finite value, NaN for an infinite or NaN one, which must not reach a row that does not see it.
    /// </summary>
    /// <param name="lanes">The kernel's vector width in floats: 16, 8 or 4.</param>
    /// <param name="tileValues">The value row of the tile's key 0; key k's is <paramref name="valueStride"/> x k floats on.</param>
    /// <param name="valueStride">Floats between consecutive keys' value rows.</param>
    /// <param name="headDim">Floats per value row: a multiple of <paramref name="lanes"/>.</param>
    /// <param name="from">The first key to look at.</param>
    /// <param name="to">The last key to look at.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool ValuesFinite(int lanes, ref float tileValues, nint valueStride, int headDim, nint from, nint to) => lanes switch
    {
        16 => ValuesFinite<Lanes512, Vector512<float>>(ref tileValues, valueStride, headDim, from, to),
        8 => ValuesFinite<Lanes256, Vector256<float>>(ref tileValues, valueStride, headDim, from, to),
        _ => ValuesFinite<Lanes128, Vector128<float>>(ref tileValues, valueStride, headDim, from, to),
    };

    /// <summary><see cref="ValuesFinite(int, ref float, nint, int, nint, nint)"/> at one width: x x 0 is 0 for a finite x and NaN otherwise.</summary>
    private static bool ValuesFinite<TLanes, TVector>(ref float tileValues, nint valueStride, int headDim, nint from, nint to)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        TVector zeros = TLanes.Zero, probe = TLanes.Zero;
        ref float valueRow = ref Unsafe.Add(ref tileValues, from * valueStride);
        for (nint k = from; k <= to; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
        {
            for (int column = 0; column < headDim; column += TLanes.Count)
            {
                probe = TLanes.MultiplyAdd(TLanes.LoadUnsafe(ref valueRow, column), zeros, probe);
            }
        }

        return TLanes.SumAcross(probe) == 0f;
    }

    /// <summary><see cref="AddBoundaryKeys"/> at one width (a call of its own: methods with stackalloc do not inline).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add<TLanes, TVector>(int rows, ref float accumulators, ref float probabilities, int keyTile, ref float tileValues, nint valueStride, int headDim,
        long keyStart, long firstKey, long lastKey, long firstQuery, long queryStep, long left, long right, nint commonFrom, nint commonTo)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        Span<nint> from = stackalloc nint[MaxRows], to = stackalloc nint[MaxRows];
        rows = Math.Min(rows, MaxRows);
        for (int t = 0; t < rows; t++)
        {
            long query = firstQuery + t * queryStep;
            from[t] = (nint)(Math.Max(keyStart, Math.Max(firstKey, query - left)) - keyStart);
            to[t] = (nint)(Math.Min(keyStart + keyTile - 1, Math.Min(lastKey, query + right)) - keyStart);
        }

        if (TLanes.Count < 16)
        {
            // 16- and 8-key tiles: in pieces the 4K windows ran 1.02-1.03x as long at Vector256 and Vector128 (the
            // neighbourhoods within 0.02 of their ratios either way), so each row's keys go on their own.
            for (int t = 0; t < rows; t++)
            {
                if (from[t] < commonFrom || to[t] > commonTo)
                {
                    // Before the common range, then after it.
                    AddRow<TLanes, TVector>(ref Unsafe.Add(ref accumulators, t * headDim), ref Unsafe.Add(ref probabilities, t * keyTile), ref tileValues, valueStride,
                        from[t], Math.Min(to[t], commonFrom - 1), Math.Max(from[t], commonTo + 1), to[t], headDim);
                }
            }

            return;
        }

        // Where the set of rows seeing a key can change: each row's run's ends, and the common range's.
        Span<nint> cuts = stackalloc nint[2 * MaxRows + 2];
        int cutCount = 0;
        for (int t = 0; t < rows; t++)
        {
            cuts[cutCount++] = from[t];
            cuts[cutCount++] = to[t] + 1;
        }

        cuts[cutCount++] = commonFrom;
        cuts[cutCount++] = commonTo + 1;
        // Insertion sort: at most 14 cuts, nearly in order already (IntroSort's setup cost as much as this method's own work).
        for (int i = 1; i < cutCount; i++)
        {
            nint cut = cuts[i];
            int j = i - 1;
            for (; j >= 0 && cuts[j] > cut; j--)
            {
                cuts[j + 1] = cuts[j];
            }

            cuts[j + 1] = cut;
        }

        for (int i = 0; i + 1 < cutCount; i++)
        {
            nint first = cuts[i], last = cuts[i + 1] - 1;
            if (first > last || (first >= commonFrom && last <= commonTo))
            {
                continue;
            }

            // The rows seeing key `first` see the whole piece (no run starts or ends inside it), and form one range
            // (runs' starts and ends both move forward with the row).
            int lowest = -1, highest = -1;
            for (int t = 0; t < rows; t++)
            {
                if (from[t] <= first && first <= to[t])
                {
                    lowest = lowest < 0 ? t : lowest;
                    highest = t;
                }
            }

            if (lowest < 0)
            {
                continue;
            }

            ref float output = ref Unsafe.Add(ref accumulators, lowest * headDim);
            ref float rowProbabilities = ref Unsafe.Add(ref probabilities, lowest * keyTile);
            AddPiece<TLanes, TVector>(highest - lowest + 1, ref output, ref rowProbabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddPiece<TLanes, TVector>(int rows, ref float output, ref float probabilities, int keyTile, ref float tileValues, nint valueStride, int headDim, nint first, nint last)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        switch (rows)
        {
            case 1:
                AddRows<TLanes, TVector, One>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
            case 2:
                AddRows<TLanes, TVector, Two>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
            case 3:
                AddRows<TLanes, TVector, Three>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
            case 4:
                AddRows<TLanes, TVector, Four>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
            case 5:
                AddRows<TLanes, TVector, Five>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
            default:
                AddRows<TLanes, TVector, Six>(ref output, ref probabilities, keyTile, ref tileValues, valueStride, headDim, first, last);
                break;
        }
    }

    /// <summary>
    /// Keys [first, last] into TRows consecutive rows, blocked: two vectors of columns at a time (12 accumulators at six
    /// rows; 15 registers with the two value vectors and the probability), each value vector loaded once for every row,
    /// then one vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void AddRows<TLanes, TVector, TRows>(ref float output, ref float probabilities, int keyTile, ref float tileValues, nint valueStride, int headDim, nint first, nint last)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TRows : struct, IRowCount
    {
        int width = TLanes.Count, rows = TRows.Count, column = 0;
        ref float p0 = ref probabilities, p1 = ref Unsafe.Add(ref p0, keyTile), p2 = ref Unsafe.Add(ref p1, keyTile);
        ref float p3 = ref Unsafe.Add(ref p2, keyTile), p4 = ref Unsafe.Add(ref p3, keyTile), p5 = ref Unsafe.Add(ref p4, keyTile);
        for (; column + 2 * width <= headDim; column += 2 * width)
        {
            ref float o0 = ref Unsafe.Add(ref output, column), o1 = ref Unsafe.Add(ref o0, headDim), o2 = ref Unsafe.Add(ref o1, headDim);
            ref float o3 = ref Unsafe.Add(ref o2, headDim), o4 = ref Unsafe.Add(ref o3, headDim), o5 = ref Unsafe.Add(ref o4, headDim);
            TVector a0 = TLanes.LoadUnsafe(ref o0, 0), b0 = TLanes.LoadUnsafe(ref o0, width);
            TVector a1 = rows > 1 ? TLanes.LoadUnsafe(ref o1, 0) : default, b1 = rows > 1 ? TLanes.LoadUnsafe(ref o1, width) : default;
            TVector a2 = rows > 2 ? TLanes.LoadUnsafe(ref o2, 0) : default, b2 = rows > 2 ? TLanes.LoadUnsafe(ref o2, width) : default;
            TVector a3 = rows > 3 ? TLanes.LoadUnsafe(ref o3, 0) : default, b3 = rows > 3 ? TLanes.LoadUnsafe(ref o3, width) : default;
            TVector a4 = rows > 4 ? TLanes.LoadUnsafe(ref o4, 0) : default, b4 = rows > 4 ? TLanes.LoadUnsafe(ref o4, width) : default;
            TVector a5 = rows > 5 ? TLanes.LoadUnsafe(ref o5, 0) : default, b5 = rows > 5 ? TLanes.LoadUnsafe(ref o5, width) : default;
            ref float valueRow = ref Unsafe.Add(ref tileValues, first * valueStride + column);
            for (nint k = first; k <= last; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
            {
                TVector left = TLanes.LoadUnsafe(ref valueRow, 0), right = TLanes.LoadUnsafe(ref valueRow, width);
                TVector p = TLanes.Create(Unsafe.Add(ref p0, k));
                a0 = TLanes.MultiplyAdd(p, left, a0);
                b0 = TLanes.MultiplyAdd(p, right, b0);
                if (rows > 1)
                {
                    p = TLanes.Create(Unsafe.Add(ref p1, k));
                    a1 = TLanes.MultiplyAdd(p, left, a1);
                    b1 = TLanes.MultiplyAdd(p, right, b1);
                }

                if (rows > 2)
                {
                    p = TLanes.Create(Unsafe.Add(ref p2, k));
                    a2 = TLanes.MultiplyAdd(p, left, a2);
                    b2 = TLanes.MultiplyAdd(p, right, b2);
                }

                if (rows > 3)
                {
                    p = TLanes.Create(Unsafe.Add(ref p3, k));
                    a3 = TLanes.MultiplyAdd(p, left, a3);
                    b3 = TLanes.MultiplyAdd(p, right, b3);
                }

                if (rows > 4)
                {
                    p = TLanes.Create(Unsafe.Add(ref p4, k));
                    a4 = TLanes.MultiplyAdd(p, left, a4);
                    b4 = TLanes.MultiplyAdd(p, right, b4);
                }

                if (rows > 5)
                {
                    p = TLanes.Create(Unsafe.Add(ref p5, k));
                    a5 = TLanes.MultiplyAdd(p, left, a5);
                    b5 = TLanes.MultiplyAdd(p, right, b5);
                }
            }

            TLanes.StoreUnsafe(a0, ref o0, 0);
            TLanes.StoreUnsafe(b0, ref o0, width);
            if (rows > 1)
            {
                TLanes.StoreUnsafe(a1, ref o1, 0);
                TLanes.StoreUnsafe(b1, ref o1, width);
            }

            if (rows > 2)
            {
                TLanes.StoreUnsafe(a2, ref o2, 0);
                TLanes.StoreUnsafe(b2, ref o2, width);
            }

            if (rows > 3)
            {
                TLanes.StoreUnsafe(a3, ref o3, 0);
                TLanes.StoreUnsafe(b3, ref o3, width);
            }

            if (rows > 4)
            {
                TLanes.StoreUnsafe(a4, ref o4, 0);
                TLanes.StoreUnsafe(b4, ref o4, width);
            }

            if (rows > 5)
            {
                TLanes.StoreUnsafe(a5, ref o5, 0);
                TLanes.StoreUnsafe(b5, ref o5, width);
            }
        }

        // An odd vector of columns (HeadDim 48 on Vector512, for one), row by row.
        for (; column < headDim; column += width)
        {
            for (int t = 0; t < rows; t++)
            {
                ref float row = ref Unsafe.Add(ref output, t * headDim + column);
                ref float rowProbabilities = ref Unsafe.Add(ref probabilities, t * keyTile);
                TVector a = TLanes.LoadUnsafe(ref row, 0);
                ref float valueRow = ref Unsafe.Add(ref tileValues, first * valueStride + column);
                for (nint k = first; k <= last; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
                {
                    a = TLanes.MultiplyAdd(TLanes.Create(Unsafe.Add(ref rowProbabilities, k)), TLanes.LoadUnsafe(ref valueRow, 0), a);
                }

                TLanes.StoreUnsafe(a, ref row, 0);
            }
        }
    }

    /// <summary>
    /// Keys [firstFrom, firstTo] and [secondFrom, secondTo] (either may be empty), four vectors of columns at a time. Keys
    /// go in pairs into two sets of accumulators, added at the end: with one set, each FMA waited for the last one on its
    /// accumulator (four chains at the FMA's latency use half of the two FMA pipes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<TLanes, TVector>(ref float rowOutput, ref float rowProbabilities, ref float tileValues, nint valueStride, nint firstFrom, nint firstTo, nint secondFrom, nint secondTo, int headDim)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        int width = TLanes.Count, column = 0;
        for (; column + 4 * width <= headDim; column += 4 * width)
        {
            TVector a = TLanes.LoadUnsafe(ref rowOutput, column), b = TLanes.LoadUnsafe(ref rowOutput, column + width);
            TVector c = TLanes.LoadUnsafe(ref rowOutput, column + 2 * width), d = TLanes.LoadUnsafe(ref rowOutput, column + 3 * width);
            TVector a2 = TLanes.Zero, b2 = TLanes.Zero, c2 = TLanes.Zero, d2 = TLanes.Zero;
            for (int range = 0; range < 2; range++)
            {
                nint k = range == 0 ? firstFrom : secondFrom, to = range == 0 ? firstTo : secondTo;
                ref float valueRow = ref Unsafe.Add(ref tileValues, k * valueStride + column);
                for (; k < to; k += 2, valueRow = ref Unsafe.Add(ref valueRow, 2 * valueStride))
                {
                    TVector p = TLanes.Create(Unsafe.Add(ref rowProbabilities, k)), q = TLanes.Create(Unsafe.Add(ref rowProbabilities, k + 1));
                    a = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 0), a);
                    b = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, width), b);
                    c = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 2 * width), c);
                    d = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 3 * width), d);
                    a2 = TLanes.MultiplyAdd(q, TLanes.LoadUnsafe(ref valueRow, valueStride), a2);
                    b2 = TLanes.MultiplyAdd(q, TLanes.LoadUnsafe(ref valueRow, valueStride + width), b2);
                    c2 = TLanes.MultiplyAdd(q, TLanes.LoadUnsafe(ref valueRow, valueStride + 2 * width), c2);
                    d2 = TLanes.MultiplyAdd(q, TLanes.LoadUnsafe(ref valueRow, valueStride + 3 * width), d2);
                }

                if (k == to)
                {
                    TVector p = TLanes.Create(Unsafe.Add(ref rowProbabilities, k));
                    a = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 0), a);
                    b = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, width), b);
                    c = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 2 * width), c);
                    d = TLanes.MultiplyAdd(p, TLanes.LoadUnsafe(ref valueRow, 3 * width), d);
                }
            }

            TLanes.StoreUnsafe(TLanes.Add(a, a2), ref rowOutput, column);
            TLanes.StoreUnsafe(TLanes.Add(b, b2), ref rowOutput, column + width);
            TLanes.StoreUnsafe(TLanes.Add(c, c2), ref rowOutput, column + 2 * width);
            TLanes.StoreUnsafe(TLanes.Add(d, d2), ref rowOutput, column + 3 * width);
        }

        for (; column < headDim; column += width)
        {
            TVector a = TLanes.LoadUnsafe(ref rowOutput, column);
            for (int range = 0; range < 2; range++)
            {
                nint from = range == 0 ? firstFrom : secondFrom, to = range == 0 ? firstTo : secondTo;
                ref float valueRow = ref Unsafe.Add(ref tileValues, from * valueStride + column);
                for (nint k = from; k <= to; k++, valueRow = ref Unsafe.Add(ref valueRow, valueStride))
                {
                    a = TLanes.MultiplyAdd(TLanes.Create(Unsafe.Add(ref rowProbabilities, k)), TLanes.LoadUnsafe(ref valueRow, 0), a);
                }
            }

            TLanes.StoreUnsafe(a, ref rowOutput, column);
        }
    }

    /// <summary>A row count as a type, so the JIT compiles <see cref="AddRows"/> once per count with the unused rows removed.</summary>
    private interface IRowCount
    {
        static abstract int Count { get; }
    }

    private readonly struct One : IRowCount
    {
        public static int Count => 1;
    }

    private readonly struct Two : IRowCount
    {
        public static int Count => 2;
    }

    private readonly struct Three : IRowCount
    {
        public static int Count => 3;
    }

    private readonly struct Four : IRowCount
    {
        public static int Count => 4;
    }

    private readonly struct Five : IRowCount
    {
        public static int Count => 5;
    }

    private readonly struct Six : IRowCount
    {
        public static int Count => 6;
    }
}
