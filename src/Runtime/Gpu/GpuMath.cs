using System.Runtime.CompilerServices;
using ILGPU;

namespace SparseAttention.Gpu;

/// <summary>
/// Arithmetic the generated ILGPU kernels call. Written only with operations every ILGPU backend has (integer
/// and float arithmetic, bit casts): <c>MathF.Exp</c> has no PTX implementation without ILGPU.Algorithms.
/// </summary>
public static class GpuMath
{
    /// <summary>
    /// 2^<paramref name="x"/> for the softmax, whose arguments are ≤ 0. Below -126 (and for -∞) it returns 0;
    /// relative error about 1.2e-7 elsewhere: x is split into a nearest integer k and f in [-0.5, 0.5],
    /// 2^f comes from its Taylor polynomial of degree 6, 2^k from the exponent bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp2(float x)
    {
        if (x < -126f)
        {
            return 0f;
        }

        if (x > 127f)
        {
            x = 127f;
        }

        // Round to nearest by truncating x ± 0.5 (a cast truncates toward zero; Math.Floor is not on every backend).
        int whole = (int)(x < 0f ? x - 0.5f : x + 0.5f);
        float fraction = x - whole;
        float polynomial = 1.5403530393381609e-4f;
        polynomial = polynomial * fraction + 1.3333558146428443e-3f;
        polynomial = polynomial * fraction + 9.6181291076284772e-3f;
        polynomial = polynomial * fraction + 5.5504108664821580e-2f;
        polynomial = polynomial * fraction + 2.4022650695910071e-1f;
        polynomial = polynomial * fraction + 6.9314718055994531e-1f;
        polynomial = polynomial * fraction + 1f;
        return polynomial * Interop.IntAsFloat((uint)(whole + 127) << 23);
    }

    /// <summary>
    /// Whether the closed range [<paramref name="low"/>, <paramref name="high"/>] holds a multiple of
    /// <paramref name="step"/> (step ≥ 1): the test behind every tile classification, since a window with
    /// dilation D and a stride s are both "the key-query difference is a multiple of something in a range".
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool RangeHoldsMultiple(long low, long high, long step)
    {
        if (low > high)
        {
            return false;
        }

        long remainder = ((low % step) + step) % step;
        long firstMultiple = remainder == 0 ? low : low + (step - remainder);
        return firstMultiple <= high;
    }
}
