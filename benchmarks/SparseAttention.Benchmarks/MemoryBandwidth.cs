using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace SparseAttention.Benchmarks;

/// <summary>
/// This machine's memory read bandwidth, measured the way decode reads its cache: every thread streams through its
/// share of an array much larger than the caches, summing Vector512s. Decode's bytes per second are reported as a
/// share of it, as the FMA peak is for the compute-bound kernels.
/// </summary>
public static class MemoryBandwidth
{
    public static double MeasureReadGBs(int threads, long bytes = 512L << 20)
    {
        var data = new float[bytes / sizeof(float)];
        Array.Fill(data, 1f);
        double best = 0;
        for (int run = 0; run < 4; run++)
        {
            long start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, thread => Sum(data, thread, threads));
            best = Math.Max(best, bytes / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9);
        }

        return best;
    }

    private static float Sum(float[] data, int thread, int threads)
    {
        int share = data.Length / threads / Vector512<float>.Count * Vector512<float>.Count;
        ReadOnlySpan<float> part = data.AsSpan(thread * share, share);
        Vector512<float> a = Vector512<float>.Zero, b = a, c = a, d = a;
        for (int i = 0; i + 4 * Vector512<float>.Count <= part.Length; i += 4 * Vector512<float>.Count)
        {
            a += Vector512.Create(part.Slice(i));
            b += Vector512.Create(part.Slice(i + Vector512<float>.Count));
            c += Vector512.Create(part.Slice(i + 2 * Vector512<float>.Count));
            d += Vector512.Create(part.Slice(i + 3 * Vector512<float>.Count));
        }

        return Vector512.Sum(a + b + c + d);
    }
}
