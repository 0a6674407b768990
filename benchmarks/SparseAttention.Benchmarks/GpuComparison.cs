using System.Diagnostics;
using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// The GPU comparison (`-- --gpu`): issue 17's cases at n = 16384 (fp32) through their generated ILGPU kernels, with
/// tensors resident on the device: the Mistral shape (32 query heads, 8 KV heads, HeadDim 128, window 4096), the same
/// window at HeadDim 64, dense causal, Longformer (12 heads) and its dilated form. Each result is checked against the
/// reference on sampled rows before it is reported. Speed is visible-pair TFLOP/s (pairs x 4 x HeadDim / s) and its share
/// of the device's fp32 FMA peak (SMs x FP32 lanes per SM x 2 x clock, or `--peak-tflops X`).
/// Options: `--backend Cuda|OpenCL|IlgpuCpu` (default: AttentionDevice's pick), `--seqlen N` (default 16384),
/// `--launches N` (default 10). The previous kernel's figures come from running this on a build of an earlier commit.
/// Then decode on the device: the Mistral shape from position 65,536 on (a full 4,096-slot ring per KV head), each step appending its token on the device and decoding it
/// through a <see cref="DeviceKvCache"/>, as microseconds per token and K+V bytes read per second against the device's
/// memory bandwidth (2 x memory clock x bus width, or `--peak-gbs X`), checked against the CPU decode.
/// </summary>
public static class GpuComparison
{
    private const double Tolerance = 1e-4;

    private delegate void OnAccelerator(Accelerator accelerator, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, AttentionOptions options);

    private sealed record GpuCase(string Name, AttentionPattern Pattern, OnAccelerator Forward, int HeadDim, int Heads, int KvHeads);

    private static readonly GpuCase[] Cases =
    {
        new("mistral-w4096-d128", Window4096HeadDim128.Pattern, Window4096HeadDim128.Forward, 128, Heads: 32, KvHeads: 8),
        new("swa-w4096-d64", Window4096.Pattern, Window4096.Forward, 64, Heads: 32, KvHeads: 8),
        new("causal-d64", DenseCausal.Pattern, DenseCausal.Forward, 64, Heads: 32, KvHeads: 8),
        new("longformer", Longformer.Pattern, Longformer.Forward, 64, Heads: 12, KvHeads: 12),
        new("longformer-dilated", LongformerDilated.Pattern, LongformerDilated.Forward, 64, Heads: 12, KvHeads: 12),
    };

    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string? backendArgument = CommandLine.Argument(args, "--backend");
        AttentionBackend backend = backendArgument is null ? AttentionBackend.Auto : Enum.Parse<AttentionBackend>(backendArgument, ignoreCase: true);
        int seqLen = int.Parse(CommandLine.Argument(args, "--seqlen") ?? "16384", CultureInfo.InvariantCulture);
        int launches = int.Parse(CommandLine.Argument(args, "--launches") ?? "10", CultureInfo.InvariantCulture);

        using AttentionDevice device = AttentionDevice.Create(backend);
        Console.WriteLine($"SparseAttention GPU comparison on {device.Name} ({device.Backend}), {QuickComparison.RuntimeInfo()}");
        if (device.Accelerator is not { } accelerator)
        {
            Console.WriteLine("No GPU on this machine: AttentionDevice picked the SIMD CPU kernels, which `-- --quick` measures. Nothing to do.");
            return 1;
        }

        string? peakArgument = CommandLine.Argument(args, "--peak-tflops");
        double? peak = peakArgument is null ? Fp32PeakTflops(accelerator) : double.Parse(peakArgument, CultureInfo.InvariantCulture);
        Console.WriteLine(peak is { } p ? $"fp32 FMA peak: {p:F1} TFLOP/s{(peakArgument is null ? " (SMs x FP32 lanes x 2 x clock)" : " (--peak-tflops)")}" : "fp32 peak unknown for this device: pass --peak-tflops X for the % column");
        Console.WriteLine($"fp32, n = {seqLen}; tensors stay on the device; {launches} timed launches after a warm-up (which compiles the kernel), each + Synchronize.");
        Console.WriteLine("TFLOP/s = visible pairs x 4 x HeadDim / s (the median launch); error = max |GPU - reference| over sampled rows.");
        Console.WriteLine();
        Console.WriteLine($"{"case",-20} {"heads",7} {"pairs",16} {"median ms",10} {"best ms",9} {"TFLOP/s",8} {"% peak",7} {"error",9}");

        bool allCorrect = true;
        foreach (GpuCase gpuCase in Cases)
        {
            var shape = new AttentionShape(gpuCase.Heads, gpuCase.KvHeads, seqLen);
            var inputs = new CaseInputs(shape, gpuCase.HeadDim);
            using MemoryBuffer1D<float, Stride1D.Dense> query = accelerator.Allocate1D(inputs.Query);
            using MemoryBuffer1D<float, Stride1D.Dense> key = accelerator.Allocate1D(inputs.Key);
            using MemoryBuffer1D<float, Stride1D.Dense> value = accelerator.Allocate1D(inputs.Value);
            using MemoryBuffer1D<float, Stride1D.Dense> output = accelerator.Allocate1D<float>(inputs.Output.Length);
            void Launch()
            {
                gpuCase.Forward(accelerator, query.View, key.View, value.View, output.View, shape, AttentionOptions.Default);
                accelerator.Synchronize();
            }

            Launch();
            double[] times = Enumerable.Range(0, launches).Select(_ =>
            {
                long start = Stopwatch.GetTimestamp();
                Launch();
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }).Order().ToArray();
            double median = times[times.Length / 2], best = times[0];

            output.View.CopyToCPU(inputs.Output);
            double error = inputs.MaxErrorOnSampledRows(gpuCase.Pattern, shape, gpuCase.HeadDim, inputs.Output);
            allCorrect &= error <= Tolerance;

            long pairs = gpuCase.Pattern.VisiblePairs(seqLen, shape.Heads);
            double tflops = pairs * 4.0 * gpuCase.HeadDim / (median / 1e3) / 1e12;
            string share = peak is { } peakTflops ? (100 * tflops / peakTflops).ToString("F1") + "%" : "";
            Console.WriteLine($"{gpuCase.Name,-20} {gpuCase.Heads + "/" + gpuCase.KvHeads,7} {pairs,16:N0} {median,10:F3} {best,9:F3} {tflops,8:F2} {share,7} {error,9:E1}{(error <= Tolerance ? "" : "  WRONG")}");
        }

        allCorrect &= DecodeOnDevice(device, accelerator, args, launches);
        Console.WriteLine();
        Console.WriteLine(allCorrect ? "every result matches the reference on sampled rows (|error| <= 1e-4)" : "SOME RESULTS DO NOT MATCH THE REFERENCE");
        return allCorrect ? 0 : 1;
    }

    /// <summary>Decode steps from position 65,536 in the Mistral shape (32 heads, 8 KV heads, HeadDim 128, window 4096) on the device.</summary>
    private static bool DecodeOnDevice(AttentionDevice device, Accelerator accelerator, string[] args, int launches)
    {
        const int Heads = 32, KvHeads = 8, HeadDim = 128, Tokens = 65536, Chunk = 4096;
        var random = new Random(5);
        float[] Fill(int length) => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 3 - 1.5)).ToArray();
        float[] keys = Fill(Chunk * KvHeads * HeadDim), values = Fill(Chunk * KvHeads * HeadDim), query = Fill(Heads * HeadDim);
        using DeviceKvCache cache = Window4096HeadDim128.CreateCache(device, KvHeads);
        KvCache hostCache = Window4096HeadDim128.CreateCache(KvHeads);
        for (int appended = 0; appended < Tokens; appended += Chunk)
        {
            cache.Append(keys, values);
            hostCache.Append(keys, values);
        }

        using MemoryBuffer1D<float, Stride1D.Dense> queryView = accelerator.Allocate1D(query);
        using MemoryBuffer1D<float, Stride1D.Dense> outputView = accelerator.Allocate1D<float>(query.Length);
        // A step as in generation: the new token's key and value, already on the device (a projection's output), are
        // appended, then the token is decoded; the host cache takes the same token for the check.
        float[] tokenKey = keys.AsSpan(0, KvHeads * HeadDim).ToArray(), tokenValue = values.AsSpan(0, KvHeads * HeadDim).ToArray();
        using MemoryBuffer1D<float, Stride1D.Dense> keyRow = accelerator.Allocate1D(tokenKey);
        using MemoryBuffer1D<float, Stride1D.Dense> valueRow = accelerator.Allocate1D(tokenValue);
        void Step()
        {
            cache.Append(keyRow.View, valueRow.View);
            hostCache.Append(tokenKey, tokenValue);
            Window4096HeadDim128.Decode(queryView.View, cache, outputView.View);
            accelerator.Synchronize();
        }

        Step();
        double[] times = Enumerable.Range(0, launches).Select(_ =>
        {
            long start = Stopwatch.GetTimestamp();
            Step();
            return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }).Order().ToArray();
        double median = times[times.Length / 2];

        // Where a step's time goes: the append (its scatter launch) and the decode each to a Synchronize, and the decode
        // call's own host time (table, launches queued) before it.
        double Median(Func<double> measure) => AlternatingRounds.Quantile(Enumerable.Range(0, launches).Select(_ => measure()).ToArray(), 0.5);
        double Time(Action action)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            return Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        double appendUs = Median(() =>
        {
            double us = Time(() => { cache.Append(keyRow.View, valueRow.View); accelerator.Synchronize(); });
            hostCache.Append(tokenKey, tokenValue);
            return us;
        });
        double decodeUs = Median(() => Time(() => { Window4096HeadDim128.Decode(queryView.View, cache, outputView.View); accelerator.Synchronize(); }));
        double hostUs = Median(() =>
        {
            double us = Time(() => Window4096HeadDim128.Decode(queryView.View, cache, outputView.View));
            accelerator.Synchronize();
            return us;
        });

        var expected = new float[query.Length];
        Window4096HeadDim128.Decode(query, hostCache, expected);
        float[] actual = outputView.GetAsArray1D();
        double error = expected.Zip(actual, (e, a) => Math.Abs((double)e - a)).Max();

        double bytes = 2.0 * KvHeads * cache.RingSlots * HeadDim * sizeof(float);
        double gbs = bytes / (median / 1e3) / 1e9;
        string? peakArgument = CommandLine.Argument(args, "--peak-gbs");
        double? peak = peakArgument is not null ? double.Parse(peakArgument, CultureInfo.InvariantCulture)
            : accelerator is CudaAccelerator cuda ? 2.0 * cuda.MemoryClockRate * 1e6 * cuda.MemoryBusWidth / 8 / 1e9 : null;
        Console.WriteLine();
        Console.WriteLine($"decode on the device, Mistral shape (32/8 heads, HeadDim 128, window 4096) from position {Tokens}: {bytes / 1e6:F1} MB of K+V per token; a step appends the token (on the device) and decodes it");
        Console.WriteLine($"{"case",-20} {"median us",10} {"best us",9} {"GB/s",8} {"% mem bw",9} {"error",9}");
        string share = peak is { } p ? (100 * gbs / p).ToString("F1") + "%" : "";
        Console.WriteLine($"{"decode-mistral-64k",-20} {median * 1e3,10:F1} {times[0] * 1e3,9:F1} {gbs,8:F1} {share,9} {error,9:E1}{(error <= Tolerance ? "" : "  WRONG")}");
        Console.WriteLine($"step phases (medians): append + synchronize {appendUs:F1} us; decode + synchronize {decodeUs:F1} us, of which the call's host time {hostUs:F1} us");
        if (peak is { } bandwidth)
        {
            Console.WriteLine($"memory bandwidth: {bandwidth:F0} GB/s{(peakArgument is null ? " (2 x memory clock x bus width)" : " (--peak-gbs)")}");
        }

        return error <= Tolerance;
    }

    /// <summary>
    /// SMs x FP32 lanes per SM x 2 (an FMA is two FLOPs) x the clock, for CUDA devices whose lanes per SM are known:
    /// 64 on sm_60/sm_70/sm_80 (A100), 128 on sm_61, sm_75 (64), sm_86, sm_89 and sm_90 (H100/H200).
    /// </summary>
    private static double? Fp32PeakTflops(Accelerator accelerator)
    {
        if (accelerator is not CudaAccelerator cuda)
        {
            return null;
        }

        int lanes = (cuda.Architecture.Major, cuda.Architecture.Minor) switch
        {
            (6, 0) or (7, 0) or (7, 5) or (8, 0) => 64,
            (6, 1) or (8, 6) or (8, 7) or (8, 9) or (9, 0) => 128,
            _ => 0,
        };
        // ILGPU gives the clocks in MHz (the driver's kHz over 1000): the H200 read 1,980 and 3,201. Taken for kHz they put
        // its peak at 0.07 TFLOP/s and its memory at 5 GB/s.
        return lanes == 0 ? null : accelerator.NumMultiprocessors * lanes * 2.0 * cuda.ClockRate * 1e6 / 1e12;
    }
}
