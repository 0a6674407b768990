using System;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Gpu;

/// <summary>
/// The second launch of a call whose tile table splits long rows into parts (<see cref="GpuTileTable"/>): each part wrote
/// its rows' normalised outputs and base-2 log-sum-exps to partial slots; this combines a row's parts by their
/// log-sum-exps (the rule of <see cref="AttentionMerge"/>), adds a learned sink once, and writes the row and its
/// log-sum-exp over what the row's ordinary block wrote. It runs after the attention launch on the same stream.
/// </summary>
/// <remarks>
/// Partial slots, one buffer: outputs [grid heads, SlotsPerHead, HeadDim], then base-2 log-sum-exps [grid heads, SlotsPerHead]
/// (<see cref="PartialFloats"/>). A part's row that saw no key holds zeros and -inf; a row a part found poisoned (§4's
/// NaN policy) holds NaN, which makes the merged row NaN. Not a generated kernel: it knows no pattern and no HeadDim at
/// compile time. A row's elements are split over the group's second dimension (<see cref="ElementLanes"/> threads a row),
/// each thread summing its elements over the parts in a register: with one thread a row adding every part into the output
/// in memory, decode's merge (32 parts, HeadDim 128) took 242 us on an H200, four times its attention launch.
/// </remarks>
public static class GpuPartialMerge
{
    private static readonly ConditionalWeakTable<Accelerator, Action<KernelConfig, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments, int>> Loaded = new();

    /// <summary>Floats of the partial-slot buffer for <paramref name="heads"/> grid heads of <paramref name="slotsPerHead"/> slots.</summary>
    public static long PartialFloats(int heads, int slotsPerHead, int headDim) => (long)heads * slotsPerHead * (headDim + 1);

    /// <summary>
    /// Threads per row: a warp's worth on a GPU, fewer where a group of that many rows would pass 1,024 threads. Two on
    /// ILGPU's CPU accelerator, which runs every thread of a group as its own .NET thread: 32 made the test suite's ILGPU
    /// tests twice as long, and two still run the split.
    /// </summary>
    private static int ElementLanes(Accelerator accelerator, int rowsPerGroup) =>
        accelerator.AcceleratorType == AcceleratorType.CPU ? 2 : Math.Max(1, Math.Min(32, 1024 / Math.Max(1, rowsPerGroup)));

    /// <summary>
    /// Queues the merge of every merge group of <paramref name="tiles"/> (a table with merge groups; <paramref name="mergeGroupsPerHead"/>
    /// is its [1]) for <paramref name="gridHeads"/> heads (the attention launch's: query heads, or KV heads in decode) into
    /// <paramref name="output"/> and, when the arguments ask, <paramref name="logSumExp"/>.
    /// </summary>
    internal static void Launch(
        Accelerator accelerator, int mergeGroupsPerHead, int gridHeads, int threadsPerGroup, ArrayView<int> tiles, ArrayView<float> partials, ArrayView<float> output,
        ArrayView<float> perHead, ArrayView<float> logSumExp, GpuAttentionArguments arguments, int headDim)
    {
        var launcher = Loaded.GetValue(accelerator, a => a.LoadStreamKernel<ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments, int>(MergeRows));
        launcher(new KernelConfig(new Index2D(mergeGroupsPerHead, gridHeads), new Index2D(threadsPerGroup, ElementLanes(accelerator, threadsPerGroup))), tiles, partials, output, perHead, logSumExp, arguments, headDim);
    }

    /// <summary>A group per (merge group, head); a row of the group per first index, its elements split over the second.</summary>
    private static void MergeRows(ArrayView<int> tiles, ArrayView<float> partials, ArrayView<float> output, ArrayView<float> perHead, ArrayView<float> logSumExp, GpuAttentionArguments arguments, int headDim)
    {
        int head = Grid.IdxY, row = Group.IdxX, lane = Group.IdxY, lanes = Group.DimY;
        int groupsPerHead = tiles[1], slotsPerHead = tiles[2];
        int merge = GpuTileTable.MergeHeaderOf(head, Grid.IdxX, tiles[3], groupsPerHead);
        int rowList = tiles[merge], rowCount = tiles[merge + 1], firstSlot = tiles[merge + 2], parts = tiles[merge + 3];
        if (row >= rowCount)
        {
            return;
        }

        long slotBase = (long)head * slotsPerHead + firstSlot + row;
        long lseBase = (long)Grid.DimY * slotsPerHead * headDim;
        int outputRow = tiles[rowList + row];
        // In decode the grid's heads are KV heads and the rows their query heads (GpuAttentionArguments.RowsAreHeads).
        int queryHead = arguments.RowsAreHeads != 0 ? head * arguments.QueryRows + outputRow : head;
        float max = float.NegativeInfinity;
        bool poisoned = false;
        for (int p = 0; p < parts; p++)
        {
            float partLse = partials[lseBase + slotBase + (long)p * rowCount];
            poisoned |= float.IsNaN(partLse);
            max = partLse > max ? partLse : max;
        }

        long outputAt = ((long)head * arguments.QueryRows + outputRow) * headDim;
        if (poisoned || max == float.NegativeInfinity)
        {
            // A row no part saw a key for is zeros and -inf, a poisoned one NaN, as one launch over all keys writes them.
            for (int d = lane; d < headDim; d += lanes)
            {
                output[outputAt + d] = poisoned ? float.NaN : 0f;
            }

            if (lane == 0)
            {
                WriteLogSumExp(logSumExp, arguments, head, outputRow, poisoned ? float.NaN : float.NegativeInfinity);
            }

            return;
        }

        float denominator = 0f;
        for (int p = 0; p < parts; p++)
        {
            denominator += GpuMath.Exp2(partials[lseBase + slotBase + (long)p * rowCount] - max);
        }

        if (arguments.Sinks != 0)
        {
            // The sink joins the denominator once, with no value (natural units in perHead).
            denominator += GpuMath.Exp2(perHead[arguments.Heads + queryHead] * 1.44269504088896341f - max);
        }

        for (int d = lane; d < headDim; d += lanes)
        {
            float sum = 0f;
            for (int p = 0; p < parts; p++)
            {
                long slot = slotBase + (long)p * rowCount;
                float weight = GpuMath.Exp2(partials[lseBase + slot] - max) / denominator;
                sum += weight * partials[slot * headDim + d];
            }

            output[outputAt + d] = sum;
        }

        if (lane == 0)
        {
            WriteLogSumExp(logSumExp, arguments, head, outputRow, (max + GpuMath.Log2(denominator)) * 0.693147180559945309f);
        }
    }

    private static void WriteLogSumExp(ArrayView<float> logSumExp, GpuAttentionArguments arguments, int head, int row, float value)
    {
        if (arguments.WriteLogSumExp != 0)
        {
            logSumExp[(long)head * arguments.QueryRows + row] = value;
        }
    }
}
