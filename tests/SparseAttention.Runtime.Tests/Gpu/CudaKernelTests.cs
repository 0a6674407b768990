namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// The accelerator suite on a real NVIDIA GPU: <c>dotnet test --filter Category=Gpu</c>. Without a CUDA device
/// every test here is reported as skipped, never as passed.
/// </summary>
[Trait("Category", "Gpu")]
[Collection(CudaCollection.Name)]
public class CudaKernelTests(CudaDevice fixture)
{
    [CudaTheory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void MatchesReferenceOnRandomInputs(string name) => AcceleratorSuite.MatchesReferenceOnRandomInputs(fixture.Accelerator, name);

    [CudaTheory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void ExplicitScaleMatchesReference(string name) => AcceleratorSuite.ExplicitScaleMatchesReference(fixture.Accelerator, name);

    [CudaTheory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void PoisonInInvisibleKeysDoesNotReachTheRow(string name) => AcceleratorSuite.PoisonInInvisibleKeysDoesNotReachTheRow(fixture.Accelerator, name);

    [CudaFact]
    public void SpanOverloadsMatchReference() => AcceleratorSuite.SpanOverloadsMatchReference(fixture.Device);

    [CudaFact]
    public void ViewsIntoLargerBuffersTouchOnlyTheirElements() => AcceleratorSuite.ViewsIntoLargerBuffersTouchOnlyTheirElements(fixture.Accelerator);

    [CudaFact]
    public void AutoPicksCuda()
    {
        using AttentionDevice device = AttentionDevice.Create();
        Assert.Equal(AttentionBackend.Cuda, device.Backend);
    }
}

/// <summary>The CUDA device, opened on first use so that a machine without one never touches the driver.</summary>
public sealed class CudaDevice : IDisposable
{
    private readonly Lazy<AttentionDevice> _device = new(() => AttentionDevice.Create(AttentionBackend.Cuda));

    public AttentionDevice Device => _device.Value;

    public ILGPU.Runtime.Accelerator Accelerator => Device.Accelerator!;

    public void Dispose()
    {
        if (_device.IsValueCreated)
        {
            _device.Value.Dispose();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class CudaCollection : ICollectionFixture<CudaDevice>
{
    public const string Name = "CUDA device";
}

/// <summary>Whether this machine has a CUDA device, asked once per run.</summary>
internal static class CudaPresence
{
    private static readonly Lazy<bool> Available = new(AttentionDevice.IsCudaAvailable);

    public static string? SkipReason => Available.Value ? null : "No CUDA device on this machine (AttentionDevice.IsCudaAvailable() is false); run on an NVIDIA GPU.";
}

/// <summary>A fact that runs only where a CUDA device is present and is reported as skipped elsewhere.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute() => Skip = CudaPresence.SkipReason;
}

/// <summary>A theory that runs only where a CUDA device is present and is reported as skipped elsewhere.</summary>
public sealed class CudaTheoryAttribute : TheoryAttribute
{
    public CudaTheoryAttribute() => Skip = CudaPresence.SkipReason;
}
