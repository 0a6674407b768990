using BenchmarkDotNet.Running;
using SparseAttention.Benchmarks;

// `-- --quick`: the one-process comparison (FMA peak, generated kernels, dense, TensorPrimitives, ONNX Runtime).
// `-- --gpu`: the generated ILGPU kernels on the GPU AttentionDevice picks (CUDA, then OpenCL).
// Anything else goes to BenchmarkDotNet, e.g. `-- --filter '*'`.
if (args.Contains("--quick"))
{
    return QuickComparison.Run(args);
}

if (args.Contains("--gpu"))
{
    return GpuComparison.Run(args);
}

BenchmarkSwitcher.FromAssembly(typeof(StandardCaseBenchmarks).Assembly).Run(args);
return 0;
