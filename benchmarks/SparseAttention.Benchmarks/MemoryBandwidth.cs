using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Benchmarks;

/// <summary>
/// This machine's memory read bandwidth, measured the way decode reads its cache: every thread streams through its
/// share of an array much larger than the caches, summing vectors of the widest width the hardware accelerates (a
/// Vector512 sum where Vector512 is only emulated reads far below what the memory gives). Decode's bytes per second are
/// reported as a share of it, as the FMA peak is for the compute-bound kernels.
/// </summary>
public static class MemoryBandwidth
{
    /// <summary>The width the probe sums with.</summary>
    public static string Width => Vector512.IsHardwareAccelerated ? "Vector512" : Vector256.IsHardwareAccelerated ? "Vector256" : "Vector128";

    public static double MeasureReadGBs(int threads, long bytes = 512L << 20) => new Probe(threads, bytes).Best(4);

    /// <summary>
    /// The probe's array kept for repeated measurements: decode benchmarks measure it once per round, between their own
    /// timings, and judge each round against its own measurement. On a shared machine the bandwidth drifts within a run (a
    /// best-of-4 at the start read 28-51 GB/s on the same VM within an hour), so a share against one early best says
    /// more about the neighbours than about decode.
    /// </summary>
    public sealed class Probe(int threads, long bytes = 512L << 20)
    {
        private readonly float[] _data = Filled(bytes);

        /// <summary>One pass over the array, GB/s.</summary>
        public double Once()
        {
            long start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, thread => Sum(LineAligned(_data), thread, threads));
            return bytes / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9;
        }

        /// <summary>The best of <paramref name="runs"/> passes, GB/s.</summary>
        public double Best(int runs)
        {
            double best = 0;
            for (int run = 0; run < runs; run++)
            {
                best = Math.Max(best, Once());
            }

            return best;
        }

        // Pinned, one line longer than asked: the pass starts on the first line boundary, as the KV cache's tensors do (a
        // plain array starts 16 bytes past one, and every 512-bit load then straddles two lines: 38-42 GB/s where aligned
        // loads read 45-50 on the same VM).
        private static float[] Filled(long bytes)
        {
            float[] data = GC.AllocateArray<float>((int)(bytes / sizeof(float)) + 16, pinned: true);
            Array.Fill(data, 1f);
            return data;
        }

        private static ReadOnlySpan<float> LineAligned(float[] data)
        {
            long address = Marshal.UnsafeAddrOfPinnedArrayElement(data, 0);
            int skip = (int)((64 - address % 64) % 64) / sizeof(float);
            return data.AsSpan(skip, data.Length - 16);
        }
    }

    private static float Sum(ReadOnlySpan<float> data, int thread, int threads)
    {
        // Each thread's share, in whole 64-byte lines (four vectors of the narrowest width, one of the widest).
        int share = data.Length / threads / 16 * 16;
        ReadOnlySpan<float> part = data.Slice(thread * share, share);
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a = Vector512<float>.Zero, b = a, c = a, d = a;
            for (int i = 0; i + 64 <= part.Length; i += 64)
            {
                a += Vector512.Create(part.Slice(i));
                b += Vector512.Create(part.Slice(i + 16));
                c += Vector512.Create(part.Slice(i + 32));
                d += Vector512.Create(part.Slice(i + 48));
            }

            return Vector512.Sum(a + b + c + d);
        }

        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a = Vector256<float>.Zero, b = a, c = a, d = a;
            for (int i = 0; i + 32 <= part.Length; i += 32)
            {
                a += Vector256.Create(part.Slice(i));
                b += Vector256.Create(part.Slice(i + 8));
                c += Vector256.Create(part.Slice(i + 16));
                d += Vector256.Create(part.Slice(i + 24));
            }

            return Vector256.Sum(a + b + c + d);
        }

        Vector128<float> w = Vector128<float>.Zero, x = w, y = w, z = w;
        for (int i = 0; i + 16 <= part.Length; i += 16)
        {
            w += Vector128.Create(part.Slice(i));
            x += Vector128.Create(part.Slice(i + 4));
            y += Vector128.Create(part.Slice(i + 8));
            z += Vector128.Create(part.Slice(i + 12));
        }

        return Vector128.Sum(w + x + y + z);
    }
}
