using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>One ILGPU CPU accelerator for the whole test run: a context and its kernel compilations are costly.</summary>
public sealed class IlgpuCpuDevice : IDisposable
{
    public AttentionDevice Device { get; } = AttentionDevice.Create(AttentionBackend.IlgpuCpu);

    public void Dispose() => Device.Dispose();
}

[CollectionDefinition(Name)]
public sealed class IlgpuCpuCollection : ICollectionFixture<IlgpuCpuDevice>
{
    public const string Name = "ILGPU CPU accelerator";
}

/// <summary>
/// The generated ILGPU kernels on ILGPU's CPU accelerator, which runs the same kernel code as a GPU (groups,
/// shared memory, barriers; 16 threads per group here) without one.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class IlgpuCpuKernelTests(IlgpuCpuDevice fixture)
{
    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void MatchesReferenceOnRandomInputs(string name) => AcceleratorSuite.MatchesReferenceOnRandomInputs(fixture.Device.Accelerator!, name);

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void ExplicitScaleMatchesReference(string name) => AcceleratorSuite.ExplicitScaleMatchesReference(fixture.Device.Accelerator!, name);

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void PoisonInInvisibleKeysDoesNotReachTheRow(string name) => AcceleratorSuite.PoisonInInvisibleKeysDoesNotReachTheRow(fixture.Device.Accelerator!, name);

    [Fact]
    public void SpanOverloadsMatchReference() => AcceleratorSuite.SpanOverloadsMatchReference(fixture.Device);

    [Fact]
    public void ViewsIntoLargerBuffersTouchOnlyTheirElements() => AcceleratorSuite.ViewsIntoLargerBuffersTouchOnlyTheirElements(fixture.Device.Accelerator!);

    [Fact]
    public void GroupsHaveSixteenThreads() =>
        Assert.Equal(16, SparseAttention.Gpu.GpuAttentionKernel.GroupSize(fixture.Device.Accelerator!));

    [Fact]
    public void EveryDeclaredKernelHasAnIlgpuForm() =>
        Assert.All(DeclaredKernels.All, kernel => Assert.NotNull(kernel.OnAccelerator));
}

/// <summary>
/// ILGPU's CPU accelerator configured like an NVIDIA GPU (warps of 32), so groups have the 64 threads a CUDA
/// launch uses: the kernels run with 64-row query tiles as on the GPU, not only the default accelerator's 16.
/// </summary>
public sealed class NvidiaSimulator : IDisposable
{
    private readonly Context _context = Context.Create(builder => builder.CPU(CPUDeviceKind.Nvidia));

    public NvidiaSimulator() => Accelerator = _context.CreateCPUAccelerator(0);

    public Accelerator Accelerator { get; }

    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class NvidiaSimulatorCollection : ICollectionFixture<NvidiaSimulator>
{
    public const string Name = "ILGPU CPU accelerator simulating an NVIDIA GPU";
}

[Collection(NvidiaSimulatorCollection.Name)]
public class NvidiaSimulatorKernelTests(NvidiaSimulator fixture)
{
    [Fact]
    public void GroupsHaveTheCudaLaunchSize() =>
        Assert.Equal(SparseAttention.Gpu.GpuAttentionKernel.PreferredGroupSize, SparseAttention.Gpu.GpuAttentionKernel.GroupSize(fixture.Accelerator));

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void MatchesReferenceOnRandomInputs(string name) => AcceleratorSuite.MatchesReferenceOnRandomInputs(fixture.Accelerator, name);

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void PoisonInInvisibleKeysDoesNotReachTheRow(string name) => AcceleratorSuite.PoisonInInvisibleKeysDoesNotReachTheRow(fixture.Accelerator, name);
}
