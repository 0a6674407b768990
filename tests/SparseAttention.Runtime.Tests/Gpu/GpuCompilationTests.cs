using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// Every generated kernel compiles with ILGPU's PTX (<see cref="PtxShapeTests"/>) and OpenCL backends, which need no GPU:
/// a kernel that uses something a GPU backend lacks (MathF.Exp on PTX, a managed call, an allocation, a warp shuffle on
/// OpenCL) fails here, not on a user's GPU.
/// </summary>
public class GpuCompilationTests
{
    private static EntryPointDescription EntryPoint(string name, AcceleratorType acceleratorType) =>
        EntryPointDescription.FromExplicitlyGroupedKernel(KernelMethod(name, acceleratorType));

    /// <summary>The kernel method behind the generated class's private <c>Gpu</c> field, as <paramref name="acceleratorType"/> runs it.</summary>
    private static MethodInfo KernelMethod(string name, AcceleratorType acceleratorType) => Kernel(name).MethodFor(acceleratorType);

    /// <summary>
    /// One declaration per distinct ILGPU kernel among the declared kernels and those with score modifiers: the shared
    /// kernel of each HeadDim, and each declaration's own kernel where a mask or score mod is compiled in.
    /// </summary>
    public static IEnumerable<string> DistinctKernelNames() =>
        DeclaredKernels.All.Select(kernel => kernel.Name)
            .Concat(ScoreModifierKernels.All.Select(kernel => kernel.Name))
            .Append(nameof(PackedDocumentsLayer)).Append(nameof(ScoreModReturningNaN))
            .DistinctBy(Kernel);

    public static TheoryData<string> Names()
    {
        var names = new TheoryData<string>();
        foreach (string name in DistinctKernelNames())
        {
            names.Add(name);
        }

        return names;
    }

    /// <summary>The <c>GpuAttentionKernel</c> behind a generated class's private <c>Gpu</c> field.</summary>
    internal static SparseAttention.Gpu.GpuAttentionKernel Kernel(string name)
    {
        Type type = typeof(DeclaredKernels).Assembly.GetType(typeof(DeclaredKernels).Namespace + "." + name, throwOnError: true)!;
        return (SparseAttention.Gpu.GpuAttentionKernel)type.GetField("Gpu", BindingFlags.NonPublic | BindingFlags.Static)!.GetValue(null)!;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CompilesToOpenCLC(string name)
    {
        using var context = Context.Create(builder => builder.CPU().Arrays(ArrayMode.InlineMutableStaticArrays));
        // No sub-groups: the OpenCL form reduces across lanes through shared memory (SharedMemoryRowSets).
        using var backend = new CLBackend(context, new CLCapabilityContext(false, false, false, false, false), CLDeviceVendor.Nvidia, CLCVersion.CL20);
        var kernel = (CLCompiledKernel)backend.Compile(EntryPoint(name, AcceleratorType.OpenCL), default);
        Assert.Contains("kernel void", kernel.Source);
        Assert.Contains("work_group_barrier", kernel.Source);
        Assert.Contains("local float", kernel.Source); // the shared-memory tiles
    }

    [Fact]
    public void TheMergeOfLongRowPartsCompilesToPtxAndOpenCLC()
    {
        // GpuPartialMerge runs after every launch whose tile table splits long rows (global tokens' rows).
        MethodInfo method = typeof(SparseAttention.Gpu.GpuPartialMerge).GetMethod("MergeRows", BindingFlags.NonPublic | BindingFlags.Static)!;
        using var context = Context.Create(builder => builder.CPU());
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);
        string assembly = ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), default)).PTXAssembly;
        Assert.Contains(".entry", assembly);
        Assert.Contains("ex2.approx", assembly);
        Assert.DoesNotContain("ld.local", assembly);
        using var openCl = new CLBackend(context, new CLCapabilityContext(false, false, false, false, false), CLDeviceVendor.Nvidia, CLCVersion.CL20);
        Assert.Contains("kernel void", ((CLCompiledKernel)openCl.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), default)).Source);
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
