using System;
using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Gpu;

/// <summary>
/// One <see cref="DeviceKvCache"/>'s decode scratch on its accelerator: the step's tile table and the partial slots its
/// parts write. Grown on demand and reused, so a decode step allocates nothing once the window is full. The table is
/// rebuilt only when the slots the heads see change or positions matter (ALiBi, a mask, a score mod): a full ring of a
/// window is the same table every token, and building it was most of a step (1.4 ms of host work per Mistral token on
/// the H200's host, where the kernel took 64 us). Copies and launches share the default stream, so a refill runs after
/// the launches that read the previous contents.
/// </summary>
internal sealed class DecodeScratch
{
    private MemoryBuffer1D<int, Stride1D.Dense>? _table;
    private MemoryBuffer1D<float, Stride1D.Dense>? _partials;
    private MemoryBuffer1D<float, Stride1D.Dense>? _hostRows;

    // What the uploaded table was built from (when positions did not matter): every head's slots and the call's shape.
    private KeySegment[] _slots = Array.Empty<KeySegment>(), _builtSlots = Array.Empty<KeySegment>();
    private int[] _counts = Array.Empty<int>(), _builtCounts = Array.Empty<int>();
    private int _builtSegments = -1;
    private (int Heads, int KvHeads, int Capacity, int GroupSize, int KeyTile, int TargetBlocks, int HeadDim) _builtShape;
    private (int Length, int BlocksPerHead, int MergeGroupsPerHead) _built;

    /// <summary>Tables built so far (tests: a full ring's steps reuse one).</summary>
    public int TableBuilds { get; private set; }

    /// <summary>
    /// The tile table of the decode step at <paramref name="position"/> (<see cref="GpuTileTable.BuildDecode"/>) on the
    /// accelerator, with its grid width and merge groups per KV head, and partial slots enough for it: the table uploaded
    /// for an earlier step when nothing it depends on has changed, else a new one.
    /// </summary>
    public (ArrayView<int> Table, ArrayView<float> Partials, int BlocksPerHead, int MergeGroupsPerHead) DecodeTable(
        Accelerator accelerator, AttentionPattern pattern, Cpu.SlotMap map, int position, int heads, int kvHeads, int capacity, int groupSize, int keyTile, int targetBlocks, int headDim, bool positionsMatter)
    {
        var shape = (heads, kvHeads, capacity, groupSize, keyTile, targetBlocks, headDim);
        int segments = -1;
        if (!positionsMatter)
        {
            segments = GpuTileTable.DecodeSlots(pattern, map, position, heads, ref _slots, ref _counts);
            if (_table is not null && _partials is not null && segments == _builtSegments && shape == _builtShape
                && _slots.AsSpan(0, segments).SequenceEqual(_builtSlots.AsSpan(0, segments)) && _counts.AsSpan(0, heads).SequenceEqual(_builtCounts.AsSpan(0, heads)))
            {
                return (_table.View.SubView(0, _built.Length), _partials.View, _built.BlocksPerHead, _built.MergeGroupsPerHead);
            }
        }

        int[] table = GpuTileTable.BuildDecode(pattern, map, position, heads, kvHeads, capacity, groupSize, keyTile, targetBlocks, positionsMatter);
        TableBuilds++;
        (ArrayView<int> view, ArrayView<float> partials) = Fill(accelerator, table, GpuPartialMerge.PartialFloats(kvHeads, table[2], headDim));
        _built = (table.Length, table[0], table[1]);
        _builtShape = shape;
        _builtSegments = segments;
        if (segments >= 0)
        {
            // Kept for the next step's comparison: the arrays swap, so neither is copied.
            (_builtSlots, _slots) = (_slots, _builtSlots);
            (_builtCounts, _counts) = (_counts, _builtCounts);
        }

        return (view, partials, _built.BlocksPerHead, _built.MergeGroupsPerHead);
    }

    /// <summary>Two views of <paramref name="floats"/> floats each for a decode called with host spans (its query and output).</summary>
    public (ArrayView<float> Query, ArrayView<float> Output) HostRows(Accelerator accelerator, int floats)
    {
        _hostRows = Ensure(accelerator, _hostRows, 2L * floats);
        return (_hostRows.View.SubView(0, floats), _hostRows.View.SubView(floats, floats));
    }

    /// <summary>Uploads <paramref name="table"/> and returns it and a partial-slot view of at least <paramref name="partialFloats"/> floats.</summary>
    private (ArrayView<int> Table, ArrayView<float> Partials) Fill(Accelerator accelerator, int[] table, long partialFloats)
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
        return accelerator.Allocate1D<T>(Math.Max(1, length + length / 2));
    }

    public void Dispose()
    {
        _table?.Dispose();
        _partials?.Dispose();
        _hostRows?.Dispose();
    }
}
