using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Gpu;

/// <summary>
/// One <see cref="DeviceKvCache"/>'s decode scratch on its accelerator: the step's tile table (rebuilt every token, as the
/// ring moves) and the partial slots its parts write. Grown on demand and reused, so a decode step allocates nothing once
/// the window is full. Copies and launches share the default stream, so a refill runs after the launches that read the
/// previous contents.
/// </summary>
internal sealed class DecodeScratch
{
    private MemoryBuffer1D<int, Stride1D.Dense>? _table;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;
    private MemoryBuffer1D<float, Stride1D.Dense>? _hostRows;

    /// <summary>Two views of <paramref name="floats"/> floats each for a decode called with host spans (its query and output).</summary>
    public (ArrayView<float> Query, ArrayView<float> Output) HostRows(Accelerator accelerator, int floats)
    {
        _hostRows = Ensure(accelerator, _hostRows, 2L * floats);
        return (_hostRows.View.SubView(0, floats), _hostRows.View.SubView(floats, floats));
    }

    /// <summary>Uploads <paramref name="table"/> and returns it and a partial-slot view of at least <paramref name="partialFloats"/> floats.</summary>
    public (ArrayView<int> Table, ArrayView<float> Partials) Fill(Accelerator accelerator, int[] table, long partialFloats)
    {
        _table = Ensure(accelerator, _table, table.Length);
        _partials = Ensure(accelerator, _partials, partialFloats);
        ArrayView<int> view = _table.View.SubView(0, table.Length);
        view.CopyFromCPU(table);
        return (view, _partials.View);
    }

    private static MemoryBuffer1D<T, Stride1D.Dense> Ensure<T>(Accelerator accelerator, MemoryBuffer1D<T, Stride1D.Dense>? buffer, long length)
        where T : unmanaged
    {
        if (buffer is not null && buffer.Length >= length)
        {
            return buffer;
        }

        // Launches still queued may read the old buffer; half again as large, so a slowly growing table reallocates rarely.
        accelerator.Synchronize();
        buffer?.Dispose();
        return accelerator.Allocate1D<T>(System.Math.Max(1, length + length / 2));
    }

    public void Dispose()
    {
        _table?.Dispose();
        _partials?.Dispose();
        _hostRows?.Dispose();
    }
}
