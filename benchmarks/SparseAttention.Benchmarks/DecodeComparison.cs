using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// Streaming decode (`-- --decode`): Mistral 7B's attention shape (sliding window 4096, 32 query heads over 8 KV heads,
/// HeadDim 128) decoding one token at stream positions 8K, 64K and 1M. The stream is filled by appending random keys
/// and values to a rolling <see cref="KvCache"/>; each timed step appends one token and decodes it. Reported beside a
/// hand-written TensorPrimitives decode over the same ring in the same run, and as a ratio to the 8K latency (the
/// cache is O(window), so the latency must not depend on the position). Also times a 16K-token prompt through
/// <c>Prefill</c> against <c>Forward</c> on the same prompt.
/// </summary>
public static class DecodeComparison
{
    private const int Heads = 32, KvHeads = 8, HeadDim = Window4096HeadDim128.HeadDim, Window = 4096;
    private const int TimedTokens = 256;

    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string? threadArgument = CommandLine.Argument(args, "--threads");
        int threads = threadArgument is null ? Environment.ProcessorCount : int.Parse(threadArgument, CultureInfo.InvariantCulture);
        var options = new AttentionOptions { MaxDegreeOfParallelism = threads };
        long[] positions = args.Contains("--short") ? new long[] { 8192, 16384 } : new long[] { 8192, 65536, 1 << 20 };

        Console.WriteLine($"SparseAttention streaming decode: {threads} of {Environment.ProcessorCount} cores, {QuickComparison.RuntimeInfo()}, kernel ISA {options.ResolveIsa()}");
        Console.WriteLine($"Pattern {Window4096HeadDim128.Pattern}; Heads {Heads}, KvHeads {KvHeads}, HeadDim {HeadDim}.");
        Console.WriteLine($"Per token: append its keys/values, decode its query. Latency = best of 3 runs of {TimedTokens} consecutive tokens, per token.");
        Console.WriteLine($"GFLOP/s = visible pairs ({Heads} heads x {Window} keys) x 4 x HeadDim / s. TP = TensorPrimitives decode over the same ring.");

        // A window of random tokens, appended over and over; the query is one token's [Heads, HeadDim].
        var window = new CaseInputs(new AttentionShape(Heads, KvHeads, Window), HeadDim);
        float[] chunkKeys = window.Key, chunkValues = window.Value;
        float[] query = window.Query.AsSpan(0, Heads * HeadDim).ToArray();
        var output = new float[Heads * HeadDim];
        var baselineOutput = new float[Heads * HeadDim];

        double bandwidth = MemoryBandwidth.MeasureReadGBs(threads);
        Console.WriteLine($"Memory read bandwidth ({MemoryBandwidth.Width} sums over 512 MiB, {MemoryBandwidth.Reads}, {threads} threads, best of 4): {bandwidth:F1} GB/s; 'of BW' = decode's K+V bytes per second as a share of it.");
        Console.WriteLine();

        KvCache cache = Window4096HeadDim128.CreateCache(KvHeads);
        var baseline = new TensorPrimitivesDecoder(Window4096HeadDim128.Pattern, Heads, KvHeads, HeadDim);
        Console.WriteLine($"{"position",10} {"cache MiB",10} {"us/token",9} {"tokens/s",9} {"GFLOP/s",8} {"GB/s K+V",9} {"of BW",6} {"vs 8K",6} {"TP us",8} {"vs TP",6} {"|ours-TP|",10}");
        double? firstLatency = null;
        var latencies = new List<(long Position, double Microseconds, long Bytes)>();
        foreach (long position in positions)
        {
            // Fill the stream up to just before the timed tokens (three runs of them end at the position), a
            // window-sized chunk at a time.
            long fillStart = Stopwatch.GetTimestamp();
            long fillTo = position - 3 * TimedTokens;
            while (cache.Count < fillTo)
            {
                int tokens = (int)Math.Min(Window, fillTo - cache.Count);
                cache.Append(chunkKeys.AsSpan(0, tokens * KvHeads * HeadDim), chunkValues.AsSpan(0, tokens * KvHeads * HeadDim));
                baseline.Append(chunkKeys.AsSpan(0, tokens * KvHeads * HeadDim), chunkValues.AsSpan(0, tokens * KvHeads * HeadDim));
            }

            double fillSeconds = Stopwatch.GetElapsedTime(fillStart).TotalSeconds;
            double best = double.MaxValue;
            for (int run = 0; run < 3; run++)
            {
                long start = Stopwatch.GetTimestamp();
                for (int token = 0; token < TimedTokens; token++)
                {
                    int offset = token % Window * KvHeads * HeadDim;
                    cache.Append(chunkKeys.AsSpan(offset, KvHeads * HeadDim), chunkValues.AsSpan(offset, KvHeads * HeadDim));
                    Window4096HeadDim128.Decode(query, cache, output, options);
                }

                best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalMicroseconds / TimedTokens);
                for (int token = 0; token < TimedTokens; token++)
                {
                    int offset = token % Window * KvHeads * HeadDim;
                    baseline.Append(chunkKeys.AsSpan(offset, KvHeads * HeadDim), chunkValues.AsSpan(offset, KvHeads * HeadDim));
                }
            }

            // The baseline on the same ring contents, and compared with our last output.
            double baselineMicroseconds = TimeBaseline(baseline, query, baselineOutput);
            double difference = MaxDifference(output, baselineOutput);

            firstLatency ??= best;
            double pairs = (double)Heads * Window;
            double gflops = pairs * 4 * HeadDim / (best * 1e-6) / 1e9;
            double kvBytes = 2.0 * KvHeads * Window * HeadDim * sizeof(float);
            latencies.Add((cache.Count, best, cache.MemoryBytes));
            Console.WriteLine($"{cache.Count,10:N0} {cache.MemoryBytes / 1048576.0,10:F1} {best,9:F0} {1e6 / best,9:F0} {gflops,8:F1} {kvBytes / (best * 1e-6) / 1e9,9:F1} {100 * kvBytes / (best * 1e-6) / 1e9 / bandwidth,5:F0}% {best / firstLatency.Value,5:F2}x {baselineMicroseconds,8:F0} {baselineMicroseconds / best,5:F2}x {difference,10:E1}   (filled in {fillSeconds:F1} s)");
        }

        Console.WriteLine();
        double flatness = latencies[^1].Microseconds / latencies[0].Microseconds;
        bool sameBytes = latencies.All(latency => latency.Bytes == latencies[0].Bytes);
        Console.WriteLine($"Target (issue 6): latency at {latencies[^1].Position:N0} within 1.1x of {latencies[0].Position:N0}: {flatness:F2}x {(flatness <= 1.1 ? "met" : "MISS")}; cache bytes equal at every position: {(sameBytes ? "yes" : "NO")} ({latencies[0].Bytes:N0} B).");

        PrefillComparison(options);
        return sameBytes ? 0 : 1;
    }

    /// <summary>A 16K-token prompt through Prefill (chunks of 4096, row kernels) against Forward (tiled) on the same prompt.</summary>
    private static void PrefillComparison(AttentionOptions options)
    {
        const int PromptLength = 16384;
        var shape = new AttentionShape(Heads, KvHeads, PromptLength);
        var prompt = new CaseInputs(shape, HeadDim, seed: 2);
        float[] query = prompt.Query, key = prompt.Key, value = prompt.Value;
        var prefilled = new float[query.Length];
        var forward = new float[query.Length];
        double prefillMs = QuickComparison.Time(() => Window4096HeadDim128.Prefill(query, key, value, prefilled, shape, Window4096HeadDim128.CreateCache(KvHeads), options), maxRuns: 2);
        double forwardMs = QuickComparison.Time(() => Window4096HeadDim128.Forward(query, key, value, forward, shape, options), maxRuns: 2);
        double gflops(double ms) => Window4096HeadDim128.Pattern.VisiblePairs(PromptLength, Heads) * 4.0 * HeadDim / (ms / 1000) / 1e9;
        Console.WriteLine();
        Console.WriteLine($"Prefill of a {PromptLength:N0}-token prompt: {prefillMs:F0} ms ({PromptLength / (prefillMs / 1000):F0} tokens/s, {gflops(prefillMs):F1} GFLOP/s); "
            + $"Forward on the same prompt: {forwardMs:F0} ms ({gflops(forwardMs):F1} GFLOP/s); Prefill / Forward time {prefillMs / forwardMs:F2}x; max |difference| {MaxDifference(prefilled, forward):E1}.");
    }

    /// <summary>Best of 3 runs of 32 decodes (after a warm-up that starts the thread pool), per token.</summary>
    private static double TimeBaseline(TensorPrimitivesDecoder baseline, float[] query, float[] output)
    {
        const int Tokens = 32;
        baseline.Decode(query, output);
        double best = double.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int token = 0; token < Tokens; token++)
            {
                baseline.Decode(query, output);
            }

            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalMicroseconds / Tokens);
        }

        return best;
    }

    private static double MaxDifference(float[] first, float[] second)
    {
        double max = 0;
        for (int i = 0; i < first.Length; i++)
        {
            max = Math.Max(max, Math.Abs((double)first[i] - second[i]));
        }

        return max;
    }

    /// <summary>
    /// What a careful .NET developer writes by hand for a windowed decode: the same rolling ring (position p in slot
    /// p mod W), and per head a TensorPrimitives.Dot per visible key, TensorPrimitives.SoftMax, a
    /// TensorPrimitives.MultiplyAdd per value row; heads over cores with Parallel.For. Window patterns only.
    /// </summary>
    private sealed class TensorPrimitivesDecoder
    {
        private readonly int _heads, _kvHeads, _headDim, _window;
        private readonly float[] _keys, _values;
        private long _count;

        public TensorPrimitivesDecoder(AttentionPattern pattern, int heads, int kvHeads, int headDim)
        {
            _heads = heads;
            _kvHeads = kvHeads;
            _headDim = headDim;
            _window = pattern.WindowLeft + 1;
            _keys = new float[kvHeads * _window * headDim];
            _values = new float[kvHeads * _window * headDim];
        }

        public void Append(ReadOnlySpan<float> key, ReadOnlySpan<float> value)
        {
            int tokenFloats = _kvHeads * _headDim;
            for (int token = 0; token < key.Length / tokenFloats; token++, _count++)
            {
                int slot = (int)(_count % _window);
                for (int kvHead = 0; kvHead < _kvHeads; kvHead++)
                {
                    key.Slice(token * tokenFloats + kvHead * _headDim, _headDim).CopyTo(_keys.AsSpan((kvHead * _window + slot) * _headDim));
                    value.Slice(token * tokenFloats + kvHead * _headDim, _headDim).CopyTo(_values.AsSpan((kvHead * _window + slot) * _headDim));
                }
            }
        }

        public void Decode(float[] query, float[] output)
        {
            int visible = (int)Math.Min(_count, _window);
            float scale = 1f / MathF.Sqrt(_headDim);
            Parallel.For(0, _heads, () => (new float[_window], new float[_window]), (head, _, buffers) =>
            {
                (float[] scores, float[] probabilities) = buffers;
                int kvBase = head / (_heads / _kvHeads) * _window * _headDim;
                ReadOnlySpan<float> q = query.AsSpan(head * _headDim, _headDim);
                Span<float> o = output.AsSpan(head * _headDim, _headDim);
                for (int slot = 0; slot < visible; slot++)
                {
                    scores[slot] = TensorPrimitives.Dot(q, _keys.AsSpan(kvBase + slot * _headDim, _headDim)) * scale;
                }

                TensorPrimitives.SoftMax(scores.AsSpan(0, visible), probabilities.AsSpan(0, visible));
                o.Clear();
                for (int slot = 0; slot < visible; slot++)
                {
                    TensorPrimitives.MultiplyAdd(_values.AsSpan(kvBase + slot * _headDim, _headDim), probabilities[slot], o, o);
                }

                return buffers;
            }, _ => { });
        }
    }
}
