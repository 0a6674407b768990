using System.Globalization;
using System.Reflection;
using ILGPU.Runtime.Cuda;
using SparseAttention.Gpu;
using SparseAttention.Testing;

namespace SparseAttention.Benchmarks;

/// <summary>
/// `-- --gpu-ptx [DIR]`: the PTX of the standard patterns' ILGPU kernels for sm_80 and sm_90, written to DIR (default
/// gpu-ptx/) for reading, with the figures the PTX tests check: local-memory traffic (must be none), multiply-adds per
/// shared load, shared memory. Needs no GPU: ILGPU's PTX backend runs on the CPU. Registers per thread are not in PTX
/// (ptxas allocates them): run `ptxas -arch=sm_90 -v FILE.ptx` where the CUDA toolkit is installed.
/// </summary>
public static class GpuPtxDump
{
    private static readonly Type[] Declarations =
    {
        typeof(Window4096HeadDim32), typeof(Window4096), typeof(Window4096HeadDim128), typeof(DenseCausal), typeof(Longformer), typeof(LongformerDilated),
    };

    public static int Run(string[] args)
    {
        string folder = CommandLine.Argument(args, "--gpu-ptx") is { } named && !named.StartsWith("--", StringComparison.Ordinal) ? named : "gpu-ptx";
        Directory.CreateDirectory(folder);
        Console.WriteLine($"PTX of the generated ILGPU kernels (ILGPU's PTX backend, no GPU needed) in {Path.GetFullPath(folder)}:");
        foreach (Type declaration in Declarations)
        {
            var kernel = (GpuAttentionKernel)declaration.GetField("Gpu", BindingFlags.NonPublic | BindingFlags.Static)!.GetValue(null)!;
            int headDim = (int)declaration.GetField("HeadDim")!.GetValue(null)!;
            foreach ((CudaArchitecture architecture, string name) in new[] { (CudaArchitecture.SM_80, "sm_80"), (CudaArchitecture.SM_90, "sm_90") })
            {
                string ptx = kernel.CompileToPtx(architecture);
                string file = Path.Combine(folder, string.Create(CultureInfo.InvariantCulture, $"{declaration.Name}.{name}.ptx"));
                File.WriteAllText(file, ptx);
                Console.WriteLine($"  HeadDim {headDim,3}, key tile {kernel.KeyTile}: {PtxFigures.Of(declaration.Name, name, ptx)}");
            }
        }

        return 0;
    }
}
