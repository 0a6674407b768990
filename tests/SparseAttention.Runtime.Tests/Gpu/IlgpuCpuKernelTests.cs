namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>One ILGPU CPU accelerator for the whole test run: a context and its kernel compilations are costly.</summary>
public sealed class IlgpuCpuDevice : IDisposable
{
    public AttentionDevice Device { get; } = AttentionDevice.Create(AttentionBackend.IlgpuCpu);

    public void Dispose() => Device.Dispose();
}

/// <summary>
/// Every test that runs ILGPU's CPU accelerator. It emulates a group with 128 threads that meet at every barrier and
/// shuffle, which is slow when other tests compete for the cores (measured: the same calls 10-30x slower), so the
/// collection runs alone, after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class IlgpuCpuCollection : ICollectionFixture<IlgpuCpuDevice>
{
    public const string Name = "ILGPU CPU accelerator";
}

/// <summary>
/// The generated ILGPU kernels on ILGPU's CPU accelerator, which runs the same kernel code as a GPU (groups, shared
/// memory, barriers, warp shuffles; created like an NVIDIA GPU, with warps of 32) without one.
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
    public void TheAcceleratorIsShapedLikeAGpu()
    {
        Assert.Equal(32, fixture.Device.Accelerator!.WarpSize);
        Assert.True(fixture.Device.Accelerator.MaxNumThreadsPerGroup >= 128);
    }

    [Fact]
    public void EveryDeclaredKernelHasAnIlgpuForm() =>
        Assert.All(DeclaredKernels.All, kernel => Assert.NotNull(kernel.OnAccelerator));
}
