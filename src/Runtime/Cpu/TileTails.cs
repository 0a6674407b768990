using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// A tile's row-kernel tails when every row of the tile has the same few keys left (Longformer's global columns: each
/// row past the band's reach sees keys 0 and 1 besides its band). The row kernel took them one row at a time: a call per
/// row, whose few dot products, horizontal sums, 2^x and P·V form one dependent chain, so a row cost about as much as
/// fifty band keys (skipping the tails made lf-4k 0.92x as long on Vector512). Here the tile's rows go together: all their
/// dot products first, finished four at a time (<see cref="ISimdLanes{TVector}.SumEach"/>), then each row's softmax
/// step and P·V, rows independent of each other. The softmax step is the row kernel's (docs/design.md §7), so the row's
/// output and log-sum-exp are the same; declarations with score modifiers keep the row kernel, which applies them.
/// </summary>
internal static unsafe class TileTails
{
    /// <summary>The most keys a shared tail may have to go this way (a row's scores stay in one stack row).</summary>
    public const int MaxKeys = 16;

    /// <summary>The most rows a tile has.</summary>
    public const int MaxRows = TileValues.MaxRows;

    /// <summary>
    /// The keys of <paramref name="segments"/> written to <paramref name="positions"/>, or -1 when they are more than
    /// <see cref="MaxKeys"/>.
    /// </summary>
    public static int Flatten(ReadOnlySpan<KeySegment> segments, Span<int> positions)
    {
        int count = 0;
        foreach (KeySegment segment in segments)
        {
            if (count + segment.Count > positions.Length)
            {
                return -1;
            }

            for (int k = 0; k < segment.Count; k++)
            {
                positions[count++] = segment.Start + k * segment.Step;
            }
        }

        return count;
    }

    /// <summary>
    /// Adds keys <paramref name="positions"/> to the online-softmax state of <paramref name="rows"/> rows, as the row
    /// kernel would one row at a time. Keys and values are dense rows of <paramref name="headDim"/> floats.
    /// </summary>
    /// <param name="lanes">The kernel's vector width in floats: 16, 8 or 4.</param>
    /// <param name="rows">The tile's rows, at most <see cref="MaxRows"/>.</param>
    /// <param name="queryRows">Row t's query row (<paramref name="headDim"/> floats, unscaled) at address queryRows[t].</param>
    /// <param name="keys">The head's dense key rows: key p at p x headDim.</param>
    /// <param name="values">The head's dense value rows, as the keys.</param>
    /// <param name="headDim">Floats per row: a multiple of <paramref name="lanes"/>.</param>
    /// <param name="positions">The shared keys, at most <see cref="MaxKeys"/>.</param>
    /// <param name="scale">The softmax scale in base-2 units, as the row kernel takes it.</param>
    /// <param name="rowMax">Per row: the running max (updated).</param>
    /// <param name="rowSum">Per row: the running sum (updated; NaN when a score is -inf, as in the row kernel).</param>
    /// <param name="accumulators">Row t's <paramref name="headDim"/> accumulators at t x headDim.</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Add<TScores>(int lanes, int rows, ReadOnlySpan<nint> queryRows, float* keys, float* values, int headDim, ReadOnlySpan<int> positions, float scale,
        Span<float> rowMax, Span<float> rowSum, Span<float> accumulators)
        where TScores : IScoreModifier
    {
        switch (lanes)
        {
            case 16:
                Add<Lanes512, Vector512<float>, TScores>(rows, queryRows, keys, values, headDim, positions, scale, rowMax, rowSum, accumulators);
                break;
            case 8:
                Add<Lanes256, Vector256<float>, TScores>(rows, queryRows, keys, values, headDim, positions, scale, rowMax, rowSum, accumulators);
                break;
            default:
                Add<Lanes128, Vector128<float>, TScores>(rows, queryRows, keys, values, headDim, positions, scale, rowMax, rowSum, accumulators);
                break;
        }
    }

    [SkipLocalsInit]
    private static void Add<TLanes, TVector, TScores>(int rows, ReadOnlySpan<nint> queryRows, float* keys, float* values, int headDim, ReadOnlySpan<int> positions, float scale,
        Span<float> rowMax, Span<float> rowSum, Span<float> accumulators)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : IScoreModifier
    {
        int keyCount = positions.Length, pairs = rows * keyCount;
        float* scores = stackalloc float[MaxRows * MaxKeys];
        float** pairQuery = stackalloc float*[MaxRows * MaxKeys];
        float** pairKey = stackalloc float*[MaxRows * MaxKeys];
        for (int t = 0, pair = 0; t < rows; t++)
        {
            for (int k = 0; k < keyCount; k++, pair++)
            {
                pairQuery[pair] = (float*)queryRows[t];
                pairKey[pair] = keys + (nint)positions[k] * headDim;
            }
        }

        // Every (row, key) dot product, four finished together: the rows' chains are independent, so they overlap.
        for (int first = 0; first < pairs; first += 4)
        {
            int last = pairs - 1;
            TVector dot0 = Dot<TLanes, TVector>(pairQuery[first], pairKey[first], headDim);
            TVector dot1 = Dot<TLanes, TVector>(pairQuery[Math.Min(first + 1, last)], pairKey[Math.Min(first + 1, last)], headDim);
            TVector dot2 = Dot<TLanes, TVector>(pairQuery[Math.Min(first + 2, last)], pairKey[Math.Min(first + 2, last)], headDim);
            TVector dot3 = Dot<TLanes, TVector>(pairQuery[Math.Min(first + 3, last)], pairKey[Math.Min(first + 3, last)], headDim);
            Vector128<float> sums = TLanes.SumEach(dot0, dot1, dot2, dot3) * scale;
            if (first + 4 <= pairs)
            {
                sums.Store(scores + first);
            }
            else
            {
                for (int i = 0; first + i < pairs; i++)
                {
                    scores[first + i] = sums.GetElement(i);
                }
            }
        }

        // Each row's online-softmax step over its scores: the row kernel's step for one tile of keys.
        float* corrections = stackalloc float[MaxRows];
        for (int t = 0; t < rows; t++)
        {
            float* rowScores = scores + t * keyCount;
            float tileMax = float.NegativeInfinity;
            bool poisoned = false;
            for (int k = 0; k < keyCount; k++)
            {
                tileMax = MathF.Max(tileMax, rowScores[k]);
                poisoned |= VectorMath.Poisons<TScores>(rowScores[k]);
            }

            float correction = 1f;
            if (tileMax > rowMax[t])
            {
                correction = VectorMath.Exp2(rowMax[t] - tileMax);
                rowSum[t] *= correction;
                rowMax[t] = tileMax;
            }

            float max = rowMax[t], sum = 0f;
            for (int k = 0; k < keyCount; k++)
            {
                rowScores[k] = VectorMath.Exp2(rowScores[k] - max);
                sum += rowScores[k];
            }

            rowSum[t] = poisoned ? float.NaN : rowSum[t] + sum;
            corrections[t] = correction;
        }

        // The rows' P·V over the shared keys, the accumulators rescaled on the way: by pointers, two keys a step. Written
        // with spans and a loop over the keys inside each vector it was most of this method's time (lf-4k took 0.97x as
        // long without it).
        float** valueRows = stackalloc float*[MaxKeys];
        for (int k = 0; k < keyCount; k++)
        {
            valueRows[k] = values + (nint)positions[k] * headDim;
        }

        fixed (float* accumulatorBase = accumulators)
        {
            for (int t = 0; t < rows; t++)
            {
                float* accumulator = accumulatorBase + t * headDim, rowScores = scores + t * keyCount;
                TVector scaleBy = TLanes.Create(corrections[t]);
                int k = 0;
                for (; k + 2 <= keyCount; k += 2)
                {
                    TVector p0 = TLanes.Create(rowScores[k]), p1 = TLanes.Create(rowScores[k + 1]);
                    float* v0 = valueRows[k], v1 = valueRows[k + 1];
                    for (int d = 0; d < headDim; d += TLanes.Count)
                    {
                        // The first pair of keys takes the rescale with it; later pairs add to what is stored.
                        TVector output = k == 0 ? TLanes.Multiply(TLanes.Load(accumulator + d), scaleBy) : TLanes.Load(accumulator + d);
                        TLanes.Store(TLanes.MultiplyAdd(p1, TLanes.Load(v1 + d), TLanes.MultiplyAdd(p0, TLanes.Load(v0 + d), output)), accumulator + d);
                    }
                }

                if (k < keyCount)
                {
                    TVector p0 = TLanes.Create(rowScores[k]);
                    float* v0 = valueRows[k];
                    for (int d = 0; d < headDim; d += TLanes.Count)
                    {
                        TVector output = k == 0 ? TLanes.Multiply(TLanes.Load(accumulator + d), scaleBy) : TLanes.Load(accumulator + d);
                        TLanes.Store(TLanes.MultiplyAdd(p0, TLanes.Load(v0 + d), output), accumulator + d);
                    }
                }
            }
        }
    }

    /// <summary>The lane-wise products of a query row and a key row, summed over HeadDim's vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Dot<TLanes, TVector>(float* query, float* key, int headDim)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        TVector dot = TLanes.Multiply(TLanes.Load(query), TLanes.Load(key));
        for (int d = TLanes.Count; d < headDim; d += TLanes.Count)
        {
            dot = TLanes.MultiplyAdd(TLanes.Load(query + d), TLanes.Load(key + d), dot);
        }

        return dot;
    }
}
