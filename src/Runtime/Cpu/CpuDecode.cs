using System;
using System.Buffers;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using SparseAttention.Decode;

namespace SparseAttention.Cpu;

/// <summary>
/// Runs generated kernels against a rolling <see cref="KvCache"/>: the newest token (<see cref="Decode{TKernel}"/>, the
/// row kernel split over blocks of slots) or a prompt in chunks (<see cref="PrefillTiled{TKernel}"/>, the window band
/// as tiles over each chunk's gathered keys; <see cref="Prefill{TKernel}"/> row by row for the scalar kernel). Each
/// row's keys are the pattern's own key segments (<see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment}, out int)"/>)
/// mapped to the slots that hold them (<see cref="SlotMap"/>), so decode sees exactly what the whole-sequence kernels
/// would. Generated <c>Decode</c> and <c>Prefill</c> validate their arguments, then call this.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static unsafe class CpuDecode
{
    /// <summary>Query rows per work item when a prefill chunk is split over threads.</summary>
    private const int RowsPerWorkItem = 16;

    /// <summary>
    /// Cache slots per decode work item. A block's keys and values (256 x HeadDim x 8 bytes: 256 KiB at HeadDim 128)
    /// stay in a core's L2 while every query head of its KV head reads them.
    /// </summary>
    internal const int SlotsPerBlock = 256;

    /// <summary>
    /// Attention for the newest token in <paramref name="cache"/> (position Count - 1): <paramref name="query"/> and
    /// <paramref name="output"/> are <c>[Heads, HeadDim]</c>. Split over (KV head, block of slots), as FlashDecoding
    /// splits over keys: each work item runs every query head of its KV head over the block's keys from a fresh online
    /// softmax state, so the block is read from memory once instead of once per head; the partial states are then
    /// merged per head (rescaled to the largest max) and normalised.
    /// </summary>
    public static void Decode<TKernel>(KvCache cache, ReadOnlySpan<float> query, Span<float> output, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
    {
        int heads = query.Length / TKernel.HeadDim;
        int position = (int)(cache.Count - 1);
        fixed (float* keys = cache.Keys, values = cache.Values, queryPointer = query, outputPointer = output)
        {
            var store = new KvStore(keys, values, cache.KvHeads, cache.Capacity, cache.Map);
            DecodeJob<TKernel> job = DecodeJob<TKernel>.ForThisThread();
            job.Prepare(cache.Pattern, store, queryPointer, heads, position, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E);
            long roughPairs = (long)heads * Math.Min(position + 1L, cache.RingSlots);
            WorkerPool.Shared.Run(job, job.Items, CpuAttention.Threads(options, roughPairs));
            job.Combine(outputPointer);
        }
    }

    /// <summary>
    /// Attention for a prompt that continues the stream in <paramref name="cache"/> (its first token is at position
    /// Count), in chunks of at most the cache's ring: each chunk's rows run against the keys the ring still holds, the
    /// pinned global tokens and the chunk itself, then the chunk is appended. Layout as <c>Forward</c>'s.
    /// </summary>
    public static void Prefill<TKernel>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel =>
        PrefillChunks<TKernel, RowChunk<TKernel>>(cache, query, key, value, output, shape, options);

    /// <summary>
    /// As <see cref="Prefill{TKernel}"/>, with each chunk's window band as register-blocked tiles (the schedule
    /// <c>Forward</c> uses, over the chunk's linear run of keys), and only global columns and rows per row.
    /// </summary>
    public static void PrefillTiled<TKernel>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionTileKernel
    {
        if (cache.Pattern.HasWindow)
        {
            PrefillChunks<TKernel, TiledChunk<TKernel>>(cache, query, key, value, output, shape, options);
        }
        else
        {
            PrefillChunks<TKernel, RowChunk<TKernel>>(cache, query, key, value, output, shape, options);
        }
    }

    private static void PrefillChunks<TKernel, TChunk>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
        where TChunk : struct, IChunkRunner
    {
        int headDim = TKernel.HeadDim, chunk = cache.RingSlots, pinned = cache.PinnedSlots;

        // A chunk's rows reach at most RingSlots - 1 positions before its first one.
        int scratchSlots = cache.RingSlots - 1 + Math.Min(chunk, shape.SeqLen) + pinned;
        int scratchFloats = checked(cache.KvHeads * scratchSlots * headDim);
        float[] scratchKeys = ArrayPool<float>.Shared.Rent(scratchFloats);
        float[] scratchValues = ArrayPool<float>.Shared.Rent(scratchFloats);
        try
        {
            fixed (float* keys = scratchKeys, values = scratchValues, queryPointer = query, outputPointer = output)
            {
                for (int first = 0; first < shape.SeqLen; first += chunk)
                {
                    int rows = Math.Min(chunk, shape.SeqLen - first);
                    int start = (int)cache.Count;
                    KvStore store = GatherChunk(cache, key, value, shape.SeqLen, first, rows, keys, values);
                    TChunk.Run(cache.Pattern, store, queryPointer, outputPointer, shape, first, start, rows, options);
                    cache.AppendFromSequence(key, value, shape.SeqLen, first, rows);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratchKeys);
            ArrayPool<float>.Shared.Return(scratchValues);
        }
    }

    /// <summary>
    /// Lays out, per KV head, the positions a chunk's rows can see as one linear run (the ring's positions from
    /// RingSlots - 1 before the chunk, then the chunk's own tokens) followed by the cache's pinned slots.
    /// </summary>
    private static KvStore GatherChunk(KvCache cache, ReadOnlySpan<float> key, ReadOnlySpan<float> value, int seqLen, int first, int rows, float* keys, float* values)
    {
        int headDim = cache.HeadDim;
        long start = cache.Count;
        long oldest = Math.Max(0, start - (cache.RingSlots - 1));
        int history = (int)(start - oldest);
        int linear = history + rows;
        int slots = linear + cache.PinnedSlots;
        SlotMap ring = cache.Map;
        for (int kvHead = 0; kvHead < cache.KvHeads; kvHead++)
        {
            var destinationKeys = new Span<float>(keys + (long)kvHead * slots * headDim, slots * headDim);
            var destinationValues = new Span<float>(values + (long)kvHead * slots * headDim, slots * headDim);
            ReadOnlySpan<float> cacheKeys = cache.Keys.AsSpan(kvHead * cache.Capacity * headDim, cache.Capacity * headDim);
            ReadOnlySpan<float> cacheValues = cache.Values.AsSpan(kvHead * cache.Capacity * headDim, cache.Capacity * headDim);

            // History from the ring, in at most two runs (before and after the ring's end).
            int copied = 0;
            while (copied < history)
            {
                int slot = ring.RingSlot(oldest + copied);
                int run = Math.Min(history - copied, cache.RingSlots - slot);
                cacheKeys.Slice(slot * headDim, run * headDim).CopyTo(destinationKeys.Slice(copied * headDim));
                cacheValues.Slice(slot * headDim, run * headDim).CopyTo(destinationValues.Slice(copied * headDim));
                copied += run;
            }

            // The chunk's own tokens, contiguous in the [KvHeads, SeqLen, HeadDim] input.
            int from = (kvHead * seqLen + first) * headDim;
            key.Slice(from, rows * headDim).CopyTo(destinationKeys.Slice(history * headDim));
            value.Slice(from, rows * headDim).CopyTo(destinationValues.Slice(history * headDim));

            // Pinned global tokens; only those before the history are read from here.
            cacheKeys.Slice(cache.RingSlots * headDim, cache.PinnedSlots * headDim).CopyTo(destinationKeys.Slice(linear * headDim));
            cacheValues.Slice(cache.RingSlots * headDim, cache.PinnedSlots * headDim).CopyTo(destinationValues.Slice(linear * headDim));
        }

        return new KvStore(keys, values, cache.KvHeads, slots, new SlotMap(origin: oldest, ringSlots: linear, oldest, cache.PinnedPositions));
    }

    /// <summary>How one prefill chunk's rows are computed against its gathered keys.</summary>
    private interface IChunkRunner
    {
        /// <summary>Rows <paramref name="first"/> .. first + rows - 1 of the prompt (stream positions from <paramref name="start"/>).</summary>
        static abstract void Run(AttentionPattern pattern, KvStore store, float* query, float* output, AttentionShape shape, int first, int start, int rows, AttentionOptions options);
    }

    /// <summary>Every row through the row kernel over its mapped key segments.</summary>
    private readonly struct RowChunk<TKernel> : IChunkRunner
        where TKernel : struct, IAttentionRowKernel
    {
        public static void Run(AttentionPattern pattern, KvStore store, float* query, float* output, AttentionShape shape, int first, int start, int rows, AttentionOptions options) =>
            RunRows<TKernel>(pattern, store, query, output, shape.Heads, shape.SeqLen, first, start, rows, options);
    }

    /// <summary>
    /// The window band as tiles over the chunk's linear keys: the store's ring part holds positions from its origin
    /// on with no wrap, so linear index = position - origin, and the band (relative to the query) is the same there.
    /// </summary>
    private readonly struct TiledChunk<TKernel> : IChunkRunner
        where TKernel : struct, IAttentionTileKernel
    {
        public static void Run(AttentionPattern pattern, KvStore store, float* query, float* output, AttentionShape shape, int first, int start, int rows, AttentionOptions options)
        {
            int history = (int)(start - store.Map.Origin);
            var linear = new AttentionShape(shape.Heads, shape.KvHeads, store.Map.RingSlots);
            var window = new CpuAttention.SequenceWindow(QueryFirst: history, QueryRows: rows, QueryLayoutRows: shape.SeqLen, KeyStride: store.SlotsPerKvHead, PositionBase: (int)store.Map.Origin, Slots: store.Map);
            long rowOffset = (long)first * TKernel.HeadDim;
            CpuAttention.RunTiledChunk<TKernel>(pattern, query + rowOffset, store.Keys, store.Values, output + rowOffset, linear, window, options);
        }
    }

    private static void RunRows<TKernel>(AttentionPattern pattern, KvStore store, float* query, float* output, int heads, int layoutRows, int firstRow, int firstPosition, int rows, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
    {
        long roughPairs = (long)heads * rows * Math.Min((long)firstPosition + rows, store.Map.RingSlots);
        int threads = CpuAttention.Threads(options, roughPairs);
        RowsJob<TKernel> job = RowsJob<TKernel>.ForThisThread();
        job.Prepare(pattern, store, query, output, heads, layoutRows, firstRow, firstPosition, rows, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E);
        WorkerPool.Shared.Run(job, job.Items, threads);
    }

    /// <summary>Keys and values as <c>[KvHeads, SlotsPerKvHead, HeadDim]</c> and where each position sits in them.</summary>
    private readonly struct KvStore
    {
        public KvStore(float* keys, float* values, int kvHeads, int slotsPerKvHead, SlotMap map)
        {
            KvHeads = kvHeads;
            Keys = keys;
            Values = values;
            SlotsPerKvHead = slotsPerKvHead;
            Map = map;
        }

        public int KvHeads { get; }

        public float* Keys { get; }

        public float* Values { get; }

        public int SlotsPerKvHead { get; }

        public SlotMap Map { get; }
    }

    /// <summary>Rows of consecutive positions for every head, against one store; work items are (head, block of rows).</summary>
    private sealed class RowsJob<TKernel> : WorkerPool.Job
        where TKernel : struct, IAttentionRowKernel
    {
        [ThreadStatic]
        private static RowsJob<TKernel>? t_instance;

        [ThreadStatic]
        private static RowScratch? t_scratch;

        public int Items;
        private AttentionPattern _pattern = null!;
        private KvStore _store;
        private float* _query, _output;
        private int _groupSize, _layoutRows, _firstRow, _firstPosition, _rows, _blocksPerHead;
        private float _scale;

        public static RowsJob<TKernel> ForThisThread() => t_instance ??= new RowsJob<TKernel>();

        public void Prepare(AttentionPattern pattern, KvStore store, float* query, float* output, int heads, int layoutRows, int firstRow, int firstPosition, int rows, float scale)
        {
            _pattern = pattern;
            _store = store;
            _query = query;
            _output = output;
            _groupSize = heads / store.KvHeads;
            _layoutRows = layoutRows;
            _firstRow = firstRow;
            _firstPosition = firstPosition;
            _rows = rows;
            _scale = scale;
            _blocksPerHead = (rows + RowsPerWorkItem - 1) / RowsPerWorkItem;
            Items = heads * _blocksPerHead;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            int headDim = TKernel.HeadDim;
            int head = item / _blocksPerHead;
            int firstRow = item % _blocksPerHead * RowsPerWorkItem;
            int lastRow = Math.Min(firstRow + RowsPerWorkItem, _rows);
            long kvOffset = (long)(head / _groupSize) * _store.SlotsPerKvHead * headDim;
            RowScratch scratch = RowScratch.ForThisThread(ref t_scratch, _pattern, TKernel.ScratchLength, headDim);
            for (int row = firstRow; row < lastRow; row++)
            {
                int position = _firstPosition + row;
                int count = _pattern.GetKeySegments(position, head, position + 1, scratch.Positions);
                int slots = _store.Map.ToSlots(scratch.Positions.AsSpan(0, count), scratch.Slots);
                long rowOffset = ((long)head * _layoutRows + _firstRow + row) * headDim;
                CpuAttention.ComputeWholeRow<TKernel>(ref *(_query + rowOffset), ref *(_store.Keys + kvOffset), ref *(_store.Values + kvOffset), _output + rowOffset, scratch.Slots.AsSpan(0, slots), _scale, scratch.Row.AsSpan(0, TKernel.ScratchLength), scratch.Accumulator.AsSpan(0, headDim));
            }
        }
    }

    /// <summary>The newest token's rows, split over (KV head, block of slots); see <see cref="Decode{TKernel}"/>.</summary>
    private sealed class DecodeJob<TKernel> : WorkerPool.Job
        where TKernel : struct, IAttentionRowKernel
    {
        [ThreadStatic]
        private static DecodeJob<TKernel>? t_instance;

        [ThreadStatic]
        private static RowScratch? t_scratch;

        public int Items;
        private AttentionPattern _pattern = null!;
        private KvStore _store;
        private float* _query;
        private int _heads, _groupSize, _position, _blocks;
        private float _scale;

        // Per (head, block): the partial state, max and sum then HeadDim floats of unnormalised output.
        private float[] _partials = Array.Empty<float>();

        public static DecodeJob<TKernel> ForThisThread() => t_instance ??= new DecodeJob<TKernel>();

        private static int PartialLength => TKernel.HeadDim + 2;

        public void Prepare(AttentionPattern pattern, KvStore store, float* query, int heads, int position, float scale)
        {
            _pattern = pattern;
            _store = store;
            _query = query;
            _heads = heads;
            _groupSize = heads / store.KvHeads;
            _position = position;
            _scale = scale;
            _blocks = (store.SlotsPerKvHead + SlotsPerBlock - 1) / SlotsPerBlock;
            Items = store.KvHeads * _blocks;
            int partials = heads * _blocks * PartialLength;
            if (_partials.Length < partials)
            {
                _partials = new float[partials];
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            int headDim = TKernel.HeadDim;
            int kvHead = item / _blocks, block = item % _blocks;
            int firstSlot = block * SlotsPerBlock, endSlot = Math.Min(firstSlot + SlotsPerBlock, _store.SlotsPerKvHead);
            long kvOffset = (long)kvHead * _store.SlotsPerKvHead * headDim;
            RowScratch scratch = RowScratch.ForThisThread(ref t_scratch, _pattern, TKernel.ScratchLength, headDim);
            for (int head = kvHead * _groupSize; head < (kvHead + 1) * _groupSize; head++)
            {
                int count = _pattern.GetKeySegments(_position, head, _position + 1, scratch.Positions);
                int slots = _store.Map.ToSlots(scratch.Positions.AsSpan(0, count), scratch.Slots);
                int inBlock = ClipToSlots(scratch.Slots.AsSpan(0, slots), firstSlot, endSlot, scratch.Clipped);
                Span<float> partial = _partials.AsSpan((head * _blocks + block) * PartialLength, PartialLength);
                float max = float.NegativeInfinity, sum = 0f;
                Span<float> accumulator = partial.Slice(2);
                accumulator.Clear();
                if (inBlock > 0)
                {
                    TKernel.AccumulateRow(ref *(_query + (long)head * headDim), ref *(_store.Keys + kvOffset), ref *(_store.Values + kvOffset), scratch.Clipped.AsSpan(0, inBlock), _scale, scratch.Row.AsSpan(0, TKernel.ScratchLength), ref max, ref sum, accumulator);
                }

                partial[0] = max;
                partial[1] = sum;
            }
        }

        /// <summary>Merges each head's partial states (base 2, like the kernels' softmax) and writes the normalised row.</summary>
        public void Combine(float* output)
        {
            int headDim = TKernel.HeadDim;
            for (int head = 0; head < _heads; head++)
            {
                Span<float> partials = _partials.AsSpan(head * _blocks * PartialLength, _blocks * PartialLength);
                float max = float.NegativeInfinity;
                for (int block = 0; block < _blocks; block++)
                {
                    max = Math.Max(max, partials[block * PartialLength]);
                }

                // The first block with keys collects the others, each rescaled by 2^(its max - the largest).
                Span<float> total = partials.Slice(2, headDim);
                float sum = 0f;
                for (int block = 0; block < _blocks; block++)
                {
                    Span<float> partial = partials.Slice(block * PartialLength, PartialLength);
                    if (partial[1] == 0f)
                    {
                        continue;
                    }

                    float weight = float.Exp2(partial[0] - max);
                    sum += partial[1] * weight;
                    Span<float> accumulator = partial.Slice(2, headDim);
                    for (int d = 0; d < headDim; d++)
                    {
                        // Block 0's accumulator is the total itself (zeros when it had no keys).
                        total[d] = block == 0 ? total[d] * weight : total[d] + accumulator[d] * weight;
                    }
                }

                CpuAttention.WriteNormalised(total, sum, output + (long)head * headDim);
            }
        }

        /// <summary>The parts of <paramref name="segments"/> whose slots lie in [<paramref name="first"/>, <paramref name="end"/>).</summary>
        private static int ClipToSlots(ReadOnlySpan<KeySegment> segments, int first, int end, Span<KeySegment> destination)
        {
            int count = 0;
            foreach (KeySegment segment in segments)
            {
                long firstIndex = segment.Start >= first ? 0 : ((long)first - segment.Start + segment.Step - 1) / segment.Step;
                long lastIndex = segment.Last < end ? segment.Count - 1 : ((long)end - 1 - segment.Start) / segment.Step;
                if (segment.Start < end && firstIndex <= lastIndex)
                {
                    destination[count++] = new KeySegment((int)(segment.Start + firstIndex * segment.Step), segment.Step, (int)(lastIndex - firstIndex + 1));
                }
            }

            return count;
        }
    }

    /// <summary>Per-thread buffers for one row at a time, grown on demand, so steady-state decode allocates nothing.</summary>
    private sealed class RowScratch
    {
        public KeySegment[] Positions = Array.Empty<KeySegment>();
        public KeySegment[] Slots = Array.Empty<KeySegment>();
        public KeySegment[] Clipped = Array.Empty<KeySegment>();
        public float[] Row = Array.Empty<float>();
        public float[] Accumulator = Array.Empty<float>();

        public static RowScratch ForThisThread(ref RowScratch? instance, AttentionPattern pattern, int rowScratch, int headDim)
        {
            RowScratch scratch = instance ??= new RowScratch();
            if (scratch.Positions.Length < pattern.MaxSegmentsPerQuery) scratch.Positions = new KeySegment[pattern.MaxSegmentsPerQuery];
            if (scratch.Slots.Length < SlotMap.MaxSlotSegments(pattern))
            {
                scratch.Slots = new KeySegment[SlotMap.MaxSlotSegments(pattern)];
                scratch.Clipped = new KeySegment[SlotMap.MaxSlotSegments(pattern)];
            }

            if (scratch.Row.Length < rowScratch) scratch.Row = new float[rowScratch];
            if (scratch.Accumulator.Length < headDim) scratch.Accumulator = new float[headDim];
            return scratch;
        }
    }
}
