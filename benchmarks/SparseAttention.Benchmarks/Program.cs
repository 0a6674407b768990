using BenchmarkDotNet.Running;
using SparseAttention.Benchmarks;

// `-- --quick`: the one-process comparison (FMA peak, generated kernels, dense, TensorPrimitives, ONNX Runtime).
// `-- --gpu`: the generated ILGPU kernels on the GPU AttentionDevice picks (CUDA, then OpenCL).
// `-- --gpu-ptx [DIR]`: the PTX of the standard patterns' ILGPU kernels for sm_80 and sm_90, with its figures (no GPU needed).
// `-- --decode`: streaming decode with a rolling KV cache at positions 8K, 64K and 1M, and prefill vs Forward.
// `-- --decode-narrow`: Half and BFloat16 KV caches against fp32 at 64K, and batched decode of 16 streams (`--isa X` forces a width).
// `-- --natten`: 2-D neighbourhood attention against the 1-D window with the same keys per row (issue 18's table).
// `-- --before-after OTHER/SparseAttention.Benchmarks.dll`: this build against another, loaded side by side, in
// alternating rounds (the before/after table of a refactor).
// `-- --versus a:b,c:d`: the GFLOP/s ratio of case a to case b (the issue targets), timed in alternating rounds.
// Anything else goes to BenchmarkDotNet, e.g. `-- --filter '*'`.
if (args.Contains("--quick"))
{
    return QuickComparison.Run(args);
}

if (args.Contains("--decode-narrow"))
{
    return NarrowDecodeComparison.Run(args);
}

if (args.Contains("--decode"))
{
    return DecodeComparison.Run(args);
}

if (args.Contains("--gpu-ptx"))
{
    return GpuPtxDump.Run(args);
}

if (args.Contains("--gpu"))
{
    return GpuComparison.Run(args);
}

if (args.Contains("--natten"))
{
    return NeighborhoodComparison.Run(args);
}

if (args.Contains("--before-after"))
{
    return BeforeAfterComparison.Run(args);
}

if (args.Contains("--versus"))
{
    return VersusComparison.Run(args);
}

BenchmarkSwitcher.FromAssembly(typeof(StandardCaseBenchmarks).Assembly).Run(args);
return 0;
