using System;
using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Gpu;

/// <summary>
/// Device copies of one call's host spans, for the generated span overloads that run on an accelerator:
/// upload query, key and value, let the kernel run on the views, then download the output and free everything.
/// Callers who run many calls should keep their tensors on the device and use the <see cref="ArrayView{T}"/>
/// overloads instead; this path allocates and copies on every call.
/// </summary>
public sealed class HostTransfer : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _query;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _key;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _value;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _output;

    private HostTransfer(Accelerator accelerator, MemoryBuffer1D<float, Stride1D.Dense>[] buffers)
    {
        _accelerator = accelerator;
        (_query, _key, _value, _output) = (buffers[0], buffers[1], buffers[2], buffers[3]);
    }

    /// <summary>Allocates device buffers for a call and copies the inputs into them.</summary>
    public static HostTransfer Upload(Accelerator accelerator, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, int outputLength)
    {
        AttentionArguments.CheckUsable(accelerator);
        var buffers = new MemoryBuffer1D<float, Stride1D.Dense>[4];
        try
        {
            buffers[0] = Upload(accelerator, query);
            buffers[1] = Upload(accelerator, key);
            buffers[2] = Upload(accelerator, value);
            buffers[3] = accelerator.Allocate1D<float>(outputLength);
            return new HostTransfer(accelerator, buffers);
        }
        catch
        {
            // Out of device memory part-way: free what was allocated before passing the error on.
            foreach (MemoryBuffer1D<float, Stride1D.Dense>? buffer in buffers)
            {
                buffer?.Dispose();
            }

            throw;
        }
    }

    /// <summary>The uploaded query.</summary>
    public ArrayView<float> Query => _query.View;

    /// <summary>The uploaded key.</summary>
    public ArrayView<float> Key => _key.View;

    /// <summary>The uploaded value.</summary>
    public ArrayView<float> Value => _value.View;

    /// <summary>The device output the kernel writes.</summary>
    public ArrayView<float> Output => _output.View;

    /// <summary>
    /// Copies the device output into <paramref name="output"/> once the work queued before it on the default stream
    /// is done (the copy is queued behind it, so one wait covers both).
    /// </summary>
    public void Download(Span<float> output)
    {
        _output.View.CopyToCPU(_accelerator.DefaultStream, output);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>Frees the device buffers.</summary>
    public void Dispose()
    {
        _query.Dispose();
        _key.Dispose();
        _value.Dispose();
        _output.Dispose();
    }

    private static MemoryBuffer1D<float, Stride1D.Dense> Upload(Accelerator accelerator, ReadOnlySpan<float> host)
    {
        MemoryBuffer1D<float, Stride1D.Dense> buffer = accelerator.Allocate1D<float>(host.Length);
        buffer.View.CopyFromCPU(accelerator.DefaultStream, host);
        return buffer;
    }
}
