using System.Runtime.Intrinsics;

namespace SparseAttention.Benchmarks;

/// <summary>
/// This machine's memory read bandwidth: every thread streams through its share of an array much larger than the
/// caches, in each of the ways that read fastest on the machines measured (<see cref="Probe.Once"/>), summing vectors of
/// the widest width the hardware accelerates (a Vector512 sum where Vector512 is only emulated reads far below what the
/// memory gives). Decode's bytes per second are reported as a share of it, as the FMA peak is for the compute-bound
/// kernels.
/// </summary>
public static class MemoryBandwidth
{
    /// <summary>The width the probe sums with.</summary>
    public static string Width => Vector512.IsHardwareAccelerated ? "Vector512" : Vector256.IsHardwareAccelerated ? "Vector256" : "Vector128";

    /// <summary>The reads each probe pass times, the fastest of which is the bandwidth, for the reports' headers.</summary>
    public static string Reads => $"fastest of a plain read, one requesting lines ahead and {SideBySideStreams} parts side by side";

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

        /// <summary>Every pass's GB/s, per <see cref="Read"/>.</summary>
        private readonly List<double>[] _passes = Enum.GetValues<Read>().Select(_ => new List<double>()).ToArray();

        /// <summary>
        /// One pass over the array, GB/s: the fastest of a plain read (the hardware prefetchers alone), one that also
        /// requests each line <see cref="RequestAheadBytes"/> ahead, as decode does, and one that reads four parts of the
        /// share side by side (<see cref="Read.SideBySide"/>). With the plain read alone, decode read up to 1.09x "the
        /// bandwidth" on a Zen 5 VM; without the side-by-side read, the probe understated the memory by 1.1-1.25x there.
        /// The probe is the machine's best read, so no read may beat it.
        /// </summary>
        public double Once()
        {
            double best = 0;
            foreach (Read read in Enum.GetValues<Read>())
            {
                double gbs = bytes / ConcurrentTiming.Seconds(threads, thread => Sum(Data, thread, threads, read)) / 1e9;
                _passes[(int)read].Add(gbs);
                best = Math.Max(best, gbs);
            }

            return best;
        }

        /// <summary>Each read's median GB/s over every pass so far, for the report: which read sets the bandwidth here.</summary>
        public string Describe()
        {
            double Median(Read read) => _passes[(int)read].Count == 0 ? 0 : AlternatingRounds.Quantile(_passes[(int)read].ToArray(), 0.5);
            return $"plain {Median(Read.Plain):F1}, requesting ahead {Median(Read.Requesting):F1}, " +
                $"{SideBySideStreams} parts side by side {Median(Read.SideBySide):F1} GB/s (medians of {_passes[0].Count} passes each)";
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

    /// <summary>How a probe pass reads its share.</summary>
    private enum Read
    {
        /// <summary>Front to back, the hardware prefetchers alone.</summary>
        Plain,

        /// <summary>Front to back, each line also requested <see cref="RequestAheadBytes"/> ahead, as decode does.</summary>
        Requesting,

        /// <summary>
        /// The share cut into <see cref="SideBySideStreams"/> parts read side by side, a line of each per step. On a Zen 5 VM
        /// two streams read 1.11-1.29x the plain pass and four 1.24-1.28x (benchmarks/probes/decode-overlap.c, one thread and
        /// two): the core's prefetchers keep more lines in flight for several streams than for one. Decode reads two arrays,
        /// keys and values, so a one-stream probe understated what the memory gives it.
        /// </summary>
        SideBySide,
    }

    /// <summary>How many parts the side-by-side pass reads at once: each step reads one line of every part.</summary>
    private const int SideBySideStreams = 4;

    private static unsafe float Sum(ReadOnlySpan<float> data, int thread, int threads, Read read)
    {
        // Each thread's share, in whole 64-byte lines (four vectors of the narrowest width, one of the widest). Each step
        // reads whole lines; the requesting pass first asks for the same lines RequestAheadBytes on (x86 prefetch never
        // faults past the end; the test is the same every step, so the branch costs nothing beside the memory).
        int share = data.Length / threads / (16 * SideBySideStreams) * (16 * SideBySideStreams);
        fixed (float* part = data.Slice(thread * share, share))
        {
            if (read == Read.SideBySide)
            {
                return SumSideBySide(part, share / SideBySideStreams);
            }

            bool requestAhead = read == Read.Requesting;
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

    /// <summary>The sum of <see cref="SideBySideStreams"/> consecutive parts of <paramref name="partFloats"/> floats, read a line of each per step.</summary>
    private static unsafe float SumSideBySide(float* first, int partFloats)
    {
        float* second = first + partFloats, third = second + partFloats, fourth = third + partFloats;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a = Vector512<float>.Zero, b = a, c = a, d = a;
            for (int i = 0; i + 16 <= partFloats; i += 16)
            {
                a += Vector512.Load(first + i);
                b += Vector512.Load(second + i);
                c += Vector512.Load(third + i);
                d += Vector512.Load(fourth + i);
            }

            return Vector512.Sum(a + b + c + d);
        }

        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a = Vector256<float>.Zero, b = a, c = a, d = a;
            for (int i = 0; i + 16 <= partFloats; i += 16)
            {
                a += Vector256.Load(first + i) + Vector256.Load(first + i + 8);
                b += Vector256.Load(second + i) + Vector256.Load(second + i + 8);
                c += Vector256.Load(third + i) + Vector256.Load(third + i + 8);
                d += Vector256.Load(fourth + i) + Vector256.Load(fourth + i + 8);
            }

            return Vector256.Sum(a + b + c + d);
        }

        Vector128<float> w = Vector128<float>.Zero, x = w, y = w, z = w;
        for (int i = 0; i + 16 <= partFloats; i += 16)
        {
            w += Vector128.Load(first + i) + Vector128.Load(first + i + 4) + Vector128.Load(first + i + 8) + Vector128.Load(first + i + 12);
            x += Vector128.Load(second + i) + Vector128.Load(second + i + 4) + Vector128.Load(second + i + 8) + Vector128.Load(second + i + 12);
            y += Vector128.Load(third + i) + Vector128.Load(third + i + 4) + Vector128.Load(third + i + 8) + Vector128.Load(third + i + 12);
            z += Vector128.Load(fourth + i) + Vector128.Load(fourth + i + 4) + Vector128.Load(fourth + i + 8) + Vector128.Load(fourth + i + 12);
        }

        return Vector128.Sum(w + x + y + z);
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
