using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// Every generated kernel compiles with ILGPU's PTX and OpenCL backends, which need no GPU: a kernel that uses
/// something a GPU backend lacks (MathF.Exp on PTX, a managed call, an allocation) fails here, not on a user's GPU.
/// </summary>
public class GpuCompilationTests
{
    private static EntryPointDescription EntryPoint(string name) =>
        EntryPointDescription.FromExplicitlyGroupedKernel(KernelMethod(name));

    /// <summary>The kernel method behind the generated class's private <c>Gpu</c> field.</summary>
    private static MethodInfo KernelMethod(string name)
    {
        Type type = typeof(DeclaredKernels).Assembly.GetType(typeof(DeclaredKernels).Namespace + "." + name, throwOnError: true)!;
        object kernel = type.GetField("Gpu", BindingFlags.NonPublic | BindingFlags.Static)!.GetValue(null)!;
        return ((SparseAttention.Gpu.GpuAttentionKernel)kernel).Method;
    }

    /// <summary>The declared kernels, and those with score modifiers: a mask or score mod is compiled into its declaration's own kernel.</summary>
    public static TheoryData<string> Names()
    {
        TheoryData<string> names = DeclaredKernels.Names();
        foreach (string name in ScoreModifierKernels.All.Select(kernel => kernel.Name).Append(nameof(PackedDocumentsLayer)).Append(nameof(ScoreModReturningNaN)))
        {
            names.Add(name);
        }

        return names;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CompilesToPtxForSm80(string name)
    {
        using var context = Context.Create(builder => builder.CPU().Arrays(ArrayMode.InlineMutableStaticArrays));
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);
        var kernel = (PTXCompiledKernel)backend.Compile(EntryPoint(name), default);
        Assert.Contains(".entry", kernel.PTXAssembly);
        Assert.Contains("bar.sync", kernel.PTXAssembly); // the barriers around each shared-memory tile
        Assert.Contains(".shared", kernel.PTXAssembly);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CompilesToOpenCLC(string name)
    {
        using var context = Context.Create(builder => builder.CPU().Arrays(ArrayMode.InlineMutableStaticArrays));
        using var backend = new CLBackend(context, new CLCapabilityContext(false, false, false, false, false), CLDeviceVendor.Nvidia, CLCVersion.CL20);
        var kernel = (CLCompiledKernel)backend.Compile(EntryPoint(name), default);
        Assert.Contains("kernel void", kernel.Source);
        Assert.Contains("work_group_barrier", kernel.Source);
        Assert.Contains("local float", kernel.Source); // the shared-memory tiles
    }

    [Theory]
    [InlineData("WidenHalfKernel")]
    [InlineData("WidenBFloat16Kernel")]
    [InlineData("NarrowHalfKernel")]
    [InlineData("NarrowBFloat16Kernel")]
    public void TheElementConversionKernelsCompileToPtx(string name)
    {
        // The Half / BFloat16 views' device conversions (GpuStagedForward) are plain kernels: they must compile for a GPU too.
        MethodInfo method = typeof(SparseAttention.Gpu.GpuStagedForward).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!;
        using var context = Context.Create(builder => builder.CPU());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);
        var kernel = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(method), default);
        Assert.Contains(".entry", kernel.PTXAssembly);
    }
}
