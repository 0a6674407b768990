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
/// (0.97-0.995x with 16 registers). The Vector256 kernels keep their rows written out: through either form they ran
/// 1.01-1.04x slower with AVX2's 16 registers.
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
