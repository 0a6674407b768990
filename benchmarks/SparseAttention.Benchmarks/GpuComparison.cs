using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// The GPU comparison (`-- --gpu`): the standard patterns at n = 16384 (fp32, 8 heads) through their generated
/// ILGPU kernels, with tensors resident on the device. Each result is checked against the reference on sampled
/// rows before it is reported; the baseline is the generated dense causal kernel on the same device in the same run.
/// Options: `--backend Cuda|OpenCL|IlgpuCpu` (default: AttentionDevice's pick), `--seqlen N` (default 16384).
/// </summary>
public static class GpuComparison
{
    private const double Tolerance = 1e-4;

    private delegate void OnAccelerator(Accelerator accelerator, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, AttentionOptions options);

    private sealed record GpuCase(string Name, AttentionPattern Pattern, OnAccelerator Forward, int HeadDim = 64);

    private static readonly GpuCase[] Cases =
    {
        new("causal", DenseCausal.Pattern, DenseCausal.Forward), // first: the baseline of the rows below
        new("swa-w512", Window512.Pattern, Window512.Forward),
        new("swa-w4096", Window4096.Pattern, Window4096.Forward),
        new("lf", Longformer.Pattern, Longformer.Forward),
        new("lf-dil", LongformerDilated.Pattern, LongformerDilated.Forward),
        new("swa-w4096-d32", Window4096HeadDim32.Pattern, Window4096HeadDim32.Forward, 32),
        new("swa-w4096-d128", Window4096HeadDim128.Pattern, Window4096HeadDim128.Forward, 128),
    };

    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string? backendArgument = CommandLine.Argument(args, "--backend");
        AttentionBackend backend = backendArgument is null ? AttentionBackend.Auto : Enum.Parse<AttentionBackend>(backendArgument, ignoreCase: true);
        string? seqLenArgument = CommandLine.Argument(args, "--seqlen");
        int seqLen = seqLenArgument is null ? 16384 : int.Parse(seqLenArgument, CultureInfo.InvariantCulture);

        using AttentionDevice device = AttentionDevice.Create(backend);
        Console.WriteLine($"SparseAttention GPU comparison on {device.Name} ({device.Backend}), {QuickComparison.RuntimeInfo()}");
        if (device.Accelerator is not { } accelerator)
        {
            Console.WriteLine("No GPU on this machine: AttentionDevice picked the SIMD CPU kernels, which `-- --quick` measures. Nothing to do.");
            return 1;
        }

        Console.WriteLine($"fp32, Heads = KvHeads = {StandardCase.Heads}, n = {seqLen}; tensors stay on the device; time = best of several launches + Synchronize after a warm-up (which compiles the kernel).");
        Console.WriteLine("GFLOP/s = visible pairs x 4 x HeadDim / s; 'vs dense' = the generated dense causal kernel's time / this pattern's, same device, same run.");
        Console.WriteLine();
        Console.WriteLine($"{"case",-16} {"pairs",14} {"ms",10} {"GFLOP/s",9} {"vs dense",9} {"error",9}");

        var shape = new AttentionShape(StandardCase.Heads, StandardCase.Heads, seqLen);
        var denseMs = new Dictionary<int, double>();
        bool allCorrect = true;
        foreach (GpuCase gpuCase in Cases)
        {
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

            double ms = QuickComparison.Time(Launch, maxRuns: 10);
            output.View.CopyToCPU(inputs.Output);
            double error = inputs.MaxErrorOnSampledRows(gpuCase.Pattern, shape, gpuCase.HeadDim, inputs.Output);
            allCorrect &= error <= Tolerance;

            if (gpuCase.Pattern.IsDense && gpuCase.HeadDim == 64)
            {
                denseMs[gpuCase.HeadDim] = ms;
            }

            long pairs = gpuCase.Pattern.VisiblePairs(seqLen, shape.Heads);
            double gflops = pairs * 4.0 * gpuCase.HeadDim / (ms / 1e3) / 1e9;
            string versusDense = denseMs.TryGetValue(64, out double dense) && gpuCase.HeadDim == 64 ? (dense / ms).ToString("F2") + "x" : "";
            Console.WriteLine($"{gpuCase.Name,-16} {pairs,14:N0} {ms,10:F2} {gflops,9:F1} {versusDense,9} {error,9:E1}{(error <= Tolerance ? "" : "  WRONG")}");
        }

        Console.WriteLine();
        Console.WriteLine(allCorrect ? "every result matches the reference on sampled rows (|error| <= 1e-4)" : "SOME RESULTS DO NOT MATCH THE REFERENCE");
        return allCorrect ? 0 : 1;
    }
}
