using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// One tile row's online-softmax step (base 2) for the generated Vector512 tile kernels: the row's new max over its
/// masked scores of one key tile (stored at <c>rowScores</c>, <c>panels</c> vectors), the rescale of what the row
/// accumulated, and its probabilities 2^(score - max) stored in place of the scores. Written out row by row in the
/// kernel, the 6 rows x 4 panels of 2^x and max exhausted the JIT's inlining budget: a third of them, and the poison
/// tests and min/max after them, stayed real calls in the key-tile loop (seen in the JIT's listing). Through this one
/// method, inlined six times, every call inlines; measured 0.95-0.96x the time on Vector512. The narrower kernels keep
/// their rows written out (they ran 1.01-1.04x slower through such a method, with 16 registers).
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TileSoftmax
{
    /// <summary>The step over Vector512 panels; returns the rescale factor of the row's earlier accumulation (1 when the max held).</summary>
    /// <remarks>The same arithmetic, in the same order, as the narrower kernels' written-out rows (the generator's EmitRowSoftmaxUpdate).</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float UpdateRow(ref float rowScores, int panels, ref float runningMax, ref Vector512<float> rowSum)
    {
        Vector512<float> max = Vector512.LoadUnsafe(ref rowScores);
        for (int p = 1; p < panels; p++)
        {
            max = Vector512.Max(max, Vector512.LoadUnsafe(ref rowScores, (nuint)(p * Vector512<float>.Count)));
        }

        float newMax = MathF.Max(runningMax, VectorMath.MaxAcross(max));
        if (newMax == float.NegativeInfinity)
        {
            // Nothing visible to this row yet: no probabilities, nothing to rescale.
            for (int p = 0; p < panels; p++)
            {
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
}
