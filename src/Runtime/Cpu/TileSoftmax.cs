using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// One tile row's online-softmax step (base 2) for the generated Vector512 and Vector128 tile kernels: the row's new max over its
/// masked scores of one key tile (stored at <c>rowScores</c>, <c>panels</c> vectors), the rescale of what the row
/// accumulated, and its probabilities 2^(score - max) stored in place of the scores. Written out row by row in the
/// kernel, the 6 rows x 4 panels of 2^x and max exhausted the JIT's inlining budget: a third of them, and the poison
/// tests and min/max after them, stayed real calls in the key-tile loop (seen in the JIT's listing). Through this one
/// method, inlined six times, every call inlines; measured 0.95-0.96x the time on Vector512, 0.94-0.97x on Vector128
/// (0.97-0.995x with 16 registers). With AVX2's 16 registers that was not enough: the Vector256 kernels ran 1.01-1.04x
/// slower through either inlined form, and in both narrow kernels the JIT kept the 2^x's intermediates on the stack. Their
/// full tiles therefore take all rows' steps through one call that is not inlined (<c>UpdateFullTile</c>), and runs of full
/// tiles, in blocks of four, one step per row for the whole block (<c>UpdateFullBlock</c>, from the generated
/// <c>AccumulateFullBlocks</c>); boundary tiles keep the per-row forms.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TileSoftmax
{
    /// <summary>
    /// How far (base 2) a row's scores may rise above the max its probabilities are taken against before that max moves:
    /// FlashAttention-4's conditional rescaling. Within it a step keeps the row's max, so it needs neither the max across
    /// lanes nor a rescale, only a compare of its lanes with max + 8; probabilities are then at most 2^8, whose sums float
    /// holds with room to spare, and the output is the same (sum and output share the reference max, and the
    /// log-sum-exp is max + log2(sum) for any such max). A row with no max yet (-inf) takes its first finite or +inf
    /// score this way too (-inf + 8 is -inf); NaN compares false and keeps the old max, and reaches the probabilities and the
    /// row's sum either way.
    /// </summary>
    public const float RescaleSlack = 8f;

    /// <summary>The step over Vector512 panels; returns the rescale factor of the row's earlier accumulation (1 when the max held).</summary>
    /// <remarks>The same arithmetic, in the same order, as the narrower kernels' written-out rows (the generator's EmitRowSoftmaxUpdate).</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float UpdateRow(ref float rowScores, int panels, ref float runningMax, ref Vector512<float> rowSum)
    {
        Vector512<float> max = Vector512.LoadUnsafe(ref rowScores);
        for (int p = 1; p < panels; p++)
        {
            max = VectorMath.ScoreMax(max, Vector512.LoadUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count)));
        }

        float newMax = runningMax;
        if (Vector512.GreaterThanAny(max, Vector512.Create(newMax + RescaleSlack)))
        {
            newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
        }

        if (newMax == float.NegativeInfinity)
        {
            // Nothing visible to this row yet: no probabilities, nothing to rescale; but a NaN score the hardware's max
            // passed over beside -inf lanes still makes the row NaN.
            for (int p = 0; p < panels; p++)
            {
                if (VectorMath.AnyNaN(Vector512.LoadUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count))))
                {
                    rowSum = Vector512.Create(float.NaN);
                }

                Vector512<float>.Zero.StoreUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count));
            }

            return 1f;
        }

        // Most tiles leave the max where it was: then nothing accumulated needs rescaling.
        float rescale = newMax > runningMax ? VectorMath.Exp2(runningMax - newMax) : 1f;
        Vector512<float> maxVector = Vector512.Create(newMax), sum = Vector512<float>.Zero;
        for (int p = 0; p < panels; p++)
        {
            Vector512<float> probability = VectorMath.Exp2(Vector512.LoadUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count)) - maxVector);
            probability.StoreUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count));
            sum += probability;
        }

        rowSum = Vector512.FusedMultiplyAdd(rowSum, Vector512.Create(rescale), sum);
        runningMax = newMax;
        return rescale;
    }

    /// <summary>
    /// The steps of all <paramref name="rows"/> rows of a Vector256 kernel's full key tile (every row sees all 16 keys; no
    /// ALiBi or user code), their scores at <paramref name="probabilities"/> (16 per row), their running sums in
    /// <paramref name="state"/>, where each row's rescale factor is left for the P·V passes. Not inlined, on purpose: in
    /// the kernel, among its many long-lived locals, the JIT kept the 2^x's intermediates on the stack (a store and a
    /// reload in the middle of each polynomial, a third of its instructions); in a method of its own the step runs in
    /// registers. AMD Zen 1: 0.97x the time of the standard 4K cases (with the 2^x of <see cref="VectorMath"/> that
    /// rounds by adding a shift, 0.95x; 0.92x at swa-16k-w4096). The Vector128 overload: 0.75-0.80x.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void UpdateFullTile<TScores>(ref float probabilities, int rows, ref float rowMax, ref TileRowState<Vector256<float>> state)
        where TScores : IScoreModifier
    {
        for (int t = 0; t < rows; t++)
        {
            ref float rowScores = ref Unsafe.Add(ref probabilities, t * 2 * Vector256<float>.Count);
            ref Vector256<float> rowSum = ref Unsafe.Add(ref state.Sum0, t);
            Vector256<float> score0 = Vector256.LoadUnsafe(ref rowScores), score1 = Vector256.LoadUnsafe(ref rowScores, (nuint)Vector256<float>.Count);
            if ((VectorMath.Poisons<TScores>(score0) | VectorMath.Poisons<TScores>(score1)).AsInt32() != Vector256<int>.Zero)
            {
                rowSum = Vector256.Create(float.NaN);
            }

            Unsafe.Add(ref state.Rescale0, t) = UpdateRow(score0, score1, ref rowScores, ref Unsafe.Add(ref rowMax, t), ref rowSum);
        }
    }

    /// <summary>
    /// The same for a Vector128 kernel's full key tile (8 keys, two vectors per row): there the inlined step's 2^x had
    /// spilled too, and this took the standard 4K cases in 0.75-0.80x the time (AMD Zen 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void UpdateFullTile<TScores>(ref float probabilities, int rows, ref float rowMax, ref TileRowState<Vector128<float>> state)
        where TScores : IScoreModifier
    {
        for (int t = 0; t < rows; t++)
        {
            ref float rowScores = ref Unsafe.Add(ref probabilities, t * 2 * Vector128<float>.Count);
            ref Vector128<float> rowSum = ref Unsafe.Add(ref state.Sum0, t);
            Vector128<float> score0 = Vector128.LoadUnsafe(ref rowScores), score1 = Vector128.LoadUnsafe(ref rowScores, (nuint)Vector128<float>.Count);
            if ((VectorMath.Poisons<TScores>(score0) | VectorMath.Poisons<TScores>(score1)).AsInt32() != Vector128<int>.Zero)
            {
                rowSum = Vector128.Create(float.NaN);
            }

            Unsafe.Add(ref state.Rescale0, t) = UpdateRow(score0, score1, ref rowScores, ref Unsafe.Add(ref rowMax, t), ref rowSum);
        }
    }

    /// <summary>
    /// The steps of all <paramref name="rows"/> rows of a Vector256 kernel's full block (<paramref name="keys"/> keys every
    /// row sees, several key tiles; no ALiBi or user code), their scores at <paramref name="probabilities"/>, row t's at t x
    /// <paramref name="keys"/>: as <c>UpdateFullTile</c>, with one max, one compare and at most one rescale per row for
    /// the whole block.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void UpdateFullBlock<TScores>(ref float probabilities, int rows, int keys, ref float rowMax, ref TileRowState<Vector256<float>> state)
        where TScores : IScoreModifier
    {
        for (int t = 0; t < rows; t++)
        {
            ref float rowScores = ref Unsafe.Add(ref probabilities, t * keys);
            ref Vector256<float> rowSum = ref Unsafe.Add(ref state.Sum0, t);
            ref float runningMax = ref Unsafe.Add(ref rowMax, t);
            Vector256<float> max = Vector256.LoadUnsafe(ref rowScores), poisons = VectorMath.Poisons<TScores>(max);
            for (int k = Vector256<float>.Count; k < keys; k += Vector256<float>.Count)
            {
                Vector256<float> score = Vector256.LoadUnsafe(ref rowScores, (nuint)k);
                max = VectorMath.ScoreMax(max, score);
                poisons |= VectorMath.Poisons<TScores>(score);
            }

            if (poisons.AsInt32() != Vector256<int>.Zero)
            {
                rowSum = Vector256.Create(float.NaN);
            }

            float newMax = runningMax;
            if (Vector256.GreaterThanAny(max, Vector256.Create(newMax + RescaleSlack)))
            {
                newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
            }

            if (newMax == float.NegativeInfinity)
            {
                // Nothing visible to this row yet (every score -inf or NaN): see UpdateRow.
                for (int k = 0; k < keys; k += Vector256<float>.Count)
                {
                    if (VectorMath.AnyNaN(Vector256.LoadUnsafe(ref rowScores, (nuint)k)))
                    {
                        rowSum = Vector256.Create(float.NaN);
                    }

                    Vector256<float>.Zero.StoreUnsafe(ref rowScores, (nuint)k);
                }

                Unsafe.Add(ref state.Rescale0, t) = 1f;
                continue;
            }

            float rescale = newMax > runningMax ? VectorMath.Exp2(runningMax - newMax) : 1f;
            Vector256<float> maxVector = Vector256.Create(newMax), sum = Vector256<float>.Zero;
            for (int k = 0; k < keys; k += Vector256<float>.Count)
            {
                Vector256<float> probability = VectorMath.Exp2(Vector256.LoadUnsafe(ref rowScores, (nuint)k) - maxVector);
                probability.StoreUnsafe(ref rowScores, (nuint)k);
                sum += probability;
            }

            rowSum = Vector256.FusedMultiplyAdd(rowSum, Vector256.Create(rescale), sum);
            runningMax = newMax;
            Unsafe.Add(ref state.Rescale0, t) = rescale;
        }
    }

    /// <summary>The same for a Vector128 kernel's full block.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void UpdateFullBlock<TScores>(ref float probabilities, int rows, int keys, ref float rowMax, ref TileRowState<Vector128<float>> state)
        where TScores : IScoreModifier
    {
        for (int t = 0; t < rows; t++)
        {
            ref float rowScores = ref Unsafe.Add(ref probabilities, t * keys);
            ref Vector128<float> rowSum = ref Unsafe.Add(ref state.Sum0, t);
            ref float runningMax = ref Unsafe.Add(ref rowMax, t);
            Vector128<float> max = Vector128.LoadUnsafe(ref rowScores), poisons = VectorMath.Poisons<TScores>(max);
            for (int k = Vector128<float>.Count; k < keys; k += Vector128<float>.Count)
            {
                Vector128<float> score = Vector128.LoadUnsafe(ref rowScores, (nuint)k);
                max = VectorMath.ScoreMax(max, score);
                poisons |= VectorMath.Poisons<TScores>(score);
            }

            if (poisons.AsInt32() != Vector128<int>.Zero)
            {
                rowSum = Vector128.Create(float.NaN);
            }

            float newMax = runningMax;
            if (Vector128.GreaterThanAny(max, Vector128.Create(newMax + RescaleSlack)))
            {
                newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
            }

            if (newMax == float.NegativeInfinity)
            {
                for (int k = 0; k < keys; k += Vector128<float>.Count)
                {
                    if (VectorMath.AnyNaN(Vector128.LoadUnsafe(ref rowScores, (nuint)k)))
                    {
                        rowSum = Vector128.Create(float.NaN);
                    }

                    Vector128<float>.Zero.StoreUnsafe(ref rowScores, (nuint)k);
                }

                Unsafe.Add(ref state.Rescale0, t) = 1f;
                continue;
            }

            float rescale = newMax > runningMax ? VectorMath.Exp2(runningMax - newMax) : 1f;
            Vector128<float> maxVector = Vector128.Create(newMax), sum = Vector128<float>.Zero;
            for (int k = 0; k < keys; k += Vector128<float>.Count)
            {
                Vector128<float> probability = VectorMath.Exp2(Vector128.LoadUnsafe(ref rowScores, (nuint)k) - maxVector);
                probability.StoreUnsafe(ref rowScores, (nuint)k);
                sum += probability;
            }

            rowSum = Vector128.FusedMultiplyAdd(rowSum, Vector128.Create(rescale), sum);
            runningMax = newMax;
            Unsafe.Add(ref state.Rescale0, t) = rescale;
        }
    }

    /// <summary>The step over two Vector256 score vectors (see the Vector128 overload), for <c>UpdateFullTile</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float UpdateRow(Vector256<float> score0, Vector256<float> score1, ref float rowScores, ref float runningMax, ref Vector256<float> rowSum)
    {
        Vector256<float> max = VectorMath.ScoreMax(score0, score1);
        float newMax = runningMax;
        if (Vector256.GreaterThanAny(max, Vector256.Create(newMax + RescaleSlack)))
        {
            newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
        }

        if (newMax == float.NegativeInfinity)
        {
            if (VectorMath.AnyNaN(score0) || VectorMath.AnyNaN(score1))
            {
                rowSum = Vector256.Create(float.NaN);
            }

            Vector256<float>.Zero.StoreUnsafe(ref rowScores);
            Vector256<float>.Zero.StoreUnsafe(ref rowScores, (nuint)Vector256<float>.Count);
            return 1f;
        }

        float rescale = newMax > runningMax ? VectorMath.Exp2(runningMax - newMax) : 1f;
        Vector256<float> maxVector = Vector256.Create(newMax);
        Vector256<float> probability0 = VectorMath.Exp2(score0 - maxVector), probability1 = VectorMath.Exp2(score1 - maxVector);
        probability0.StoreUnsafe(ref rowScores);
        probability1.StoreUnsafe(ref rowScores, (nuint)Vector256<float>.Count);
        rowSum = Vector256.FusedMultiplyAdd(rowSum, Vector256.Create(rescale), probability0 + probability1);
        runningMax = newMax;
        return rescale;
    }

    /// <summary>
    /// The step for the Vector128 kernels (two panels), their two score vectors passed in registers rather than through the
    /// row's scratch; the probabilities are stored at <paramref name="rowScores"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float UpdateRow(Vector128<float> score0, Vector128<float> score1, ref float rowScores, ref float runningMax, ref Vector128<float> rowSum)
    {
        Vector128<float> max = VectorMath.ScoreMax(score0, score1);
        float newMax = runningMax;
        if (Vector128.GreaterThanAny(max, Vector128.Create(newMax + RescaleSlack)))
        {
            newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
        }

        if (newMax == float.NegativeInfinity)
        {
            if (VectorMath.AnyNaN(score0) || VectorMath.AnyNaN(score1))
            {
                rowSum = Vector128.Create(float.NaN);
            }

            Vector128<float>.Zero.StoreUnsafe(ref rowScores);
            Vector128<float>.Zero.StoreUnsafe(ref rowScores, (nuint)Vector128<float>.Count);
            return 1f;
        }

        float rescale = newMax > runningMax ? VectorMath.Exp2(runningMax - newMax) : 1f;
        Vector128<float> maxVector = Vector128.Create(newMax);
        Vector128<float> probability0 = VectorMath.Exp2(score0 - maxVector), probability1 = VectorMath.Exp2(score1 - maxVector);
        probability0.StoreUnsafe(ref rowScores);
        probability1.StoreUnsafe(ref rowScores, (nuint)Vector128<float>.Count);
        rowSum = Vector128.FusedMultiplyAdd(rowSum, Vector128.Create(rescale), probability0 + probability1);
        runningMax = newMax;
        return rescale;
    }
}

/// <summary>
/// A Vector256 or Vector128 tile kernel's rows' running sums (vectors of <typeparamref name="TVector"/>, reduced after the
/// last key tile) and the current key tile's rescale factors: a local of the kernel, in memory so that
/// <c>TileSoftmax.UpdateFullTile</c> takes them by reference (the kernel's register allocator had kept the sums on the
/// stack all the same).
/// </summary>
/// <typeparam name="TVector">The kernel's vector type.</typeparam>
[EditorBrowsable(EditorBrowsableState.Never)]
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
public struct TileRowState<TVector>
    where TVector : struct
{
    /// <summary>Rows 0-5's running sums of 2^(score - max), lane-wise.</summary>
    public TVector Sum0, Sum1, Sum2, Sum3, Sum4, Sum5;

    /// <summary>Rows 0-5's rescale factors for what they accumulated before the current key tile (1 when the max held).</summary>
    public float Rescale0, Rescale1, Rescale2, Rescale3, Rescale4, Rescale5;
}
