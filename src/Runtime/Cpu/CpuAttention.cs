using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SparseAttention.Cpu;

/// <summary>
/// Runs generated kernels over a whole call. Generated <c>Forward</c> methods call this after validating
/// their arguments. Two schedules:
/// <list type="bullet">
/// <item><see cref="RunTiled{TKernel, TScores}"/>, in passes. Keys are packed into transposed panels, one set per
/// stream step. The window pass gives each (head, residue stream of the dilation, block of query tiles)
/// work item the band (window or dense) through the register-blocked tile kernel. Where the stride runs as
/// tiles too, the strided pass continues each row's state over residue streams of step Stride. The last pass
/// a row sees adds the keys no band covered (global columns, short-stream strided runs) with the row kernel
/// and normalises; global rows are computed whole by the row kernel.</item>
/// <item><see cref="RunRows{TKernel, TScores}"/>: every row runs its exact key segments through the row kernel (the
/// scalar fallback, and patterns with no band, such as global tokens only or short strided streams).</item>
/// </list>
/// Work items go to <see cref="WorkerPool"/>; job objects and scratch are cached per thread, so a call
/// allocates nothing once warm. Kernels run the softmax in base 2: the scale handed to them (and folded into
/// the packed keys) is the softmax scale times log2(e), and probabilities are 2^(score - max).
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static unsafe partial class CpuAttention
{
    /// <summary>Query rows per work item of the row schedule.</summary>
    internal const int RowsPerWorkItem = 32;

    /// <summary>Query rows (about) per work item of the tiled schedule: enough tiles to reuse the keys in cache.</summary>
    internal const int TiledRowsPerWorkItem = 64;

    /// <summary>Rows of a block that go through its key runs together (see TiledJob.RunBlockTiles).</summary>
    internal const int BlockRowGroup = 64;

    /// <summary>
    /// Keys a block's row group takes from a run at a time: their panels and values (512 bytes a key at HeadDim 64) stay
    /// in the core's L2 while every tile of the group uses them.
    /// </summary>
    internal const int BlockKeyChunk = 512;

    /// <summary>
    /// Bytes of keys and values (panels and value rows) a band pass's block of tiles takes together (<c>RunBandTiles</c>):
    /// 512 keys at HeadDim 64, which stay in L2 while every tile of the block reads them. Chunks of 256, 512 and 1024 keys
    /// at HeadDim 64 measured alike (0.89-0.92x the time of no chunks on swa-16k-w4096 and causal-16k).
    /// </summary>
    internal const long BandChunkBytes = 256 << 10;

    /// <summary>A test on its own thread sets this to make every band block take its keys in chunks of this many bytes.</summary>
    [ThreadStatic]
    internal static long? BandChunkBytesForTests;

    /// <summary>Below this much work (rows x keys, roughly) a call runs on the calling thread.</summary>
    private const long ParallelThresholdPairs = 1 << 15;

    /// <summary>Runs a kernel with a tile path: the window (or dense) band and long strided streams as tiles, the rest per row.</summary>
    /// <remarks>
    /// <paramref name="sinkLogits"/> ([Heads], natural units; empty for none) join each row's softmax denominator;
    /// <paramref name="logSumExp"/> ([Batch, Heads, SeqLen]; empty for none) receives each row's log-sum-exp.
    /// <paramref name="layout"/> gives the tensors' strides when they are not the dense layout (a tensor view); the spans
    /// then reach from each tensor's first element to its last, as the caller (<c>TensorAttention</c>) checked.
    /// </remarks>
    public static void RunTiled<TKernel, TScores>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default, Span<float> logSumExp = default, AttentionLayout layout = default)
        where TKernel : struct, IAttentionTileKernel
        where TScores : struct, IScoreModifier
    {
        int headDim = TKernel.HeadDim;
        AttentionLayout views = layout.OrDense(shape, headDim);
        TilePlan plan = TiledJob<TKernel, TScores>.ForThisThread().Plan;
        plan.Prepare(pattern, shape.Heads, shape.SeqLen, TKernel.KeyTile, TKernel.TileRows, TiledJob<TKernel, TScores>.NeighborhoodRows, wholeSequence: true);
        if (!plan.AnyTiles)
        {
            RunRows<TKernel, TScores>(pattern, query, key, value, output, shape, options, sinkLogits, logSumExp, layout);
            return;
        }

        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output, sinks = sinkLogits, logSumExpPointer = logSumExp)
        {
            for (int b = 0; b < shape.Batch; b++)
            {
                var rows = new RowOutputs(outputPointer + b * views.Output.Batch, sinkLogits.IsEmpty ? null : sinks, logSumExp.IsEmpty ? null : logSumExpPointer + (long)b * shape.Heads * shape.SeqLen);
                RunTiledSlice<TKernel, TScores>(
                    pattern, queryPointer + b * views.Query.Batch, keyPointer + b * views.Key.Batch, valuePointer + b * views.Value.Batch, rows,
                    shape with { Batch = 1 }, SequenceSlice.Whole(shape.SeqLen), options, views);
            }
        }
    }

    /// <summary>
    /// Where a call's finished rows go: the output, and optionally each query head's learned sink logit (which joins the
    /// row's denominator) and each row's log-sum-exp ([Heads, rows], laid out like the output's rows).
    /// </summary>
    internal readonly struct RowOutputs(float* output, float* sinkLogits, float* logSumExp)
    {
        public float* Output { get; } = output;

        public float* SinkLogits { get; } = sinkLogits;

        public float* LogSumExp { get; } = logSumExp;
    }

    /// <summary>
    /// The tiled passes over the part of a sequence <paramref name="slice"/> names: the whole of it for
    /// <see cref="RunTiled{TKernel, TScores}"/>, a prefill chunk's rows for decode's prefill, Decode/CpuDecode.cs (keys a linear run of
    /// <paramref name="shape"/>.SeqLen positions per KV head, pinned global tokens after them; the pattern then has a
    /// window band and no stride).
    /// </summary>
    internal static void RunTiledSlice<TKernel, TScores>(AttentionPattern pattern, float* query, float* key, float* value, RowOutputs output, AttentionShape shape, SequenceSlice slice, AttentionOptions options, AttentionLayout layout = default)
        where TKernel : struct, IAttentionTileKernel
        where TScores : struct, IScoreModifier
    {
        int threads = Threads(options, shape with { SeqLen = slice.QueryRows });
        TiledJob<TKernel, TScores> job = TiledJob<TKernel, TScores>.ForThisThread();
        job.Prepare(pattern, query, key, value, output, shape, slice, options, layout.IsExplicit ? layout : slice.Layout(TKernel.HeadDim));
        fixed (float* panels = job.Panels)
        {
            job.PanelPointer = panels;
            fixed (float* gatheredValues = job.GatheredValues)
            {
                job.GatheredValuePointer = gatheredValues;
                if (job.Plan.Tails is { InUse: true, Filled: false } tails)
                {
                    job.Phase = TiledPhase.RowTails;
                    WorkerPool.Shared.Run(job, tails.Items, threads);
                    tails.Filled = true;
                }

                job.Phase = TiledPhase.Pack;
                WorkerPool.Shared.Run(job, job.PackItems, threads);
                job.Phase = TiledPhase.Tiles;
                for (job.Pass = 0; job.Pass < job.Plan.Passes; job.Pass++)
                {
                    WorkerPool.Shared.Run(job, job.ItemsOf(job.Pass), threads);
                }

                job.GatheredValuePointer = null;
            }

            job.PanelPointer = null;
        }
    }

    /// <summary>
    /// Which part of a sequence a tiled call computes. <c>Forward</c> computes all of it; a prefill chunk computes
    /// <see cref="QueryRows"/> rows from position <see cref="QueryFirst"/> on, against keys that start
    /// <see cref="PositionBase"/> positions into the stream, with global tokens older than that read through
    /// <see cref="Slots"/>. Query and output rows of a head are <see cref="QueryLayoutRows"/> apart, and keys of a KV
    /// head <see cref="KeyStride"/> apart.
    /// </summary>
    /// <remarks>
    /// A partial call (<see cref="RunSlice{TKernel, TScores}"/>) sets <see cref="KeyRangeCount"/>: its keys are positions
    /// KeyRangeStart .. KeyRangeStart + KeyRangeCount - 1 only, and each row's key segments are cut to them.
    /// </remarks>
    internal readonly record struct SequenceSlice(int QueryFirst, int QueryRows, int QueryLayoutRows, int KeyStride, int PositionBase, SlotMap? Slots, int KeyRangeStart = 0, int KeyRangeCount = 0)
    {
        public static SequenceSlice Whole(int seqLen) => new(0, seqLen, seqLen, seqLen, 0, null);

        /// <summary>The dense layout of the slice's buffers: QueryLayoutRows rows per query (and output) head, KeyStride per KV head.</summary>
        public AttentionLayout Layout(int headDim)
        {
            RowStrides queries = new(0, (long)QueryLayoutRows * headDim, headDim), keys = new(0, (long)KeyStride * headDim, headDim);
            return new AttentionLayout(queries, keys, keys, queries);
        }
    }

    /// <summary>
    /// Partial attention (<see cref="AttentionSlice"/>): the slice's queries against its keys, the pattern at absolute
    /// positions, each row's key segments cut to the key range; every row through the row kernel. Writes each row's
    /// log-sum-exp, so the slices merge (<see cref="AttentionMerge"/>).
    /// </summary>
    public static void RunSlice<TKernel, TScores>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, Span<float> logSumExp, AttentionSlice slice, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output, logSumExpPointer = logSumExp)
        {
            var part = new SequenceSlice(slice.QueryStart, slice.QueryCount, slice.QueryCount, slice.KeyCount, 0, null, slice.KeyStart, slice.KeyCount);
            RunRowsSlice<TKernel, TScores>(pattern, queryPointer, keyPointer, valuePointer, new RowOutputs(outputPointer, null, logSumExpPointer), slice.Sequence, part, options);
        }
    }

    /// <summary>Runs a kernel row by row over each row's exact key segments (<paramref name="layout"/> as for <see cref="RunTiled{TKernel, TScores}"/>).</summary>
    public static void RunRows<TKernel, TScores>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default, Span<float> logSumExp = default, AttentionLayout layout = default)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        int headDim = TKernel.HeadDim;
        AttentionLayout views = layout.OrDense(shape, headDim);
        if (!views.KeyValueRowsDense(headDim))
        {
            using var dense = DenseKeyValues.Copy(key, value, views, shape, headDim);
            RunRows<TKernel, TScores>(pattern, query, dense.Keys, dense.Values, output, shape, options, sinkLogits, logSumExp, views.WithKeyValue(dense.Strides));
            return;
        }

        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output, sinks = sinkLogits, logSumExpPointer = logSumExp)
        {
            for (int b = 0; b < shape.Batch; b++)
            {
                var rows = new RowOutputs(outputPointer + b * views.Output.Batch, sinkLogits.IsEmpty ? null : sinks, logSumExp.IsEmpty ? null : logSumExpPointer + (long)b * shape.Heads * shape.SeqLen);
                RunRowsSlice<TKernel, TScores>(
                    pattern, queryPointer + b * views.Query.Batch, keyPointer + b * views.Key.Batch, valuePointer + b * views.Value.Batch, rows,
                    shape with { Batch = 1 }, SequenceSlice.Whole(shape.SeqLen), options, views);
            }
        }
    }

    /// <summary>The row schedule over the part of a sequence <paramref name="slice"/> names (see <see cref="RunTiledSlice{TKernel, TScores}"/>); key and value rows dense.</summary>
    internal static void RunRowsSlice<TKernel, TScores>(AttentionPattern pattern, float* query, float* key, float* value, RowOutputs output, AttentionShape shape, SequenceSlice slice, AttentionOptions options, AttentionLayout layout = default)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        int threads = Threads(options, shape with { SeqLen = slice.QueryRows });
        RowJob<TKernel, TScores> job = RowJob<TKernel, TScores>.ForThisThread();
        job.Prepare(pattern, query, key, value, output, shape, slice, options, layout.IsExplicit ? layout : slice.Layout(TKernel.HeadDim));
        WorkerPool.Shared.Run(job, job.Items, threads);
    }

    private static int Threads(AttentionOptions options, AttentionShape shape) =>
        Threads(options, (long)shape.Heads * shape.SeqLen * Math.Min(shape.SeqLen, 64));

    /// <summary>Threads for a call of about <paramref name="roughPairs"/> (query, key) pairs: one below the point where waking workers costs more than it saves.</summary>
    internal static int Threads(AttentionOptions options, long roughPairs) =>
        roughPairs < ParallelThresholdPairs ? 1 : options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;

    /// <summary>Runs one row's segments through the row kernel from a fresh state, leaving its state in max, sum and accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ComputeWholeRow<TKernel, TScores>(ref float query, ref float keys, ref float values, ReadOnlySpan<KeySegment> segments, in ScoreRow row, float scale, Span<float> scratch, Span<float> accumulator, out float max, out float sum)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        max = float.NegativeInfinity;
        sum = 0f;
        accumulator.Clear();
        TKernel.AccumulateRow<TScores>(ref query, ref keys, ref values, segments, row, scale, scratch, ref max, ref sum, accumulator);
    }

    /// <summary>
    /// Finishes one row from its online-softmax state (base 2: <paramref name="max"/> and <paramref name="sum"/> of
    /// 2^(score - max)): a learned sink (<paramref name="sinkLogit"/>, natural units; null for none) joins the denominator
    /// with no value, then the row is normalised (<see cref="WriteNormalised"/>) and, when asked, its log-sum-exp written:
    /// ln of the denominator including the max, -inf for a row that saw no key (its sink does not count: the row is zeros),
    /// NaN for a row written as NaN.
    /// </summary>
    internal static void FinishRow(ReadOnlySpan<float> accumulator, float max, float sum, float* sinkLogit, float* output, float* logSumExp)
    {
        // In double: a sink far above the row's scores makes 2^(sink - max) overflow a float (the row then tends to 0).
        double denominator = sum;
        if (sinkLogit != null && sum > 0f)
        {
            denominator += Math.Pow(2, (double)*sinkLogit * VectorMath.Log2E - max);
        }

        bool finite = WriteNormalised(accumulator, (float)Math.Min(denominator, float.MaxValue), output);
        if (logSumExp != null)
        {
            *logSumExp = !finite ? float.NaN : sum == 0f ? float.NegativeInfinity : (float)((max + Math.Log2(denominator)) * Math.Log(2));
        }
    }

    /// <summary>
    /// output = accumulator / sum. A row that saw no key (sum 0) is written as zeros. The NaN/Inf policy ends here: a row
    /// whose sum is NaN (a non-finite visible score) or whose output has a NaN or infinity in any element (a non-finite
    /// visible value; 0 x inf is NaN too) is written as NaN in every element, so every path gives the same answer.
    /// </summary>
    /// <returns>Whether the row was finite (false: written as NaN).</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool WriteNormalised(ReadOnlySpan<float> accumulator, float sum, float* output)
    {
        // sum >= 1 when any key was seen (the largest score contributes 2^0), so 1 / sum cannot overflow the output.
        float inverse = sum == 0f ? 0f : 1f / sum;
        int d = 0;
        bool finite = true;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            // HeadDim is a multiple of 8, so 256-bit vectors cover the row; the loop below only runs on
            // machines with narrower vectors. x - x is 0 for a finite x and NaN for NaN and ±inf.
            var scale = new System.Numerics.Vector<float>(inverse);
            var check = System.Numerics.Vector<float>.Zero;
            for (; d + System.Numerics.Vector<float>.Count <= accumulator.Length; d += System.Numerics.Vector<float>.Count)
            {
                System.Numerics.Vector<float> normalised = new System.Numerics.Vector<float>(accumulator.Slice(d)) * scale;
                check += normalised - normalised;
                System.Numerics.Vector.Store(normalised, output + d);
            }

            finite = System.Numerics.Vector.EqualsAll(check, System.Numerics.Vector<float>.Zero);
        }

        for (; d < accumulator.Length; d++)
        {
            output[d] = accumulator[d] * inverse;
            finite &= float.IsFinite(output[d]);
        }

        // A NaN sum (a poisoned row) may still have multiplied out to finite elements.
        finite &= !float.IsNaN(sum);
        if (!finite)
        {
            new Span<float>(output, accumulator.Length).Fill(float.NaN);
        }

        return finite;
    }

    /// <summary>State shared by every job: the call's pointers and sizes.</summary>
    private abstract class CallJob : WorkerPool.Job
    {
        /// <summary>
        /// Each thread runs a contiguous share of the items: a thread then tiles the heads whose keys it packed, and each
        /// item's keys overlap the one it ran before (0.87-0.97x the time of items taken in turn on Vector512, BENCHMARKS.md).
        /// </summary>
        public override bool ContiguousShares => true;

        protected AttentionPattern Pattern = null!;
        protected float* Query, Key, Value, Output, SinkLogits, LogSumExp;
        protected AttentionShape Shape;
        protected SequenceSlice Slice;
        protected AttentionLayout Layout;
        protected float Scale;

        /// <summary>Per query head, its ALiBi slope in base-2 units (filled only for kernels with score modifiers).</summary>
        private float[] _alibiSlopes = Array.Empty<float>();

        protected void PrepareCall(AttentionPattern pattern, float* query, float* key, float* value, RowOutputs output, AttentionShape shape, SequenceSlice slice, AttentionLayout layout, float scale, AttentionOptions options, bool modifiesScores)
        {
            Layout = layout;
            SinkLogits = output.SinkLogits;
            LogSumExp = output.LogSumExp;
            if (modifiesScores)
            {
                AlibiSlopes.FillBase2(ref _alibiSlopes, options, shape.Heads);
            }

            Slice = slice;
            Pattern = pattern;
            Query = query;
            Key = key;
            Value = value;
            Output = output.Output;
            Shape = shape;
            Scale = scale;
        }

        /// <summary>Head <paramref name="head"/>'s ALiBi slope in the kernels' base-2 units (0 when the kernel does not modify scores).</summary>
        protected float AlibiSlopeOf(int head) => head < _alibiSlopes.Length ? _alibiSlopes[head] : 0f;

        /// <summary>Query row <paramref name="position"/> (in the call's coordinates) of <paramref name="head"/> as the row kernel's modifiers see it.</summary>
        protected ScoreRow RowOf(int head, int position, ReadOnlySpan<int> segmentPositions) =>
            new(Slice.PositionBase + position, head, AlibiSlopeOf(head), segmentPositions);

        /// <summary>Finishes row <paramref name="position"/> of <paramref name="head"/> (sink, normalisation, log-sum-exp).</summary>
        protected void Finish(int head, int position, ReadOnlySpan<float> accumulator, float max, float sum) =>
            FinishRow(accumulator, max, sum, SinkLogits == null ? null : SinkLogits + head, Output + Layout.Output.Of(head, position - Slice.QueryFirst), LogSumExp == null ? null : LogSumExp + (long)head * Slice.QueryLayoutRows + position - Slice.QueryFirst);

        /// <summary>Query row <paramref name="position"/> of <paramref name="head"/>.</summary>
        protected float* QueryRow(int head, int position) => Query + Layout.Query.Of(head, position - Slice.QueryFirst);

        /// <summary>The first key of <paramref name="head"/>'s KV head.</summary>
        protected float* KeysOf(int head) => Key + Shape.KvHeadOf(head) * Layout.Key.Head;

        /// <summary>The first value of <paramref name="head"/>'s KV head.</summary>
        protected float* ValuesOf(int head) => Value + Shape.KvHeadOf(head) * Layout.Value.Head;

        /// <summary>
        /// The key segments of row <paramref name="position"/>, as offsets into the call's keys. For a whole sequence
        /// they are the pattern's own. For a prefill chunk they are the pattern's at the real stream position, mapped
        /// through the chunk's slots (the window's segment lands on the same keys, shifted; older global tokens on the
        /// pinned slots after the linear run).
        /// </summary>
        protected int KeySegmentsOf(int position, int head, int fromComponent, WorkerScratch scratch, out int coveredBy, out KeySegment[] segments, out ReadOnlySpan<int> segmentPositions)
        {
            if (Slice.KeyRangeCount > 0)
            {
                int all = Pattern.GetKeySegments(position, head, Shape.SeqLen, scratch.Segments, fromComponent, out coveredBy);
                segments = scratch.MappedSegments;
                int cut = KeySegmentMath.Clip(scratch.Segments.AsSpan(0, all), ReadOnlySpan<int>.Empty, Slice.KeyRangeStart, Slice.KeyRangeStart + Slice.KeyRangeCount, Slice.KeyRangeStart, scratch.MappedSegments, scratch.MappedPositions);
                segmentPositions = scratch.MappedPositions.AsSpan(0, cut);
                return cut;
            }

            if (Slice.Slots is not { } slots)
            {
                segments = scratch.Segments;
                segmentPositions = ReadOnlySpan<int>.Empty;
                return Pattern.GetKeySegments(position, head, Shape.SeqLen, scratch.Segments, fromComponent, out coveredBy);
            }

            int real = Slice.PositionBase + position;
            int count = Pattern.GetKeySegments(real, head, real + 1, scratch.Segments, fromComponent, out coveredBy);
            segments = scratch.MappedSegments;
            int mapped = slots.ToSlots(scratch.Segments.AsSpan(0, count), scratch.MappedSegments, scratch.MappedPositions);
            segmentPositions = scratch.MappedPositions.AsSpan(0, mapped);
            return mapped;
        }
    }

    private sealed class RowJob<TKernel, TScores> : CallJob
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        [ThreadStatic]
        private static RowJob<TKernel, TScores>? t_instance;

        public int Items;
        private int _blocksPerHead;

        public static RowJob<TKernel, TScores> ForThisThread() => t_instance ??= new RowJob<TKernel, TScores>();

        public void Prepare(AttentionPattern pattern, float* query, float* key, float* value, RowOutputs output, AttentionShape shape, SequenceSlice slice, AttentionOptions options, AttentionLayout layout)
        {
            PrepareCall(pattern, query, key, value, output, shape, slice, layout, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E, options, TScores.ModifiesScores);
            _blocksPerHead = (slice.QueryRows + RowsPerWorkItem - 1) / RowsPerWorkItem;
            Items = shape.Heads * _blocksPerHead;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            int headDim = TKernel.HeadDim;
            int head = item / _blocksPerHead;
            int firstRow = Slice.QueryFirst + item % _blocksPerHead * RowsPerWorkItem;
            int lastRow = Math.Min(firstRow + RowsPerWorkItem, Slice.QueryFirst + Slice.QueryRows);
            float* keys = KeysOf(head), values = ValuesOf(head);
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, 1, headDim, 0);
            for (int row = firstRow; row < lastRow; row++)
            {
                int count = KeySegmentsOf(row, head, 0, scratch, out _, out KeySegment[] segments, out ReadOnlySpan<int> segmentPositions);
                Span<float> accumulator = scratch.Accumulators.AsSpan(0, headDim);
                ComputeWholeRow<TKernel, TScores>(ref *QueryRow(head, row), ref *keys, ref *values, segments.AsSpan(0, count), RowOf(head, row, segmentPositions), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), accumulator, out float max, out float sum);
                Finish(head, row, accumulator, max, sum);
            }
        }
    }

    /// <summary>
    /// What runs as tiles for one call: per head, how many of the pattern's leading components (its tiled prefix), and for
    /// each such pass its bands or its block runs. Components after the prefix, and rows a later component covers whole,
    /// go through the row kernel. A dense pattern is one band pass over the whole (causal) row.
    /// </summary>
    internal sealed class TilePlan
    {
        public int Heads;
        public int Passes;
        public int[] TiledComponents = Array.Empty<int>();

        /// <summary>Per (pass, head): the band pass's stream step, 0 when the head does not run the pass.</summary>
        public int[] Steps = Array.Empty<int>();

        /// <summary>Per (pass, head): the band pass's bands.</summary>
        public (long Left, long Right)[]?[] Bands = Array.Empty<(long Left, long Right)[]?>();

        /// <summary>The block component when pass 0 runs block tiles, else null.</summary>
        public PatternComponent? BlockComponent;

        /// <summary>Whether pass 0 runs neighbourhood tiles (planned in <see cref="Neighborhood"/>).</summary>
        public bool RunsNeighborhood;

        /// <summary>The neighbourhood's lines, classes and chunks when <see cref="RunsNeighborhood"/>.</summary>
        public readonly NeighborhoodSchedule Neighborhood = new();

        public bool AnyTiles;

        /// <summary>Each row's keys after the tiled prefix, per head class, for whole-sequence calls (filled by the first call).</summary>
        public readonly RowTails Tails = new();

        // The last call's inputs: a warm call with the same ones reuses the plan instead of rebuilding it (and allocating).
        private AttentionPattern? _plannedPattern;
        private (int Heads, int SeqLen, int KeyTile, int TileRows, int NeighborhoodRows, bool WholeSequence, long? TableLimit) _plannedFor;
        private readonly List<PatternComponent> _earlier = new();

        /// <summary>
        /// Plans <paramref name="pattern"/> for a kernel with <paramref name="keyTile"/> keys per tile. Bands whose streams
        /// cover every earlier key (a stride alone) run as tiles only when a stream spans more than one key tile: shorter
        /// streams make every tile a half-empty triangle, and the row kernel is faster (measured: stride 64 at n = 4096 is
        /// faster per row, stride 128 at 16384 1.45x faster tiled).
        /// </summary>
        public void Prepare(AttentionPattern pattern, int heads, int seqLen, int keyTile, int tileRows, int neighborhoodRows, bool wholeSequence)
        {
            if (ReferenceEquals(pattern, _plannedPattern) && _plannedFor == (heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence, RowTails.TableLimitForTests))
            {
                return;
            }

            _plannedPattern = null;
            Heads = heads;
            IReadOnlyList<PatternComponent> components = pattern.Components;
            Passes = Math.Max(1, components.Count);
            Grow(ref TiledComponents, heads);
            Grow(ref Steps, Passes * heads);
            Grow(ref Bands, Passes * heads);
            Array.Clear(Steps, 0, Passes * heads);
            BlockComponent = null;
            RunsNeighborhood = false;
            AnyTiles = false;
            if (components.Count == 0)
            {
                for (int head = 0; head < heads; head++)
                {
                    TiledComponents[head] = 0;
                    Steps[head] = 1;
                    Bands[head] = pattern.Causal ? DenseCausalBand : DenseBidirectionalBand;
                }

                AnyTiles = true;
                Planned(pattern, heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence);
                return;
            }

            if (components[0].BlockRows > 0 && wholeSequence)
            {
                BlockComponent = components[0];
                for (int head = 0; head < heads; head++)
                {
                    TiledComponents[head] = 1;
                }

                AnyTiles = true;
                Planned(pattern, heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence);
                return;
            }

            if (components[0] is NeighborhoodComponent neighborhood && wholeSequence)
            {
                // A neighbourhood first (alone, or before global tokens): lines of the grid as tiles (NeighborhoodSchedule).
                RunsNeighborhood = true;
                Neighborhood.Prepare(neighborhood, seqLen, neighborhoodRows, TiledRowsPerWorkItem / neighborhoodRows * neighborhoodRows);
                for (int head = 0; head < heads; head++)
                {
                    TiledComponents[head] = 1;
                }

                AnyTiles = true;
                Planned(pattern, heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence);
                return;
            }

            List<PatternComponent> earlier = _earlier;
            for (int head = 0; head < heads; head++)
            {
                earlier.Clear();
                int tiled = 0;
                while (tiled < components.Count && components[tiled].GetTileBands(head, pattern.Causal, earlier) is { } bands
                    && (bands.Step == 1 || bands.Bands[0].Left < int.MaxValue || seqLen / bands.Step > keyTile))
                {
                    Steps[tiled * heads + head] = bands.Step;
                    Bands[tiled * heads + head] = bands.Bands;
                    earlier.Add(components[tiled]);
                    tiled++;
                }

                TiledComponents[head] = tiled;
                AnyTiles |= tiled > 0;
            }

            Planned(pattern, heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence);
        }

        /// <summary>Whether some rows of the planned call go through the row kernel: a head whose components do not all run as tiles.</summary>
        public bool RowKernelRuns(AttentionPattern pattern)
        {
            for (int head = 0; head < Heads; head++)
            {
                if (TiledComponents[head] < pattern.Components.Count)
                {
                    return true;
                }
            }

            return false;
        }

        private void Planned(AttentionPattern pattern, int heads, int seqLen, int keyTile, int tileRows, int neighborhoodRows, bool wholeSequence)
        {
            if (wholeSequence)
            {
                Tails.Plan(pattern, heads, seqLen, TiledComponents);
            }
            else
            {
                Tails.Clear();
            }

            _plannedPattern = pattern;
            _plannedFor = (heads, seqLen, keyTile, tileRows, neighborhoodRows, wholeSequence, RowTails.TableLimitForTests);
        }

        private static readonly (long Left, long Right)[] DenseCausalBand = { (int.MaxValue, 0) };
        private static readonly (long Left, long Right)[] DenseBidirectionalBand = { (int.MaxValue, int.MaxValue) };
    }

    /// <summary>Replaces <paramref name="array"/> with a larger one when it holds fewer than <paramref name="length"/> (contents not kept).</summary>
    internal static void Grow<T>(ref T[] array, int length)
    {
        if (array.Length < length)
        {
            array = new T[length];
        }
    }

    /// <summary>What a tiled job's work items do in each of its phases.</summary>
    private enum TiledPhase
    {
        /// <summary>Work out each row's tail (the keys after the tiled prefix) once per head class, for the plan's lifetime.</summary>
        RowTails,

        /// <summary>Pack the keys of every (stream step, KV head) into panels, and gather components' gathered streams.</summary>
        Pack,

        /// <summary>One tiled component's pass (band or block tiles), continuing the row state of the passes before it.</summary>
        Tiles,
    }

    private sealed partial class TiledJob<TKernel, TScores> : CallJob
        where TKernel : struct, IAttentionTileKernel
        where TScores : struct, IScoreModifier
    {
        [ThreadStatic]
        private static TiledJob<TKernel, TScores>? t_instance;

        public float[] Panels = Array.Empty<float>();
        public float* PanelPointer;
        public float* GatheredValuePointer;
        public TiledPhase Phase;
        public int Pass;
        public int PackItems;
        public readonly TilePlan Plan = new();

        /// <summary>
        /// Not for a gathering neighbourhood's tiles: its items are numbered so that neighbours read the same key lines
        /// from the sequence, which two threads taking items in turn read together (in contiguous shares: 1.01x the time).
        /// </summary>
        public override bool ContiguousShares => !(Phase == TiledPhase.Tiles && Pass == 0 && Plan.RunsNeighborhood);

        private int[] _steps = Array.Empty<int>();
        private long[] _panelsPerKvHead = Array.Empty<long>();
        private long[] _stepOffsets = Array.Empty<long>();
        private int _stepCount;
        private int[] _itemsBefore = Array.Empty<int>();
        private int _tilesPerItem;

        // Gathered streams (a component's keys collected from scattered positions): per group, the representative head,
        // its length, and where its panels and values start.
        private int[] _gatherHeads = Array.Empty<int>();
        private int[] _gatherLengths = Array.Empty<int>();
        private long[] _gatherPanelOffsets = Array.Empty<long>();
        private long[] _gatherValueOffsets = Array.Empty<long>();
        private int _gatherGroups;
        public float[] GatheredValues = Array.Empty<float>();

        // For score modifiers: each gathered stream's key positions, groups one after another.
        private int[] _gatheredPositions = Array.Empty<int>();
        private int[] _gatheredPositionOffsets = Array.Empty<int>();

        // Row state handed from one pass to the next: running max, sum and output per row.
        private float[] _state = Array.Empty<float>();

        // A strided call (a tensor view): the caller's keys and values, and the dense copies the pack phase makes of them.
        private float* _sourceKey, _sourceValue;
        private RowStrides _sourceKeyRows, _sourceValueRows;
        private float[] _denseCopies = Array.Empty<float>();
        private int _keyPackItems, _copyChunksPerKvHead;
        private bool _copyKeys, _copyValues;

        // BandChunkBytesForTests as the call's thread set it (0: the measured rule), for the workers.
        private long _forcedChunkBytes;

        /// <summary>Rows per work item of the pack phase's copies to dense rows.</summary>
        private const int CopyRowsPerItem = 512;


        public static TiledJob<TKernel, TScores> ForThisThread() => t_instance ??= new TiledJob<TKernel, TScores>();

        public int ItemsOf(int pass) => _itemsBefore[(pass + 1) * (Shape.Heads + 1) - 1];

        public void Prepare(AttentionPattern pattern, float* query, float* key, float* value, RowOutputs output, AttentionShape shape, SequenceSlice slice, AttentionOptions options, AttentionLayout layout)
        {
            PrepareCall(pattern, query, key, value, output, shape, slice, layout, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E, options, TScores.ModifiesScores);
            int headDim = TKernel.HeadDim, keyTile = TKernel.KeyTile, heads = shape.Heads;
            _tilesPerItem = Math.Max(1, TiledRowsPerWorkItem / TKernel.TileRows);
            Plan.Prepare(pattern, heads, shape.SeqLen, keyTile, TKernel.TileRows, NeighborhoodRows, slice.Slots is null);
            if (Plan.BlockComponent is BlockSparseComponent blockSparse)
            {
                blockSparse.Prepare(shape.SeqLen, heads);
            }

            // Panels for every stream step in use, and the gathered streams.
            _stepCount = 0;
            Grow(ref _steps, Plan.Passes * heads + 1);
            Grow(ref _panelsPerKvHead, _steps.Length);
            Grow(ref _stepOffsets, _steps.Length);
            long total = 0;
            if (Plan.BlockComponent is not null)
            {
                AddStep(1, shape, headDim, keyTile, ref total);
            }

            if (Plan.RunsNeighborhood && !Plan.Neighborhood.Gathers)
            {
                // A 1-D neighbourhood's items read its residue streams; longer grids gather their own.
                AddStep(Plan.Neighborhood.Dilation, shape, headDim, keyTile, ref total);
            }

            for (int index = 0; index < Plan.Passes * heads; index++)
            {
                if (Plan.Steps[index] > 0)
                {
                    AddStep(Plan.Steps[index], shape, headDim, keyTile, ref total);
                }
            }

            _gatherGroups = 0;
            long gatheredValueFloats = 0;
            if (Plan.BlockComponent is { } block && block.GatheredLength(0, shape.SeqLen) > 0)
            {
                Grow(ref _gatherHeads, heads);
                Grow(ref _gatherLengths, heads);
                Grow(ref _gatherPanelOffsets, heads);
                Grow(ref _gatherValueOffsets, heads);
                for (int head = 0; head < heads; head++)
                {
                    if (block.GatherGroup(head) == _gatherGroups)
                    {
                        int length = block.GatheredLength(head, shape.SeqLen);
                        _gatherHeads[_gatherGroups] = head;
                        _gatherLengths[_gatherGroups] = length;
                        _gatherPanelOffsets[_gatherGroups] = total;
                        _gatherValueOffsets[_gatherGroups] = gatheredValueFloats;
                        total += KeyPanels.FloatsPerKvHead(length, 1, headDim, TKernel.Lanes, keyTile) * shape.KvHeads;
                        gatheredValueFloats += (long)length * headDim * shape.KvHeads;
                        _gatherGroups++;
                    }
                }
            }

            if (TScores.ModifiesScores && _gatherGroups > 0)
            {
                GatherPositions(Plan.BlockComponent!);
            }

            if (Panels.Length < total)
            {
                Panels = GC.AllocateUninitializedArray<float>(CheckedArrayLength(total, "packs the keys once per stream step (each distinct dilation, and the stride) into"));
            }

            if (GatheredValues.Length < gatheredValueFloats)
            {
                GatheredValues = GC.AllocateUninitializedArray<float>(CheckedArrayLength(gatheredValueFloats, "gathers the values of scattered keys (summary positions) into"));
            }

            _forcedChunkBytes = BandChunkBytesForTests ?? 0;
            _keyPackItems = (_stepCount + _gatherGroups) * shape.KvHeads;
            PackItems = _keyPackItems + PrepareDenseCopies(pattern, shape);
            CountItems(shape);
            if (Plan.Passes > 1 && HasHandOn(heads))
            {
                long stateFloats = (long)heads * slice.QueryRows * (headDim + 2);
                if (_state.Length < stateFloats)
                {
                    _state = GC.AllocateUninitializedArray<float>(CheckedArrayLength(stateFloats, "hands each row's softmax state from one tile pass to the next in"));
                }
            }
        }

        /// <summary>
        /// For a strided call, plans dense copies of what the tiles would otherwise read rows far apart: values always (the
        /// P·V phase streams a tile's value rows, and [B, S, H, D] rows a head apart ran 1.12-1.17x slower than dense ones,
        /// where strided queries and outputs cost nothing measurable), keys only when the row kernel reads them (the tiles
        /// read keys from their panels, packed from the strided rows). The copies run in the pack phase, in parallel; from
        /// then on the call reads them as its keys and values. Returns the copy items.
        /// </summary>
        private int PrepareDenseCopies(AttentionPattern pattern, AttentionShape shape)
        {
            int headDim = TKernel.HeadDim;
            _sourceKey = Key;
            _sourceValue = Value;
            _sourceKeyRows = Layout.Key;
            _sourceValueRows = Layout.Value;
            _copyValues = Layout.Value.Row != headDim;
            _copyKeys = Layout.Key.Row != headDim && Plan.RowKernelRuns(pattern);
            if (!_copyValues && !_copyKeys)
            {
                return 0;
            }

            long kvFloats = (long)shape.KvHeads * shape.SeqLen * headDim;
            long copyFloats = (_copyKeys ? kvFloats : 0) + (_copyValues ? kvFloats : 0);
            if (_denseCopies.Length < copyFloats)
            {
                // Pinned: the tiles read them through pointers, as they read the caller's spans.
                _denseCopies = GC.AllocateUninitializedArray<float>(CheckedArrayLength(copyFloats, "copies a strided call's values (and keys) to dense rows in"), pinned: true);
            }

            float* copies = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_denseCopies));
            var dense = new RowStrides(0, (long)shape.SeqLen * headDim, headDim);
            RowStrides keyRows = Layout.Key, valueRows = Layout.Value;
            if (_copyKeys)
            {
                Key = copies;
                keyRows = dense;
                copies += kvFloats;
            }

            if (_copyValues)
            {
                Value = copies;
                valueRows = dense;
            }

            Layout = new AttentionLayout(Layout.Query, keyRows, valueRows, Layout.Output);

            _copyChunksPerKvHead = (shape.SeqLen + CopyRowsPerItem - 1) / CopyRowsPerItem;
            return ((_copyKeys ? 1 : 0) + (_copyValues ? 1 : 0)) * shape.KvHeads * _copyChunksPerKvHead;
        }

        /// <summary>One copy item: a chunk of one KV head's rows of keys (first, when copied) or values, to dense rows.</summary>
        private void CopyToDense(int item)
        {
            int headDim = TKernel.HeadDim, perTensor = Shape.KvHeads * _copyChunksPerKvHead;
            bool keys = _copyKeys && item < perTensor;
            int local = keys || !_copyKeys ? item : item - perTensor;
            int kvHead = local / _copyChunksPerKvHead, first = local % _copyChunksPerKvHead * CopyRowsPerItem;
            int end = Math.Min(Shape.SeqLen, first + CopyRowsPerItem);
            DenseKeyValues.CopyRows(keys ? _sourceKey : _sourceValue, keys ? _sourceKeyRows : _sourceValueRows, keys ? Key : Value, keys ? Layout.Key : Layout.Value, kvHead, first, end, headDim);
        }

        /// <summary>The absolute position of each gathered stream's keys, which the score modifiers are told.</summary>
        private void GatherPositions(PatternComponent block)
        {
            Grow(ref _gatheredPositionOffsets, _gatherGroups);
            int total = 0;
            for (int group = 0; group < _gatherGroups; group++)
            {
                _gatheredPositionOffsets[group] = total;
                total += _gatherLengths[group];
            }

            // A key tile of padding after each group: a boundary tile's vector loads read up to a tile past the stream.
            Grow(ref _gatheredPositions, total + _gatherGroups * TKernel.KeyTile);
            for (int group = 0; group < _gatherGroups; group++)
            {
                int offset = _gatheredPositionOffsets[group] + group * TKernel.KeyTile, length = _gatherLengths[group];
                _gatheredPositionOffsets[group] = offset;
                for (int index = 0; index < length; index++)
                {
                    _gatheredPositions[offset + index] = block.GatheredPosition(_gatherHeads[group], index);
                }

                _gatheredPositions.AsSpan(offset + length, TKernel.KeyTile).Fill(length > 0 ? _gatheredPositions[offset + length - 1] : 0);
            }
        }

        private bool HasHandOn(int heads)
        {
            for (int head = 0; head < heads; head++)
            {
                if (Plan.TiledComponents[head] > 1)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>
        /// <paramref name="floats"/> as an array length, or an <see cref="ArgumentException"/> on the shape saying which buffer
        /// would be too large: inputs that fit in spans can still need more scratch than one array holds.
        /// </summary>
        private static int CheckedArrayLength(long floats, string what)
        {
            if (floats > Array.MaxLength)
            {
                throw new ArgumentException($"This call is too large for the tiled kernel: it {what} {floats} floats, more than one array holds ({Array.MaxLength}); split it over fewer heads.", "shape");
            }

            return (int)floats;
        }

        private void AddStep(int step, AttentionShape shape, int headDim, int keyTile, ref long total)
        {
            if (Array.IndexOf(_steps, step, 0, _stepCount) >= 0)
            {
                return;
            }

            _steps[_stepCount] = step;
            _panelsPerKvHead[_stepCount] = KeyPanels.FloatsPerKvHead(shape.SeqLen, step, headDim, TKernel.Lanes, keyTile);
            _stepOffsets[_stepCount] = total;
            total += _panelsPerKvHead[_stepCount] * shape.KvHeads;
            _stepCount++;
        }

        /// <summary>
        /// Work items of every pass, per head: a band pass has each residue stream's query tiles in blocks; a block pass one
        /// item per block of query rows.
        /// </summary>
        private void CountItems(AttentionShape shape)
        {
            int heads = shape.Heads;
            Grow(ref _itemsBefore, Plan.Passes * (heads + 1));
            for (int pass = 0; pass < Plan.Passes; pass++)
            {
                int at = pass * (heads + 1);
                _itemsBefore[at] = 0;
                for (int head = 0; head < heads; head++)
                {
                    int blocks = 0;
                    if (pass == 0 && Plan.BlockComponent is { } block)
                    {
                        blocks = (Slice.QueryRows + block.BlockRows - 1) / block.BlockRows;
                    }
                    else if (pass == 0 && Plan.RunsNeighborhood)
                    {
                        blocks = Plan.Neighborhood.ItemsPerHead;
                    }
                    else if (Plan.Steps[pass * heads + head] is int step and > 0)
                    {
                        // A residue stream holds at most ceil(QueryRows / step) of the rows this call computes.
                        int tiles = (KeyPanels.StreamLength(Slice.QueryRows, step, 0) + TKernel.TileRows - 1) / TKernel.TileRows;
                        blocks = step * ((tiles + _tilesPerItem - 1) / _tilesPerItem);
                    }

                    _itemsBefore[at + head + 1] = _itemsBefore[at + head] + blocks;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            if (Phase == TiledPhase.Pack)
            {
                Pack(item);
                return;
            }

            if (Phase == TiledPhase.RowTails)
            {
                Plan.Tails.Fill(item, WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, TKernel.TileRows, TKernel.HeadDim, TKernel.KeyTile).Segments);
                return;
            }

            int heads = Shape.Heads, at = Pass * (heads + 1);
            int head = 0;
            while (_itemsBefore[at + head + 1] <= item)
            {
                head++;
            }

            int local = item - _itemsBefore[at + head];
            if (Pass == 0 && Plan.BlockComponent is not null)
            {
                RunBlockTiles(head, local);
            }
            else if (Pass == 0 && Plan.RunsNeighborhood)
            {
                RunNeighborhoodTiles(head, local);
            }
            else
            {
                RunBandTiles(head, local, _itemsBefore[at + head + 1] - _itemsBefore[at + head]);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Pack(int item)
        {
            if (item >= _keyPackItems)
            {
                CopyToDense(item - _keyPackItems);
                return;
            }

            int stepIndex = item / Shape.KvHeads, kvHead = item % Shape.KvHeads;
            int headDim = TKernel.HeadDim;
            if (stepIndex < _stepCount)
            {
                KeyPanels.Pack(_sourceKey + kvHead * _sourceKeyRows.Head, _sourceKeyRows.Row, Shape.SeqLen, headDim, _steps[stepIndex], TKernel.Lanes, TKernel.KeyTile, Scale, PanelsOf(stepIndex, kvHead));
                return;
            }

            // A gathered stream: copy its keys and values together (keys to a temporary run, then into panels).
            int group = stepIndex - _stepCount, length = _gatherLengths[group], head = _gatherHeads[group];
            PatternComponent block = Plan.BlockComponent!;
            float* values = GatheredValuePointer + _gatherValueOffsets[group] + (long)kvHead * length * headDim;
            float[] keys = System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, length * headDim));
            try
            {
                float* source = _sourceKey + kvHead * _sourceKeyRows.Head, sourceValues = _sourceValue + kvHead * _sourceValueRows.Head;
                for (int index = 0; index < length; index++)
                {
                    long position = block.GatheredPosition(head, index);
                    new ReadOnlySpan<float>(source + position * _sourceKeyRows.Row, headDim).CopyTo(keys.AsSpan(index * headDim, headDim));
                    new ReadOnlySpan<float>(sourceValues + position * _sourceValueRows.Row, headDim).CopyTo(new Span<float>(values + (long)index * headDim, headDim));
                }

                fixed (float* gathered = keys)
                {
                    KeyPanels.Pack(gathered, headDim, length, headDim, 1, TKernel.Lanes, TKernel.KeyTile, Scale, GatheredPanelsOf(group, kvHead));
                }
            }
            finally
            {
                System.Buffers.ArrayPool<float>.Shared.Return(keys);
            }
        }

        private float* PanelsOf(int stepIndex, int kvHead) => PanelPointer + _stepOffsets[stepIndex] + kvHead * _panelsPerKvHead[stepIndex];

        private float* GatheredPanelsOf(int group, int kvHead) =>
            PanelPointer + _gatherPanelOffsets[group] + kvHead * KeyPanels.FloatsPerKvHead(_gatherLengths[group], 1, TKernel.HeadDim, TKernel.Lanes, TKernel.KeyTile);

        private float* StreamPanels(int step, int residue, int kvHead) =>
            PanelsOf(Array.IndexOf(_steps, step, 0, _stepCount), kvHead) + KeyPanels.StreamOffset(Shape.SeqLen, step, residue, TKernel.HeadDim, TKernel.Lanes, TKernel.KeyTile);

        /// <summary>
        /// A band pass's work item: a block of query tiles of one residue stream (up to <see cref="TiledRowsPerWorkItem"/>
        /// rows), through each of the head's bands. The tiles take the keys together, <see cref="BandChunkBytes"/> of keys
        /// and values at a time, each tile keeping its own state: a chunk's panels and values come from the L3 (or memory)
        /// once for the block and are read from L2 by every tile, where tile by tile each tile streamed its whole band
        /// (2 MiB of keys and values at w4096, more than an L2 holds) for its 6 rows: swa-16k-w4096 and causal-16k ran 1.09x
        /// as long.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunBandTiles(int head, int local, int headItems)
        {
            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows, seqLen = Shape.SeqLen, heads = Shape.Heads;
            int step = Plan.Steps[Pass * heads + head];
            (long Left, long Right)[] bands = Plan.Bands[Pass * heads + head]!;
            int blocksPerResidue = headItems / step;
            int residue = local / blocksPerResidue;
            int block = local % blocksPerResidue;
            int streamLength = KeyPanels.StreamLength(seqLen, step, residue);
            int kvHead = Shape.KvHeadOf(head);
            float* panels = StreamPanels(step, residue, kvHead);
            float* values = ValuesOf(head);
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, _tilesPerItem * tileRows, headDim, TKernel.KeyTile);

            // The stream's first query this call computes: 0 for a whole sequence, later for a prefill chunk.
            int firstComputed = Slice.QueryFirst <= residue ? 0 : (Slice.QueryFirst - residue + step - 1) / step;
            int blockFirst = firstComputed + block * _tilesPerItem * tileRows;
            if (blockFirst >= streamLength)
            {
                return;
            }

            int tiles = Math.Min(_tilesPerItem, (streamLength - blockFirst + tileRows - 1) / tileRows);
            int blockLast = Math.Min(streamLength - 1, blockFirst + tiles * tileRows - 1);
            for (int t = 0; t < tiles; t++)
            {
                int firstQuery = blockFirst + t * tileRows;
                StartRows(head, residue + firstQuery * step, step, Math.Min(tileRows, streamLength - firstQuery), scratch, t);
            }

            // The keys any row of the block sees, over all bands.
            long lowest = long.MaxValue, highest = long.MinValue;
            foreach ((long left, long right) in bands)
            {
                lowest = Math.Min(lowest, Math.Max(0, blockFirst - left));
                highest = Math.Max(highest, Math.Min(streamLength - 1, blockLast + right));
            }

            var tile = new BandTile
            {
                QueryStride = (int)(step * Layout.Query.Row),
                QueryStep = 1,
                KeyPanels = ref *panels,
                Values = ref *(values + residue * Layout.Value.Row),
                ValueStride = (int)(step * Layout.Value.Row),
                Probabilities = scratch.Probabilities.AsSpan(0, tileRows * TKernel.KeyTile),
                Head = head,
                AlibiSlope = AlibiSlopeOf(head),
                QueryPositionStep = step,
                KeyPosition = Slice.PositionBase + residue,
                KeyPositionStep = step,
            };
            bool view = Layout.Output.Row != headDim || Layout.Query.Row != headDim;
            // One chunk when the block's keys and values fit in half an L2 (a 4K-token call's w512 band: more calls per tile
            // only add their setup, 4% on swa-4k-w512); else chunks of 256 KiB, at every width. Vector256 and Vector128 once
            // kept one chunk (on Zen 3 and 5, with 32 MiB of L3, chunks measured 1.01-1.03x their time), but on a Zen 1 with
            // 8 MiB of L3 a dense 16K row's 8 MiB of keys and values came from memory for every 6-row tile: chunked,
            // causal-16k ran in 0.73x the time on Vector256 and 0.70x on Vector128.
            long keyBytes = 2L * headDim * sizeof(float);
            long chunkKeys = _forcedChunkBytes == 0 && (highest - lowest + 1) * keyBytes <= 2 * BandChunkBytes
                ? highest - lowest + 1 + TKernel.KeyTile
                : Math.Max(1, (_forcedChunkBytes > 0 ? _forcedChunkBytes : BandChunkBytes) / keyBytes / TKernel.KeyTile) * TKernel.KeyTile;
            long keysFrom = lowest / TKernel.KeyTile * TKernel.KeyTile;
            for (long chunkFirst = keysFrom; chunkFirst <= highest; chunkFirst += chunkKeys)
            {
                long chunkLast = Math.Min(highest, chunkFirst + chunkKeys - 1);
                bool lastChunk = chunkLast == highest, firstChunk = chunkFirst == keysFrom;
                tile.KeyFirst = (int)chunkFirst;
                tile.KeyLast = (int)chunkLast;
                for (int t = 0; t < tiles; t++)
                {
                    int firstQuery = blockFirst + t * tileRows, rows = Math.Min(tileRows, streamLength - firstQuery);
                    tile.Query = ref *QueryRow(head, residue + firstQuery * step);
                    tile.Rows = rows;
                    tile.FirstQuery = firstQuery;
                    tile.QueryPosition = Slice.PositionBase + residue + firstQuery * step;
                    tile.RowMax = scratch.RowMax.AsSpan(t * tileRows, tileRows);
                    tile.RowSum = scratch.RowSum.AsSpan(t * tileRows, tileRows);
                    tile.Accumulators = scratch.Accumulators.AsSpan(t * tileRows * headDim, tileRows * headDim);
                    if (view && (firstChunk || lastChunk))
                    {
                        // Output rows before the tile's last chunk, the next tile's query rows before their first.
                        PrefetchViewRows(head, residue + firstQuery * step, step, rows, lastChunk, firstChunk && t + 1 < tiles ? Math.Min(tileRows, streamLength - firstQuery - rows) : 0);
                    }

                    foreach ((long left, long right) in bands)
                    {
                        // Only bands that reach into this chunk for some row of the tile.
                        if (firstQuery - left <= chunkLast && firstQuery + rows - 1 + right >= chunkFirst)
                        {
                            tile.Left = left;
                            tile.Right = right;
                            TKernel.AccumulateBandTile<TScores>(ref tile);
                        }
                    }
                }
            }

            for (int t = 0; t < tiles; t++)
            {
                int firstQuery = blockFirst + t * tileRows, rows = Math.Min(tileRows, streamLength - firstQuery);
                EndRows(head, residue + firstQuery * step, step, rows, scratch, t);
            }
        }

        /// <summary>
        /// A block pass's work item: one block of query rows through every key run the block sees as a rectangle (left and
        /// right unbounded, or cut on the diagonal). The rows go in groups of up to <see cref="BlockRowGroup"/>, each group's
        /// tiles keeping their own state, and each run in chunks of <see cref="BlockKeyChunk"/> keys that every tile of the
        /// group takes in turn: a chunk's panels and values are read from memory once per group instead of once per tile.
        /// That matters for long runs (a global block row sees the whole sequence: tile by tile it streamed all keys from
        /// memory for every few rows, and BigBird ran at 74% of a window's speed on an AVX2 machine).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunBlockTiles(int head, int queryBlock)
        {
            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows, seqLen = Shape.SeqLen;
            int groupTiles = (BlockRowGroup + tileRows - 1) / tileRows;
            PatternComponent component = Plan.BlockComponent!;
            int rowFirst = queryBlock * component.BlockRows;
            int rowEnd = (int)Math.Min(seqLen, (long)rowFirst + component.BlockRows);
            int kvHead = Shape.KvHeadOf(head);
            float* values = ValuesOf(head);
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, groupTiles * tileRows, headDim, TKernel.KeyTile);
            if (scratch.Runs.Length < component.MaxBlockRuns(seqLen))
            {
                scratch.Runs = new KeyRun[component.MaxBlockRuns(seqLen)];
            }

            int runCount = component.WriteBlockRuns(head, queryBlock, seqLen, Pattern.Causal, scratch.Runs);
            int group = 0;
            while (group < _gatherGroups - 1 && component.GatherGroup(head) != component.GatherGroup(_gatherHeads[group]))
            {
                group++;
            }

            for (int groupFirst = rowFirst; groupFirst < rowEnd; groupFirst += groupTiles * tileRows)
            {
                int groupRows = Math.Min(groupTiles * tileRows, rowEnd - groupFirst);
                int tiles = (groupRows + tileRows - 1) / tileRows;
                for (int t = 0; t < tiles; t++)
                {
                    StartRows(head, groupFirst + t * tileRows, 1, Math.Min(tileRows, groupRows - t * tileRows), scratch, t);
                }

                var tile = new BandTile
                {
                    Probabilities = scratch.Probabilities.AsSpan(0, tileRows * TKernel.KeyTile),
                    QueryStride = (int)Layout.Query.Row,
                    QueryStep = 1,
                    Left = int.MaxValue,
                    Head = head,
                    AlibiSlope = AlibiSlopeOf(head),
                    QueryPositionStep = 1,
                };
                for (int r = 0; r < runCount; r++)
                {
                    KeyRun run = scratch.Runs[r];
                    if (run.Step == 0)
                    {
                        tile.KeyPanels = ref *GatheredPanelsOf(group, kvHead);
                        tile.Values = ref *(GatheredValuePointer + _gatherValueOffsets[group] + (long)kvHead * _gatherLengths[group] * headDim);
                        tile.ValueStride = headDim;
                        if (TScores.ModifiesScores)
                        {
                            tile.GatheredKeyPositions = _gatheredPositions.AsSpan(_gatheredPositionOffsets[group], _gatherLengths[group] + TKernel.KeyTile);
                        }
                    }
                    else
                    {
                        tile.KeyPanels = ref *StreamPanels(run.Step, run.Residue, kvHead);
                        tile.Values = ref *(values + run.Residue * Layout.Value.Row);
                        tile.ValueStride = (int)(run.Step * Layout.Value.Row);
                        tile.GatheredKeyPositions = ReadOnlySpan<int>.Empty;
                        tile.KeyPosition = Slice.PositionBase + run.Residue;
                        tile.KeyPositionStep = run.Step;
                    }

                    // With the cut the rows sit at their own positions (stream = positions in step-1 streams), so
                    // right = 0 drops each row's later keys; without it every row sees the whole run.
                    tile.Right = run.CausalCut ? 0 : int.MaxValue;
                    for (long chunkFirst = run.First; chunkFirst <= run.Last; chunkFirst += BlockKeyChunk)
                    {
                        tile.KeyFirst = (int)chunkFirst;
                        tile.KeyLast = (int)Math.Min(run.Last, chunkFirst + BlockKeyChunk - 1);
                        for (int t = 0; t < tiles; t++)
                        {
                            int tileFirst = groupFirst + t * tileRows, rows = Math.Min(tileRows, groupRows - t * tileRows);
                            if (run.CausalCut && tileFirst + rows - 1 < chunkFirst)
                            {
                                // Every row of the tile is before the chunk: the cut leaves it nothing.
                                continue;
                            }

                            tile.Query = ref *QueryRow(head, tileFirst);
                            tile.QueryPosition = Slice.PositionBase + tileFirst;
                            tile.Rows = rows;
                            tile.FirstQuery = run.CausalCut ? tileFirst : 0;
                            tile.RowMax = scratch.RowMax.AsSpan(t * tileRows, tileRows);
                            tile.RowSum = scratch.RowSum.AsSpan(t * tileRows, tileRows);
                            tile.Accumulators = scratch.Accumulators.AsSpan(t * tileRows * headDim, tileRows * headDim);
                            TKernel.AccumulateBandTile<TScores>(ref tile);
                        }
                    }
                }

                for (int t = 0; t < tiles; t++)
                {
                    EndRows(head, groupFirst + t * tileRows, 1, Math.Min(tileRows, groupRows - t * tileRows), scratch, t);
                }
            }
        }

        /// <summary>
        /// For a view's layout: prefetches the <paramref name="rows"/> output rows this tile will write (when
        /// <paramref name="output"/>) and the query rows the next tile reads (<paramref name="nextRows"/> after this tile's).
        /// A view's rows of one head lie a page apart or nearly, where the hardware's page-local prefetchers find no stream.
        /// Over [B, S, H, D] views, swa-4k-w512's tiles ran 1.07x longer than over dense rows without this, 1.03x with it.
        /// (Copying each tile's query rows to dense scratch instead was slower.)
        /// </summary>
        private void PrefetchViewRows(int head, int firstPosition, int step, int rows, bool output, int nextRows)
        {
            int rowBytes = TKernel.HeadDim * sizeof(float);
            for (int t = 0; output && t < rows; t++)
            {
                PrefetchRow((byte*)(Output + Layout.Output.Of(head, firstPosition + t * step - Slice.QueryFirst)), rowBytes);
            }

            for (int t = rows; t < rows + nextRows; t++)
            {
                PrefetchRow((byte*)QueryRow(head, firstPosition + t * step), rowBytes);
            }

            static void PrefetchRow(byte* row, int bytes)
            {
                for (int line = 0; line < bytes; line += 64)
                {
                    if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
                    {
                        System.Runtime.Intrinsics.X86.Sse.Prefetch0(row + line);
                    }
                }
            }
        }

        /// <summary>
        /// A tile's rows start from a fresh state in the head's first pass, else from the state the last pass left. The
        /// state lives in the scratch's <paramref name="slot"/>-th tile of rows (a block's row group keeps several).
        /// </summary>
        private void StartRows(int head, int firstPosition, int step, int rows, WorkerScratch scratch, int slot = 0)
        {
            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows;
            Span<float> rowMax = scratch.RowMax.AsSpan(slot * tileRows, tileRows), rowSum = scratch.RowSum.AsSpan(slot * tileRows, tileRows);
            Span<float> accumulators = scratch.Accumulators.AsSpan(slot * tileRows * headDim, tileRows * headDim);
            rowMax.Fill(float.NegativeInfinity);
            rowSum.Clear();
            accumulators.Clear();
            for (int t = 0; Pass > 0 && t < rows; t++)
            {
                LoadState(head, firstPosition + t * step, ref rowMax[t], ref rowSum[t], accumulators.Slice(t * headDim, headDim));
            }
        }

        /// <summary>
        /// After a pass: hand the rows on when the head has a later pass, else finish them: keys of components that did not
        /// run as tiles through the row kernel (a row such a component covers whole is computed whole), then normalise.
        /// </summary>
        private void EndRows(int head, int firstPosition, int step, int rows, WorkerScratch scratch, int slot = 0)
        {
            int headDim = TKernel.HeadDim, tiled = Plan.TiledComponents[head], tileRows = TKernel.TileRows;
            bool handOn = Pass < tiled - 1;
            bool rowsNeedMore = tiled < Pattern.Components.Count;
            Span<float> rowMax = scratch.RowMax.AsSpan(slot * tileRows, tileRows), rowSum = scratch.RowSum.AsSpan(slot * tileRows, tileRows);
            if (!handOn && rowsNeedMore && AddSharedTails(head, firstPosition, step, rows, scratch, slot))
            {
                for (int t = 0; t < rows; t++)
                {
                    Finish(head, firstPosition + t * step, scratch.Accumulators.AsSpan((slot * tileRows + t) * headDim, headDim), rowMax[t], rowSum[t]);
                }

                return;
            }

            for (int t = 0; t < rows; t++)
            {
                int position = firstPosition + t * step;
                Span<float> accumulator = scratch.Accumulators.AsSpan((slot * tileRows + t) * headDim, headDim);
                if (handOn)
                {
                    StoreState(head, position, rowMax[t], rowSum[t], accumulator);
                    continue;
                }

                if (rowsNeedMore)
                {
                    int coveredBy;
                    ReadOnlySpan<KeySegment> segments;
                    ReadOnlySpan<int> segmentPositions = ReadOnlySpan<int>.Empty;
                    if (Plan.Tails.Filled)
                    {
                        segments = Plan.Tails.Get(head, position, out coveredBy);
                    }
                    else
                    {
                        int count = KeySegmentsOf(position, head, tiled, scratch, out coveredBy, out KeySegment[] written, out segmentPositions);
                        segments = written.AsSpan(0, count);
                    }

                    if (coveredBy >= tiled && step == 1 && t + 1 < rows && WholeRowsRunAsTiles)
                    {
                        // Rows a row-path component sees whole (global tokens' rows): the tile passes discarded, a run of two
                        // or more such rows computed again as one tile over every key. A lone row stays with the row kernel:
                        // a tile costs TileRows rows' arithmetic whatever it holds (lf-4k's two rows: 1.00x the time).
                        int run = 1;
                        while (t + run < rows && IsCoveredWhole(head, position + run, tiled, scratch))
                        {
                            run++;
                        }

                        if (run >= 2)
                        {
                            ComputeWholeRowsAsTile(head, position, run, scratch);
                            t += run - 1;
                            continue;
                        }

                        // The look-ahead may have reused the scratch this row's segments were written to.
                        segments = TailOf(head, position, scratch, out coveredBy);
                    }

                    if (coveredBy >= tiled)
                    {
                        // A row a row-path component sees whole: computed whole, the tile passes discarded.
                        ComputeWholeRow<TKernel, TScores>(ref *QueryRow(head, position), ref *KeysOf(head), ref *ValuesOf(head), segments, RowOf(head, position, segmentPositions), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), accumulator, out float wholeMax, out float wholeSum);
                        Finish(head, position, accumulator, wholeMax, wholeSum);
                        continue;
                    }

                    if (coveredBy < 0)
                    {
                        TKernel.AccumulateRow<TScores>(ref *QueryRow(head, position), ref *KeysOf(head), ref *ValuesOf(head), segments, RowOf(head, position, segmentPositions), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), ref rowMax[t], ref rowSum[t], accumulator);
                    }
                }

                Finish(head, position, accumulator, rowMax[t], rowSum[t]);
            }
        }

        /// <summary>
        /// Whether rows a row-path component covers whole run as tiles over every key (<see cref="ComputeWholeRowsAsTile"/>):
        /// when the keys are packed as one stream (a pass of stride 1) and not mapped to a slice or cache slots. Else the
        /// row kernel computes them, one horizontal sum per key: Longformer with 32 global question tokens (lf-q32-4k) took
        /// 1.11x / 1.08x / 1.03x the time that way on Vector512 / Vector256 / Vector128 (BENCHMARKS.md, issue 16).
        /// </summary>
        private bool WholeRowsRunAsTiles => Slice.KeyRangeCount == 0 && Slice.Slots is null && Array.IndexOf(_steps, 1, 0, _stepCount) >= 0;

        private bool IsCoveredWhole(int head, int position, int tiled, WorkerScratch scratch)
        {
            TailOf(head, position, scratch, out int coveredBy);
            return coveredBy >= tiled;
        }

        /// <summary>
        /// Computes <paramref name="count"/> consecutive rows from <paramref name="position"/> on, each of which sees every key
        /// up to its last ([0, position] causal, else the whole sequence), as one tile from a fresh state over the stride-1
        /// stream's panels, then finishes them. The tile's own state, so the caller's tile slots stay as they are.
        /// </summary>
        private void ComputeWholeRowsAsTile(int head, int position, int count, WorkerScratch scratch)
        {
            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows;
            scratch.GrowWholeRows(tileRows, headDim);
            Span<float> rowMax = scratch.WholeRowMax.AsSpan(0, tileRows), rowSum = scratch.WholeRowSum.AsSpan(0, tileRows);
            Span<float> accumulators = scratch.WholeAccumulators.AsSpan(0, tileRows * headDim);
            rowMax.Fill(float.NegativeInfinity);
            rowSum.Clear();
            accumulators.Clear();
            var tile = new BandTile
            {
                Query = ref *QueryRow(head, position),
                QueryStride = (int)Layout.Query.Row,
                Rows = count,
                KeyPanels = ref *StreamPanels(1, 0, Shape.KvHeadOf(head)),
                Values = ref *ValuesOf(head),
                ValueStride = (int)Layout.Value.Row,
                FirstQuery = position,
                QueryStep = 1,
                Left = int.MaxValue,
                Right = Pattern.Causal ? 0 : int.MaxValue,
                KeyFirst = 0,
                KeyLast = Pattern.Causal ? position + count - 1 : Shape.SeqLen - 1,
                RowMax = rowMax,
                RowSum = rowSum,
                Accumulators = accumulators,
                Probabilities = scratch.Probabilities.AsSpan(0, tileRows * TKernel.KeyTile),
                Head = head,
                AlibiSlope = AlibiSlopeOf(head),
                QueryPosition = Slice.PositionBase + position,
                QueryPositionStep = 1,
                KeyPosition = Slice.PositionBase,
                KeyPositionStep = 1,
            };
            TKernel.AccumulateBandTile<TScores>(ref tile);
            for (int r = 0; r < count; r++)
            {
                Finish(head, position + r, accumulators.Slice(r * headDim, headDim), rowMax[r], rowSum[r]);
            }
        }

        /// <summary>
        /// The tile's row-kernel tails in one go (<see cref="TileTails"/>) when every row has the same few keys left and no
        /// score modifier needs the row kernel; false (nothing done) otherwise.
        /// </summary>
        private bool AddSharedTails(int head, int firstPosition, int step, int rows, WorkerScratch scratch, int slot)
        {
            // Rows whose keys are mapped (a slice of the keys, cache slots) keep the row kernel; so do plans without a
            // table whose tails are computed as they go: they take the same shared path, so both give the same bits.
            bool mapped = Slice.KeyRangeCount > 0 || Slice.Slots is not null;
            if (TScores.ModifiesScores || mapped || rows > TileTails.MaxRows)
            {
                return false;
            }

            Span<KeySegment> shared = stackalloc KeySegment[TileTails.MaxKeys];
            int sharedCount = SharedTailCandidate(head, firstPosition, scratch, shared);
            if (sharedCount < 0)
            {
                return false;
            }

            shared = shared.Slice(0, sharedCount);
            // The table knows runs of equal tails (one lookup); rows it cannot vouch for are compared one by one.
            bool knownShared = Plan.Tails.Filled && step == 1 && Plan.Tails.SharedByRun(head, firstPosition, rows);
            for (int t = 1; t < rows && !knownShared; t++)
            {
                if (!TailOf(head, firstPosition + t * step, scratch, out int rowCoveredBy).SequenceEqual(shared) || rowCoveredBy >= 0)
                {
                    return false;
                }
            }

            Span<int> positions = stackalloc int[TileTails.MaxKeys];
            int keyCount = TileTails.Flatten(shared, positions);
            if (keyCount < 0)
            {
                return false;
            }

            Span<nint> queryRows = stackalloc nint[TileTails.MaxRows];
            for (int t = 0; t < rows; t++)
            {
                queryRows[t] = (nint)QueryRow(head, firstPosition + t * step);
            }

            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows;
            TileTails.Add<TScores>(TKernel.Lanes, rows, queryRows.Slice(0, rows), KeysOf(head), ValuesOf(head), headDim, positions.Slice(0, keyCount), Scale,
                scratch.RowMax.AsSpan(slot * tileRows, rows), scratch.RowSum.AsSpan(slot * tileRows, rows), scratch.Accumulators.AsSpan(slot * tileRows * headDim, rows * headDim));
            return true;
        }

        /// <summary>
        /// Row <paramref name="position"/>'s tail after the tiled components: from the table when it is filled, else
        /// computed into the worker's scratch (valid until the next call).
        /// </summary>
        private ReadOnlySpan<KeySegment> TailOf(int head, int position, WorkerScratch scratch, out int coveredBy)
        {
            if (Plan.Tails.Filled)
            {
                return Plan.Tails.Get(head, position, out coveredBy);
            }

            int count = KeySegmentsOf(position, head, Plan.TiledComponents[head], scratch, out coveredBy, out KeySegment[] written, out _);
            return written.AsSpan(0, count);
        }

        /// <summary>
        /// The first row's tail copied to <paramref name="copy"/> (its segment count), or -1 when it cannot be shared:
        /// a row-path component covers the row, or it has more segments than <paramref name="copy"/> holds.
        /// </summary>
        private int SharedTailCandidate(int head, int position, WorkerScratch scratch, Span<KeySegment> copy)
        {
            ReadOnlySpan<KeySegment> tail = TailOf(head, position, scratch, out int coveredBy);
            if (coveredBy >= 0 || tail.Length > copy.Length)
            {
                return -1;
            }

            tail.CopyTo(copy);
            return tail.Length;
        }

        private void StoreState(int head, int position, float max, float sum, ReadOnlySpan<float> accumulator)
        {
            int headDim = TKernel.HeadDim;
            Span<float> state = _state.AsSpan((int)(((long)head * Slice.QueryRows + position - Slice.QueryFirst) * (headDim + 2)), headDim + 2);
            state[0] = max;
            state[1] = sum;
            accumulator.CopyTo(state.Slice(2));
        }

        private void LoadState(int head, int position, ref float max, ref float sum, Span<float> accumulator)
        {
            int headDim = TKernel.HeadDim;
            ReadOnlySpan<float> state = _state.AsSpan((int)(((long)head * Slice.QueryRows + position - Slice.QueryFirst) * (headDim + 2)), headDim + 2);
            max = state[0];
            sum = state[1];
            state.Slice(2).CopyTo(accumulator);
        }
    }

    /// <summary>Per-thread buffers, grown on demand and reused, so steady-state calls allocate nothing.</summary>
    internal sealed partial class WorkerScratch
    {
        [ThreadStatic]
        private static WorkerScratch? t_instance;

        public KeySegment[] Segments = Array.Empty<KeySegment>();
        public KeySegment[] MappedSegments = Array.Empty<KeySegment>();
        public int[] MappedPositions = Array.Empty<int>();
        public KeySegment[] ClippedSegments = Array.Empty<KeySegment>();
        public KeyRun[] Runs = Array.Empty<KeyRun>();
        public float[] RowScratch = Array.Empty<float>();
        public float[] RowMax = Array.Empty<float>();
        public float[] RowSum = Array.Empty<float>();
        public float[] Accumulators = Array.Empty<float>();
        public float[] Probabilities = Array.Empty<float>();

        // One tile's state for rows computed whole (TiledJob.ComputeWholeRowsAsTile), apart from the item's tile slots.
        public float[] WholeRowMax = Array.Empty<float>();
        public float[] WholeRowSum = Array.Empty<float>();
        public float[] WholeAccumulators = Array.Empty<float>();

        /// <summary>Grows the whole-row tile's state to <paramref name="tileRows"/> rows of <paramref name="headDim"/>.</summary>
        public void GrowWholeRows(int tileRows, int headDim)
        {
            if (WholeRowMax.Length < tileRows)
            {
                WholeRowMax = new float[tileRows];
                WholeRowSum = new float[tileRows];
            }

            if (WholeAccumulators.Length < tileRows * headDim)
            {
                WholeAccumulators = new float[tileRows * headDim];
            }
        }

        /// <summary>
        /// This thread's buffers, large enough for <paramref name="pattern"/>'s key segments (as positions, and mapped to
        /// slots or clipped to a block of them by decode) and for the given tile.
        /// </summary>
        public static WorkerScratch ForThisThread(AttentionPattern pattern, int rowScratch, int tileRows, int headDim, int keyTile)
        {
            WorkerScratch scratch = t_instance ??= new WorkerScratch();
            if (scratch.Segments.Length < pattern.MaxSegmentsPerQuery) scratch.Segments = new KeySegment[pattern.MaxSegmentsPerQuery];
            if (scratch.MappedSegments.Length < SlotMap.MaxSlotSegments(pattern))
            {
                scratch.MappedSegments = new KeySegment[SlotMap.MaxSlotSegments(pattern)];
                scratch.MappedPositions = new int[SlotMap.MaxSlotSegments(pattern)];
                scratch.ClippedSegments = new KeySegment[SlotMap.MaxSlotSegments(pattern)];
            }

            if (scratch.RowScratch.Length < rowScratch) scratch.RowScratch = new float[rowScratch];
            if (scratch.RowMax.Length < tileRows)
            {
                scratch.RowMax = new float[tileRows];
                scratch.RowSum = new float[tileRows];
            }

            if (scratch.Accumulators.Length < tileRows * headDim) scratch.Accumulators = new float[tileRows * headDim];
            if (scratch.Probabilities.Length < tileRows * keyTile) scratch.Probabilities = new float[tileRows * keyTile];
            return scratch;
        }
    }
}
