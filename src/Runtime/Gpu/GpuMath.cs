using System.Runtime.CompilerServices;
using ILGPU;

namespace SparseAttention.Gpu;

/// <summary>
/// Arithmetic the generated ILGPU kernels call. Written only with operations every ILGPU backend has (integer and float
/// arithmetic, bit casts, ILGPU's own intrinsics): <c>MathF.Exp</c> has no PTX implementation without ILGPU.Algorithms.
/// </summary>
public static class GpuMath
{
    /// <summary>
    /// 2^<paramref name="x"/> for the softmax, whose arguments are ≤ 0 (0 for -∞): ILGPU's intrinsic, which is one
    /// <c>ex2.approx.f32</c> on PTX (relative error below 2^-22), <c>exp2</c> in OpenCL C and the .NET function on the CPU
    /// accelerator and the host.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp2(float x) => IntrinsicMath.CPUOnly.Exp2(x);

    /// <summary>
    /// cap x tanh(s / cap) for a base-2 score and a base-2 cap, by the CPU kernels' formula: tanh(x) = sign(x) (1 - e) /
    /// (1 + e), e = 2^(-2|x| log2(e)). A non-finite score gives NaN (the row is poisoned already: the kernel tests raw scores).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Softcap(float score, float capBase2)
    {
        float magnitude = score < 0f ? -score : score;
        float e = Exp2(-2.88539008177792681f * magnitude / capBase2);
        float tanh = (1f - e) / (1f + e);
        return (score < 0f ? -tanh : tanh) * capBase2;
    }

    /// <summary>log2(x) for x ≥ 1 (a row's softmax sum), from the exponent bits and a series for the mantissa; for the log-sum-exp.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Log2(float x)
    {
        uint bits = Interop.FloatAsInt(x);
        int exponent = (int)((bits >> 23) & 0xFF) - 127;
        // Mantissa m in [1, 2): log2(m) = 2 atanh((m - 1) / (m + 1)) / ln 2, the series converges fast for t <= 1/3.
        float m = Interop.IntAsFloat((bits & 0x007FFFFFu) | 0x3F800000u);
        float t = (m - 1f) / (m + 1f), t2 = t * t;
        float series = t * (1f + t2 * (1f / 3f + t2 * (1f / 5f + t2 * (1f / 7f + t2 * (1f / 9f + t2 * (1f / 11f))))));
        return exponent + series * 2.88539008177792681f;
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
