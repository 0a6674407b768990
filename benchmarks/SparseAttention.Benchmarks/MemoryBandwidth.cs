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
        private readonly Decode.LargePages.Block _data = Filled(bytes);

        /// <summary>
        /// One pass over the array, GB/s: the faster of a plain read (the hardware prefetchers alone) and one that also
        /// requests each line <see cref="RequestAheadBytes"/> ahead, as decode does. With the plain read alone, decode read
        /// up to 1.09x "the bandwidth" on a Zen 5 VM; the probe is the machine's best read, so neither read may beat it.
        /// </summary>
        public double Once() => Math.Max(Pass(requestAhead: false), Pass(requestAhead: true));

        private double Pass(bool requestAhead) =>
            bytes / ConcurrentTiming.Seconds(threads, thread => Sum(Data, thread, threads, requestAhead)) / 1e9;

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

        private unsafe ReadOnlySpan<float> Data => new(_data.Pointer, (int)(bytes / sizeof(float)));

        // Allocated as the KV cache's memory is (line-aligned, and on 2 MiB pages where Linux gives them): the probe
        // measures what the memory gives decode's own buffers. With 4 KiB pages it read 46-63 GB/s on a Zen 5 VM where
        // huge pages read 51-70 in the same hour; a plain array's 16-byte offset made every 512-bit load straddle two lines.
        private static unsafe Decode.LargePages.Block Filled(long bytes)
        {
            Decode.LargePages.Block block = Decode.LargePages.Allocate(bytes)!;
            new Span<float>(block.Pointer, (int)(bytes / sizeof(float))).Fill(1f);
            return block;
        }
    }

    /// <summary>How far ahead the requesting pass asks for lines: decode's distance, one tile of 32 keys x 512 bytes.</summary>
    public const int RequestAheadBytes = 16384;

    private static unsafe float Sum(ReadOnlySpan<float> data, int thread, int threads, bool requestAhead)
    {
        // Each thread's share, in whole 64-byte lines (four vectors of the narrowest width, one of the widest). Each step
        // reads whole lines; the requesting pass first asks for the same lines RequestAheadBytes on (x86 prefetch never
        // faults past the end; the test is the same every step, so the branch costs nothing beside the memory).
        int share = data.Length / threads / 16 * 16;
        fixed (float* part = data.Slice(thread * share, share))
        {
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> a = Vector512<float>.Zero, b = a, c = a, d = a;
                for (int i = 0; i + 64 <= share; i += 64)
                {
                    if (requestAhead)
                    {
                        RequestLines((byte*)(part + i) + RequestAheadBytes, 4);
                    }

                    a += Vector512.Load(part + i);
                    b += Vector512.Load(part + i + 16);
                    c += Vector512.Load(part + i + 32);
                    d += Vector512.Load(part + i + 48);
                }

                return Vector512.Sum(a + b + c + d);
            }

            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> a = Vector256<float>.Zero, b = a, c = a, d = a;
                for (int i = 0; i + 32 <= share; i += 32)
                {
                    if (requestAhead)
                    {
                        RequestLines((byte*)(part + i) + RequestAheadBytes, 2);
                    }

                    a += Vector256.Load(part + i);
                    b += Vector256.Load(part + i + 8);
                    c += Vector256.Load(part + i + 16);
                    d += Vector256.Load(part + i + 24);
                }

                return Vector256.Sum(a + b + c + d);
            }

            Vector128<float> w = Vector128<float>.Zero, x = w, y = w, z = w;
            for (int i = 0; i + 16 <= share; i += 16)
            {
                if (requestAhead)
                {
                    RequestLines((byte*)(part + i) + RequestAheadBytes, 1);
                }

                w += Vector128.Load(part + i);
                x += Vector128.Load(part + i + 4);
                y += Vector128.Load(part + i + 8);
                z += Vector128.Load(part + i + 12);
            }

            return Vector128.Sum(w + x + y + z);
        }
    }

    /// <summary>Requests <paramref name="lines"/> 64-byte lines from <paramref name="address"/> on, as decode requests its cache's.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static unsafe void RequestLines(byte* address, int lines)
    {
        for (int line = 0; line < lines; line++)
        {
            Decode.LineRequests.Request(address + 64 * line);
        }
    }
}
