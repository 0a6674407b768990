using BenchmarkDotNet.Running;
using SparseAttention.Benchmarks;

// `-- --quick`: the one-process comparison (FMA peak, generated kernels, dense, TensorPrimitives, ONNX Runtime).
// Anything else goes to BenchmarkDotNet, e.g. `-- --filter '*'`.
if (args.Contains("--quick"))
{
    return QuickComparison.Run(args);
}

BenchmarkSwitcher.FromAssembly(typeof(StandardCaseBenchmarks).Assembly).Run(args);
return 0;
