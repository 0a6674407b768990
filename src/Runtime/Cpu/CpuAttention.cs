using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Threading.Tasks;

namespace SparseAttention.Cpu;

/// <summary>
/// Runs a generated row kernel over a whole call: pins the inputs, splits (head, block of query rows) work
/// items over the cores, and gives each row its exact key segments from the pattern. Generated
/// <c>Forward</c> methods call this after validating their arguments.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class CpuAttention
{
    /// <summary>Query rows per work item: big enough to amortise scheduling, small enough to balance.</summary>
    internal const int RowsPerWorkItem = 32;

    /// <summary>Below this many (row, key) pairs per call the work runs on the calling thread.</summary>
    private const long ParallelThresholdPairs = 1 << 16;

    /// <summary>
    /// Computes attention for already validated arguments with row kernel <typeparamref name="TKernel"/>.
    /// </summary>
    public static unsafe void Run<TKernel>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
    {
        int blocksPerHead = (shape.SeqLen + RowsPerWorkItem - 1) / RowsPerWorkItem;
        int workItems = shape.Heads * blocksPerHead;
        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output)
        {
            var job = new RowJob<TKernel>(pattern, queryPointer, keyPointer, valuePointer, outputPointer, shape, options.ResolveScale(TKernel.HeadDim), blocksPerHead);
            int threads = options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;
            long roughPairs = (long)shape.Heads * shape.SeqLen * Math.Min(shape.SeqLen, 64);
            if (threads <= 1 || workItems == 1 || roughPairs < ParallelThresholdPairs)
            {
                for (int item = 0; item < workItems; item++)
                {
                    job.Execute(item);
                }
            }
            else
            {
                Parallel.For(0, workItems, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Execute);
            }
        }
    }

    /// <summary>One call's state, shared read-only by the worker threads.</summary>
    private sealed unsafe class RowJob<TKernel>(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, float scale, int blocksPerHead)
        where TKernel : struct, IAttentionRowKernel
    {
        public void Execute(int workItem)
        {
            int headDim = TKernel.HeadDim;
            int head = workItem / blocksPerHead;
            int firstRow = (workItem % blocksPerHead) * RowsPerWorkItem;
            int lastRow = Math.Min(firstRow + RowsPerWorkItem, shape.SeqLen);
            int seqLen = shape.SeqLen;
            long kvOffset = (long)shape.KvHeadOf(head) * seqLen * headDim;
            ref float keys = ref Unsafe.AsRef<float>(key + kvOffset);
            ref float values = ref Unsafe.AsRef<float>(value + kvOffset);
            Span<KeySegment> segments = ThreadScratch.Segments(pattern.MaxSegmentsPerQuery);
            Span<float> scratch = ThreadScratch.Floats(TKernel.ScratchLength);
            for (int row = firstRow; row < lastRow; row++)
            {
                long rowOffset = ((long)head * seqLen + row) * headDim;
                int segmentCount = pattern.GetKeySegments(row, head, seqLen, segments);
                TKernel.ComputeRow(ref Unsafe.AsRef<float>(query + rowOffset), ref keys, ref values, ref Unsafe.AsRef<float>(output + rowOffset), segments.Slice(0, segmentCount), scale, scratch);
            }
        }
    }

    /// <summary>Per-thread buffers, grown on demand and reused, so steady-state rows allocate nothing.</summary>
    private static class ThreadScratch
    {
        [ThreadStatic]
        private static KeySegment[]? t_segments;

        [ThreadStatic]
        private static float[]? t_floats;

        public static Span<KeySegment> Segments(int length)
        {
            if (t_segments is null || t_segments.Length < length)
            {
                t_segments = new KeySegment[length];
            }

            return t_segments;
        }

        public static Span<float> Floats(int length)
        {
            if (t_floats is null || t_floats.Length < length)
            {
                t_floats = new float[length];
            }

            return t_floats.AsSpan(0, length);
        }
    }
}
