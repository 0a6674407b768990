using ILGPU.Runtime;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>Backend selection, ownership and the messages a caller sees when a backend is missing.</summary>
[Collection(IlgpuCpuCollection.Name)]
public class AttentionDeviceTests
{
    [Fact]
    public void AutoPicksCudaElseFallsBack()
    {
        using AttentionDevice device = AttentionDevice.Create();
        if (AttentionDevice.IsCudaAvailable())
        {
            Assert.Equal(AttentionBackend.Cuda, device.Backend);
            return;
        }

        // Here (no GPU): the SIMD CPU kernels, unless an OpenCL GPU is present.
        Assert.True(device.Backend is AttentionBackend.Cpu or AttentionBackend.OpenCL, $"picked {device.Backend}");
        if (device.Backend == AttentionBackend.Cpu)
        {
            Assert.Null(device.Accelerator);
            Assert.StartsWith("CPU (SIMD kernels", device.Name);
        }
    }

    [Fact]
    public void TheCpuDeviceRunsTheSimdKernels()
    {
        using AttentionDevice device = AttentionDevice.Create(AttentionBackend.Cpu);
        var random = new Random(1);
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 70);
        Testing.AttentionCheck.Inputs inputs = Testing.AttentionCheck.RandomInputs(random, shape, PerHeadDilation.HeadDim);
        float[] expected = Testing.AttentionCheck.Reference(DeclaredKernels.Get(nameof(PerHeadDilation)), inputs);
        float[] actual = new float[expected.Length];
        PerHeadDilation.Forward(device, inputs.Query, inputs.Key, inputs.Value, actual, shape);
        Testing.AttentionCheck.AssertClose(expected, actual, shape, PerHeadDilation.HeadDim, "Forward(Cpu device)");
    }

    [Fact]
    public void IlgpuCpuDeviceOwnsItsAcceleratorAndDisposesIt()
    {
        AttentionDevice device = AttentionDevice.Create(AttentionBackend.IlgpuCpu);
        Accelerator accelerator = device.Accelerator!;
        Assert.Equal(AcceleratorType.CPU, accelerator.AcceleratorType);
        Assert.Equal(AttentionBackend.IlgpuCpu, device.Backend);
        device.Dispose();
        Assert.True(accelerator.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => device.Accelerator);
        device.Dispose(); // twice is harmless
    }

    [Theory]
    [InlineData(AttentionBackend.Cuda, "CUDA")]
    [InlineData(AttentionBackend.OpenCL, "OpenCL")]
    public void NamingAnAbsentBackendSaysWhatIsMissingAndWhatToDo(AttentionBackend backend, string name)
    {
        AttentionDevice? present = null;
        try
        {
            present = AttentionDevice.Create(backend);
        }
        catch (InvalidOperationException error)
        {
            Assert.Contains("AttentionBackend." + name + " was requested", error.Message);
            Assert.Contains("AttentionBackend.Auto", error.Message);
            return;
        }

        // The backend exists on this machine (a CUDA GPU, or an OpenCL one): then the request must be honoured.
        using (present)
        {
            Assert.Equal(backend, present.Backend);
        }
    }

    [Fact]
    public void UnknownBackendIsAnArgumentError()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => AttentionDevice.Create((AttentionBackend)42));
        Assert.Equal("backend", error.ParamName);
    }
}
