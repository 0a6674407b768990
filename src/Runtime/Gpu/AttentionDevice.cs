using System;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace SparseAttention;

/// <summary>
/// The machine a generated kernel runs on: a GPU through ILGPU, or the SIMD CPU kernels. Create one per
/// process (creating it enumerates devices and, for a GPU, a driver context) and pass it to the generated
/// <c>Forward(AttentionDevice, ...)</c>. It owns the ILGPU <see cref="Context"/> and <see cref="Accelerator"/>,
/// and disposing it releases both.
/// </summary>
/// <example>
/// <code>
/// using var device = AttentionDevice.Create();          // CUDA, else OpenCL GPU, else CPU SIMD
/// MistralAttention.Forward(device, query, key, value, output, shape);
/// </code>
/// </example>
public sealed class AttentionDevice : IDisposable
{
    private readonly Context? _context;
    private readonly Accelerator? _accelerator;
    private bool _disposed;

    private AttentionDevice(AttentionBackend backend, Context? context, Accelerator? accelerator, string name)
    {
        Backend = backend;
        _context = context;
        _accelerator = accelerator;
        Name = name;
    }

    /// <summary>Where this device runs kernels; never <see cref="AttentionBackend.Auto"/>.</summary>
    public AttentionBackend Backend { get; }

    /// <summary>The ILGPU accelerator, or null when <see cref="Backend"/> is <see cref="AttentionBackend.Cpu"/>.</summary>
    public Accelerator? Accelerator
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _accelerator;
        }
    }

    /// <summary>The device's name, e.g. "NVIDIA H100 80GB HBM3" or "CPU (SIMD kernels, Vector512)".</summary>
    public string Name { get; }

    /// <summary>
    /// Opens <paramref name="backend"/>. <see cref="AttentionBackend.Auto"/> picks CUDA, then an OpenCL GPU, then
    /// the SIMD CPU kernels, and never fails.
    /// </summary>
    /// <exception cref="InvalidOperationException">A named GPU backend has no device on this machine.</exception>
    public static AttentionDevice Create(AttentionBackend backend = AttentionBackend.Auto) => backend switch
    {
        AttentionBackend.Auto => TryCreateCuda() ?? TryCreateOpenCL() ?? CreateCpu(),
        AttentionBackend.Cuda => TryCreateCuda() ?? throw Absent("CUDA", "no NVIDIA GPU with a CUDA driver was found"),
        AttentionBackend.OpenCL => TryCreateOpenCL() ?? throw Absent("OpenCL", "no OpenCL GPU with a driver ILGPU supports was found"),
        AttentionBackend.Cpu => CreateCpu(),
        AttentionBackend.IlgpuCpu => CreateIlgpuCpu(),
        _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown backend."),
    };

    /// <summary>Whether a CUDA device is present: enumerates devices without opening one (cheap enough for a test's skip check).</summary>
    public static bool IsCudaAvailable()
    {
        using Context context = CreateCudaContext();
        return First(context.GetCudaDevices()) is not null;
    }

    /// <summary>Releases the accelerator and the ILGPU context.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _accelerator?.Dispose();
        _context?.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => Name;

    private static AttentionDevice CreateCpu() =>
        new(AttentionBackend.Cpu, null, null, "CPU (SIMD kernels, " + AttentionOptions.Default.ResolveIsa() + ", " + Environment.ProcessorCount + " threads)");

    private static AttentionDevice CreateIlgpuCpu()
    {
        // Created like an NVIDIA GPU (warps of 32, groups up to 1024 threads), the shape the kernel's groups need.
        Context context = CreateContext(builder => builder.CPU(ILGPU.Runtime.CPU.CPUDeviceKind.Nvidia));
        return Open(AttentionBackend.IlgpuCpu, context, context.GetPreferredDevice(preferCPU: true));
    }

    private static AttentionDevice? TryCreateCuda()
    {
        Context context = CreateCudaContext();
        Device? device = First(context.GetCudaDevices());
        return device is null ? Discard(context) : Open(AttentionBackend.Cuda, context, device);
    }

    private static Context CreateCudaContext() => CreateContext(builder => builder.Cuda());

    private static AttentionDevice? TryCreateOpenCL()
    {
        // OpenCL also reports CPUs (e.g. POCL); the SIMD CPU kernels beat an OpenCL CPU, so only GPUs count.
        Context context = CreateContext(builder => builder.OpenCL(device => device.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU));
        Device? device = First(context.GetCLDevices());
        return device is null ? Discard(context) : Open(AttentionBackend.OpenCL, context, device);
    }

    /// <summary>
    /// A context for <paramref name="backend"/> in which a declaration's mask or score mod may read a static array (a
    /// document table, a bias table): ILGPU rejects loads from static arrays unless told to inline their contents, which
    /// it then does once, when the kernel is compiled (docs/design.md §2.4).
    /// </summary>
    internal static Context CreateContext(Action<Context.Builder> backend) =>
        Context.Create(builder =>
        {
            backend(builder);
            builder.Arrays(ArrayMode.InlineMutableStaticArrays);
        });

    private static AttentionDevice Open(AttentionBackend backend, Context context, Device device)
    {
        try
        {
            Accelerator accelerator = device.CreateAccelerator(context);
            return new AttentionDevice(backend, context, accelerator, accelerator.Name);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static Device? First<TDevice>(Context.DeviceCollection<TDevice> devices) where TDevice : Device
    {
        foreach (TDevice device in devices)
        {
            return device;
        }

        return null;
    }

    private static AttentionDevice? Discard(Context context)
    {
        context.Dispose();
        return null;
    }

    private static InvalidOperationException Absent(string backend, string reason) =>
        new($"AttentionBackend.{backend} was requested, but {reason}. Use AttentionBackend.Auto to fall back to the next backend (ending with the SIMD CPU kernels), or AttentionBackend.Cpu.");
}
