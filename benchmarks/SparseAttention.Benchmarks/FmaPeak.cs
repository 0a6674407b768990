using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Benchmarks;

/// <summary>
/// This machine's fp32 FMA peak, measured the way the kernels run: every core, independent FMA chains per thread (16 at
/// 512 bits, 12 below: see <see cref="NarrowChains"/>) so
/// latency never limits throughput, at the vector width of the instruction set being judged (the widest accelerated one
/// by default), so a forced Vector256 or Vector128 kernel is compared with what that width can do.
/// </summary>
public static class FmaPeak
{
    /// <summary>The peak at <paramref name="isa"/>'s width (Auto: the widest accelerated; Scalar: one float per FMA).</summary>
    public static double MeasureGflops(int threads, KernelIsa isa = KernelIsa.Auto)
    {
        KernelIsa width = isa == KernelIsa.Auto ? AttentionOptions.Default.ResolveIsa() : isa;
        (int lanes, Func<long, float> run) = width switch
        {
            KernelIsa.Vector512 => (16, Run512),
            KernelIsa.Vector256 => (8, Run256),
            KernelIsa.Vector128 => (4, Run128),
            _ => (1, (Func<long, float>)RunScalar),
        };
        return MeasureGflops(threads, lanes, Chains(width), run);
    }

    /// <summary>The independent FMA chains per thread the probe runs at <paramref name="isa"/>'s width, for the report.</summary>
    public static int Chains(KernelIsa isa) => (isa == KernelIsa.Auto ? AttentionOptions.Default.ResolveIsa() : isa) == KernelIsa.Vector512 ? 16 : NarrowChains;

    /// <summary>Names the width <see cref="MeasureGflops(int, KernelIsa)"/> measures, for the report.</summary>
    public static string WidthName(KernelIsa isa) => (isa == KernelIsa.Auto ? AttentionOptions.Default.ResolveIsa() : isa).ToString();

    /// <summary>
    /// Chains below 512 bits: 12 accumulators and the two operands fit AVX2's 16 registers. With 16 chains the JIT kept
    /// three accumulators on the stack, each FMA of theirs waiting on a store and a reload: on a Zen 1 the Vector128 probe
    /// read 48 GFLOP/s where 12 chains (and C with 12) reach 76, which made the Vector128 kernels look 1.6x closer to the
    /// peak than they were; a core that runs two 256-bit FMAs a cycle (Zen 3 and later) was held back the same way at
    /// Vector256. Twelve chains are more than the 8-10 that two FMA pipes of 4-5 cycles' latency need.
    /// </summary>
    private const int NarrowChains = 12;

    private static double MeasureGflops(int threads, int lanes, int chains, Func<long, float> run)
    {
        const long Iterations = 20_000_000;
        double best = 0;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            double seconds = ConcurrentTiming.Seconds(threads, _ => run(Iterations));
            best = Math.Max(best, threads * Iterations * (double)chains * 2 * lanes / seconds / 1e9);
        }

        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Run512(long iterations)
    {
        Vector512<float> a0 = Vector512.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        Vector512<float> a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
        Vector512<float> m = Vector512.Create(0.999999f), c = Vector512.Create(1e-7f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c); a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c); a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
            a12 = Vector512.FusedMultiplyAdd(a12, m, c); a13 = Vector512.FusedMultiplyAdd(a13, m, c);
            a14 = Vector512.FusedMultiplyAdd(a14, m, c); a15 = Vector512.FusedMultiplyAdd(a15, m, c);
        }

        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Run256(long iterations)
    {
        Vector256<float> a0 = Vector256.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        Vector256<float> a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        Vector256<float> m = Vector256.Create(0.999999f), c = Vector256.Create(1e-7f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c);
            a2 = Vector256.FusedMultiplyAdd(a2, m, c); a3 = Vector256.FusedMultiplyAdd(a3, m, c);
            a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c);
            a8 = Vector256.FusedMultiplyAdd(a8, m, c); a9 = Vector256.FusedMultiplyAdd(a9, m, c);
            a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }

        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Run128(long iterations)
    {
        Vector128<float> a0 = Vector128.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        Vector128<float> a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        Vector128<float> m = Vector128.Create(0.999999f), c = Vector128.Create(1e-7f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector128.FusedMultiplyAdd(a0, m, c); a1 = Vector128.FusedMultiplyAdd(a1, m, c);
            a2 = Vector128.FusedMultiplyAdd(a2, m, c); a3 = Vector128.FusedMultiplyAdd(a3, m, c);
            a4 = Vector128.FusedMultiplyAdd(a4, m, c); a5 = Vector128.FusedMultiplyAdd(a5, m, c);
            a6 = Vector128.FusedMultiplyAdd(a6, m, c); a7 = Vector128.FusedMultiplyAdd(a7, m, c);
            a8 = Vector128.FusedMultiplyAdd(a8, m, c); a9 = Vector128.FusedMultiplyAdd(a9, m, c);
            a10 = Vector128.FusedMultiplyAdd(a10, m, c); a11 = Vector128.FusedMultiplyAdd(a11, m, c);
        }

        return Vector128.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float RunScalar(long iterations)
    {
        float a0 = 1f, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        float a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const float m = 0.999999f, c = 1e-7f;
        for (long i = 0; i < iterations; i++)
        {
            a0 = MathF.FusedMultiplyAdd(a0, m, c); a1 = MathF.FusedMultiplyAdd(a1, m, c);
            a2 = MathF.FusedMultiplyAdd(a2, m, c); a3 = MathF.FusedMultiplyAdd(a3, m, c);
            a4 = MathF.FusedMultiplyAdd(a4, m, c); a5 = MathF.FusedMultiplyAdd(a5, m, c);
            a6 = MathF.FusedMultiplyAdd(a6, m, c); a7 = MathF.FusedMultiplyAdd(a7, m, c);
            a8 = MathF.FusedMultiplyAdd(a8, m, c); a9 = MathF.FusedMultiplyAdd(a9, m, c);
            a10 = MathF.FusedMultiplyAdd(a10, m, c); a11 = MathF.FusedMultiplyAdd(a11, m, c);
        }

        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    }
}
