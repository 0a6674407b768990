using System;
using System.Buffers;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using SparseAttention.Cpu;

namespace SparseAttention.Decode;

/// <summary>
/// Runs generated kernels against a rolling <see cref="KvCache"/>: the newest token (<see cref="Decode{TKernel, TScores}(KvCache, ReadOnlySpan{float}, Span{float}, AttentionOptions, ReadOnlySpan{float})"/>, the
/// row kernel split over blocks of slots) or a prompt in chunks (<see cref="PrefillTiled{TKernel, TScores}"/>, the window band
/// as tiles over each chunk's gathered keys; <see cref="Prefill{TKernel, TScores}"/> row by row for the scalar kernel). Each
/// row's keys are the pattern's own key segments (<see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment}, int, out int)"/>)
/// mapped to the slots that hold them (<see cref="SlotMap"/>), so decode sees exactly what the whole-sequence kernels
/// would. Generated <c>Decode</c> and <c>Prefill</c> validate their arguments, then call this.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static unsafe class CpuDecode
{
    /// <summary>
    /// The fewest cache slots per decode work item (two of the group kernel's tiles). Blocks are as long as the threads
    /// allow (<see cref="SlotsPerBlock"/>): each block starts with a tile nothing prefetched, and the partial states of
    /// many blocks cost a merge; Mistral's 4,096-slot ring ran 1.3x faster per token in blocks of 1,024 or 4,096 than of 256.
    /// </summary>
    internal const int MinSlotsPerBlock = 2 * GroupDecodeKernel.TileKeys;

    /// <summary>Work items wanted per thread, so a thread that finishes early takes another.</summary>
    private const int ItemsPerThread = 4;

    /// <summary>
    /// Slots per block for a KV head's <paramref name="slots"/>: split into as many blocks as <paramref name="threads"/>
    /// need for <see cref="ItemsPerThread"/> items each (the KV heads are items too), no shorter than
    /// <see cref="MinSlotsPerBlock"/>, rounded up to whole tiles.
    /// </summary>
    internal static int SlotsPerBlock(int slots, int kvHeads, int threads)
    {
        int blocksPerKvHead = Math.Max(1, (ItemsPerThread * threads + kvHeads - 1) / kvHeads);
        int blockSlots = Math.Max(MinSlotsPerBlock, (slots + blocksPerKvHead - 1) / blocksPerKvHead);
        return (blockSlots + GroupDecodeKernel.TileKeys - 1) / GroupDecodeKernel.TileKeys * GroupDecodeKernel.TileKeys;
    }

    /// <summary>
    /// Attention for the newest token in <paramref name="cache"/> (position Count - 1): <paramref name="query"/> and
    /// <paramref name="output"/> are <c>[Heads, HeadDim]</c>. Split over (KV head, block of slots), as FlashDecoding
    /// splits over keys: each work item runs every query head of its KV head over the block's keys from a fresh online
    /// softmax state, so the block is read from memory once instead of once per head; the partial states are then
    /// merged per head (rescaled to the largest max) and normalised.
    /// </summary>
    public static void Decode<TKernel, TScores>(KvCache cache, ReadOnlySpan<float> query, Span<float> output, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        int heads = query.Length / TKernel.HeadDim;
        fixed (float* queryPointer = query, outputPointer = output, sinks = sinkLogits)
        {
            DecodeJob<TKernel, TScores> job = DecodeJob<TKernel, TScores>.ForThisThread(0);
            int threads = CpuAttention.Threads(options, RoughPairs(cache, heads));
            job.Prepare(cache, queryPointer, heads, options, threads);
            WorkerPool.Shared.Run(job, job.Items, threads);
            job.Combine(outputPointer, sinkLogits.IsEmpty ? null : sinks);
        }

        // The job read the cache's native memory by pointer: the cache (whose finalizer frees it) must outlive the run.
        GC.KeepAlive(cache);
    }

    /// <summary>
    /// Continuous batching: the newest token of every stream, <paramref name="query"/> and <paramref name="output"/> being
    /// <c>[streams, Heads, HeadDim]</c> and stream i decoded against <paramref name="caches"/>[i] at its own position. One
    /// parallel run over every stream's (KV head, block) items, so no stream waits for the slowest item of the one before.
    /// </summary>
    public static void Decode<TKernel, TScores>(ReadOnlySpan<KvCache> caches, ReadOnlySpan<float> query, Span<float> output, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        int rowFloats = query.Length / caches.Length, heads = rowFloats / TKernel.HeadDim;
        fixed (float* queryPointer = query, outputPointer = output, sinks = sinkLogits)
        {
            long roughPairs = 0;
            foreach (KvCache cache in caches)
            {
                roughPairs += RoughPairs(cache, heads);
            }

            int threads = CpuAttention.Threads(options, roughPairs);
            StreamsJob<TKernel, TScores> batch = StreamsJob<TKernel, TScores>.ForThisThread(caches.Length);
            for (int stream = 0; stream < caches.Length; stream++)
            {
                batch.Streams[stream].Prepare(caches[stream], queryPointer + (long)stream * rowFloats, heads, options, threads);
            }

            WorkerPool.Shared.Run(batch, batch.CountItems(caches.Length), threads);
            for (int stream = 0; stream < caches.Length; stream++)
            {
                batch.Streams[stream].Combine(outputPointer + (long)stream * rowFloats, sinkLogits.IsEmpty ? null : sinks);
            }
        }

        // As above; the span's caches are the caller's, but nothing here says they are still referenced.
        foreach (KvCache cache in caches)
        {
            GC.KeepAlive(cache);
        }
    }

    private static long RoughPairs(KvCache cache, int heads) => (long)heads * Math.Min(cache.Count, cache.RingSlots);

    /// <summary>
    /// Attention for a prompt that continues the stream in <paramref name="cache"/> (its first token is at position
    /// Count), in chunks of at most the cache's ring: each chunk's rows run against the keys the ring still holds, the
    /// pinned global tokens and the chunk itself, then the chunk is appended. Layout as <c>Forward</c>'s.
    /// </summary>
    public static void Prefill<TKernel, TScores>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default)
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier =>
        PrefillChunks<TKernel, RowChunk<TKernel, TScores>>(cache, query, key, value, output, shape, options, sinkLogits);

    /// <summary>
    /// As <see cref="Prefill{TKernel, TScores}"/>, with each chunk's window band as register-blocked tiles (the schedule
    /// <c>Forward</c> uses, over the chunk's linear run of keys), and only global columns and rows per row.
    /// </summary>
    public static void PrefillTiled<TKernel, TScores>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options, ReadOnlySpan<float> sinkLogits = default)
        where TKernel : struct, IAttentionTileKernel
        where TScores : struct, IScoreModifier
    {
        if (cache.Pattern.HasWindow)
        {
            PrefillChunks<TKernel, TiledChunk<TKernel, TScores>>(cache, query, key, value, output, shape, options, sinkLogits);
        }
        else
        {
            PrefillChunks<TKernel, RowChunk<TKernel, TScores>>(cache, query, key, value, output, shape, options, sinkLogits);
        }
    }

    private static void PrefillChunks<TKernel, TChunk>(KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options, ReadOnlySpan<float> sinkLogits)
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
            fixed (float* keys = scratchKeys, values = scratchValues, queryPointer = query, outputPointer = output, sinks = sinkLogits)
            {
                float* sinkPointer = sinkLogits.IsEmpty ? null : sinks;
                for (int first = 0; first < shape.SeqLen; first += chunk)
                {
                    int rows = Math.Min(chunk, shape.SeqLen - first);
                    int start = (int)cache.Count;
                    KvStore store = GatherChunk(cache, key, value, shape.SeqLen, first, rows, keys, values);
                    TChunk.Run(cache.Pattern, store, queryPointer, outputPointer, sinkPointer, shape, first, start, rows, options);
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
            // History from the ring, in at most two runs (before and after the ring's end); a narrow cache is widened here.
            int copied = 0;
            while (copied < history)
            {
                int slot = ring.RingSlot(oldest + copied);
                int run = Math.Min(history - copied, cache.RingSlots - slot);
                cache.ReadSlots(kvHead, slot, run, destinationKeys.Slice(copied * headDim), destinationValues.Slice(copied * headDim));
                copied += run;
            }

            // The chunk's own tokens, contiguous in the [KvHeads, SeqLen, HeadDim] input.
            int from = (kvHead * seqLen + first) * headDim;
            key.Slice(from, rows * headDim).CopyTo(destinationKeys.Slice(history * headDim));
            value.Slice(from, rows * headDim).CopyTo(destinationValues.Slice(history * headDim));

            // Pinned global tokens; only those before the history are read from here.
            cache.ReadSlots(kvHead, cache.RingSlots, cache.PinnedSlots, destinationKeys.Slice(linear * headDim), destinationValues.Slice(linear * headDim));
        }

        return new KvStore(keys, values, cache.KvHeads, slots, new SlotMap(origin: oldest, ringSlots: linear, oldest, cache.PinnedPositions));
    }

    /// <summary>How one prefill chunk's rows are computed against its gathered keys.</summary>
    private interface IChunkRunner
    {
        /// <summary>Rows <paramref name="first"/> .. first + rows - 1 of the prompt (stream positions from <paramref name="start"/>).</summary>
        static abstract void Run(AttentionPattern pattern, KvStore store, float* query, float* output, float* sinkLogits, AttentionShape shape, int first, int start, int rows, AttentionOptions options);
    }

    /// <summary>Every row through the row kernel over its mapped key segments (the scalar kernel, window-less patterns).</summary>
    private readonly struct RowChunk<TKernel, TScores> : IChunkRunner
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        public static void Run(AttentionPattern pattern, KvStore store, float* query, float* output, float* sinkLogits, AttentionShape shape, int first, int start, int rows, AttentionOptions options)
        {
            long rowOffset = (long)first * TKernel.HeadDim;
            CpuAttention.RunRowsSlice<TKernel, TScores>(pattern, query + rowOffset, store.Keys, store.Values, new CpuAttention.RowOutputs(output + rowOffset, sinkLogits, null), store.LinearShape(shape.Heads), store.ChunkSlice(shape.SeqLen, start, rows), options);
        }
    }

    /// <summary>
    /// The window band as tiles over the chunk's linear keys: the store's ring part holds positions from its origin
    /// on with no wrap, so linear index = position - origin, and the band (relative to the query) is the same there.
    /// </summary>
    private readonly struct TiledChunk<TKernel, TScores> : IChunkRunner
        where TKernel : struct, IAttentionTileKernel
        where TScores : struct, IScoreModifier
    {
        public static void Run(AttentionPattern pattern, KvStore store, float* query, float* output, float* sinkLogits, AttentionShape shape, int first, int start, int rows, AttentionOptions options)
        {
            long rowOffset = (long)first * TKernel.HeadDim;
            CpuAttention.RunTiledSlice<TKernel, TScores>(pattern, query + rowOffset, store.Keys, store.Values, new CpuAttention.RowOutputs(output + rowOffset, sinkLogits, null), store.LinearShape(shape.Heads), store.ChunkSlice(shape.SeqLen, start, rows), options);
        }
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

        /// <summary>A gathered chunk's keys seen as a sequence: its linear run, from the map's origin.</summary>
        public AttentionShape LinearShape(int heads) => new(heads, KvHeads, Map.RingSlots);

        /// <summary>
        /// The chunk's rows as a part of that sequence: <paramref name="rows"/> rows from stream position
        /// <paramref name="start"/>, in a prompt of <paramref name="promptRows"/> rows per head.
        /// </summary>
        public CpuAttention.SequenceSlice ChunkSlice(int promptRows, int start, int rows) =>
            new(QueryFirst: (int)(start - Map.Origin), QueryRows: rows, QueryLayoutRows: promptRows, KeyStride: SlotsPerKvHead, PositionBase: (int)Map.Origin, Slots: Map);
    }

    /// <summary>The newest token's rows, split over (KV head, block of slots); see <see cref="Decode{TKernel, TScores}(KvCache, ReadOnlySpan{float}, Span{float}, AttentionOptions, ReadOnlySpan{float})"/>.</summary>
    private sealed class DecodeJob<TKernel, TScores> : WorkerPool.Job
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        [ThreadStatic]
        private static DecodeJob<TKernel, TScores>[]? t_instances;

        public int Items;
        private AttentionPattern _pattern = null!;
        private KvStore _store;
        private float* _query;
        private int _heads, _groupSize, _blocks, _blockSlots, _segmentsPerHead, _position;
        private float _scale;
        private float[] _alibiSlopes = Array.Empty<float>();

        // The vector width of the group kernel (GroupDecodeKernel), or 0 for the scalar ISA, which runs the row kernel.
        private int _lanes;

        // The queries times scale x log2(e), which the group kernel takes as they are; for a Half cache also times 2^112
        // (its keys are read times 2^-112), unless that overflows, which sends every head to the one-head path.
        private float[] _scaledQueries = Array.Empty<float>();
        private float[] _halfQueries = Array.Empty<float>();
        private bool _halfQueriesFinite;

        // A Half or BFloat16 cache (null for fp32): the group kernel widens each tile of keys once; the row kernel's path
        // widens the block.
        private KvCache? _narrowCache;
        private ushort* _narrowKeys, _narrowValues;

        // Per head: its key segments mapped to slots (the same for every block), the position of each one's first key
        // (for score modifiers), and how many there are.
        private KeySegment[] _headSegments = Array.Empty<KeySegment>();
        private int[] _headPositions = Array.Empty<int>();
        private int[] _headSegmentCounts = Array.Empty<int>();

        // Per (head, block): the partial state, max and sum then HeadDim floats of unnormalised output.
        private float[] _partials = Array.Empty<float>();

        /// <summary>This thread's job for stream <paramref name="stream"/> of a batch (0 for a single decode), kept between calls.</summary>
        public static DecodeJob<TKernel, TScores> ForThisThread(int stream)
        {
            t_instances ??= new DecodeJob<TKernel, TScores>[1];
            if (stream >= t_instances.Length)
            {
                Array.Resize(ref t_instances, Math.Max(stream + 1, 2 * t_instances.Length));
            }

            return t_instances[stream] ??= new DecodeJob<TKernel, TScores>();
        }

        private static int PartialLength => TKernel.HeadDim + 2;

        /// <summary>
        /// Sets the job up for the newest token of <paramref name="cache"/> (its arrays live on the pinned heap, so they are
        /// addressed directly); its blocks are sized for <paramref name="threads"/> and this cache alone, also in a batch, so
        /// a stream's result is the same bits batched or not.
        /// </summary>
        public void Prepare(KvCache cache, float* query, int heads, AttentionOptions options, int threads)
        {
            AttentionPattern pattern = cache.Pattern;
            int position = (int)(cache.Count - 1);
            var store = new KvStore(cache.Keys, cache.Values, cache.KvHeads, cache.Capacity, cache.Map);
            _pattern = pattern;
            _store = store;
            _narrowCache = cache.Element == CacheElement.Single ? null : cache;
            _narrowKeys = cache.NarrowKeys;
            _narrowValues = cache.NarrowValues;
            _query = query;
            _heads = heads;
            _position = position;
            _groupSize = heads / store.KvHeads;
            _scale = options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E;
            _lanes = GroupLanes(options.ResolveIsa(), TKernel.HeadDim);
            if (TScores.ModifiesScores)
            {
                AlibiSlopes.FillBase2(ref _alibiSlopes, options, heads);
            }

            if (_lanes > 0)
            {
                Grow(ref _scaledQueries, heads * TKernel.HeadDim);
                System.Numerics.Tensors.TensorPrimitives.Multiply(new ReadOnlySpan<float>(query, heads * TKernel.HeadDim), _scale, _scaledQueries.AsSpan(0, heads * TKernel.HeadDim));
                if (cache.Element == CacheElement.Half)
                {
                    Grow(ref _halfQueries, heads * TKernel.HeadDim);
                    Span<float> halfQueries = _halfQueries.AsSpan(0, heads * TKernel.HeadDim);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(_scaledQueries.AsSpan(0, heads * TKernel.HeadDim), Tensors.ElementConversion.TwoTo112, halfQueries);
                    _halfQueriesFinite = float.IsFinite(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(halfQueries));
                }
            }

            _blockSlots = SlotsPerBlock(store.SlotsPerKvHead, store.KvHeads, threads);
            _blocks = (store.SlotsPerKvHead + _blockSlots - 1) / _blockSlots;
            Items = store.KvHeads * _blocks;
            Grow(ref _partials, heads * _blocks * PartialLength);

            // Each head's segments once, here, rather than once per block in every work item.
            _segmentsPerHead = SlotMap.MaxSlotSegments(pattern);
            Grow(ref _headSegments, heads * _segmentsPerHead);
            Grow(ref _headPositions, heads * _segmentsPerHead);
            Grow(ref _headSegmentCounts, heads);
            CpuAttention.WorkerScratch scratch = CpuAttention.WorkerScratch.ForThisThread(pattern, TKernel.ScratchLength, 1, TKernel.HeadDim, 0);
            for (int head = 0; head < heads; head++)
            {
                int count = pattern.GetKeySegments(position, head, position + 1, scratch.Segments);
                _headSegmentCounts[head] = store.Map.ToSlots(scratch.Segments.AsSpan(0, count), _headSegments.AsSpan(head * _segmentsPerHead, _segmentsPerHead), _headPositions.AsSpan(head * _segmentsPerHead, _segmentsPerHead));
                InSlotOrder(_headSegments.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]), _headPositions.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]));
            }
        }

        /// <summary>
        /// Sorts a head's slot segments (and their positions) by slot: a ring's window comes as its older part, at the end of
        /// the KV head's slots, then its newer part at the start; read in slot order, a block's keys are one run through
        /// memory, and the next KV head's slots follow on from the last. By hand: Span.Sort with a comparison allocates
        /// on every call, and a warm decode allocates nothing.
        /// </summary>
        private static void InSlotOrder(Span<KeySegment> segments, Span<int> positions)
        {
            for (int i = 1; i < segments.Length; i++)
            {
                KeySegment segment = segments[i];
                int position = positions[i], j = i - 1;
                for (; j >= 0 && segments[j].Start > segment.Start; j--)
                {
                    segments[j + 1] = segments[j];
                    positions[j + 1] = positions[j];
                }

                segments[j + 1] = segment;
                positions[j + 1] = position;
            }
        }

        /// <summary>Items are (KV head, block) in memory order: each thread takes a run of them (see <see cref="WorkerPool.Job.ContiguousShares"/>).</summary>
        public override bool ContiguousShares => true;

        /// <summary>
        /// The group kernel's vector width for <paramref name="isa"/>: Vector512 where HeadDim is a multiple of 16, else
        /// Vector256 (HeadDim is a multiple of 8), as the generated kernels choose; 0 for the scalar ISA.
        /// </summary>
        private static int GroupLanes(KernelIsa isa, int headDim) => isa switch
        {
            KernelIsa.Vector512 => headDim % 16 == 0 ? 16 : 8,
            KernelIsa.Vector256 => 8,
            KernelIsa.Vector128 => 4,
            _ => 0,
        };

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            if (_lanes == 0)
            {
                ExecuteRows(item);
                return;
            }

            int headDim = TKernel.HeadDim;
            int kvHead = item / _blocks, block = item % _blocks;
            int firstSlot = block * _blockSlots, endSlot = Math.Min(firstSlot + _blockSlots, _store.SlotsPerKvHead);
            GroupScratch scratch = GroupScratch.ForThisThread(_groupSize, _segmentsPerHead, GroupDecodeKernel.ScratchFloats(headDim));
            int firstHead = kvHead * _groupSize;

            // Each head's keys in this block, and a fresh state for it.
            for (int member = 0; member < _groupSize; member++)
            {
                int head = firstHead + member;
                scratch.Counts[member] = KeySegmentMath.Clip(
                    _headSegments.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]),
                    _headPositions.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]),
                    firstSlot,
                    endSlot,
                    0,
                    scratch.Segments.AsSpan(member * _segmentsPerHead, _segmentsPerHead),
                    scratch.Positions.AsSpan(member * _segmentsPerHead, _segmentsPerHead));
                Span<float> partial = _partials.AsSpan((head * _blocks + block) * PartialLength, PartialLength);
                partial[0] = float.NegativeInfinity;
                partial.Slice(1).Clear();
            }

            KvSource source = SourceOf(kvHead);

            // Four heads at a time run as the rows of a register tile reading the cache in place, unless a Half cache holds
            // an infinity or NaN in this KV head or the queries are too large for the Half fold: the fast widening is exact
            // for finite values only, so those take the one-head path with the exact rule.
            TileStart nextItem = item + 1 < Items ? FirstTileOf(item + 1) : default;
            bool exactHalfOnly = _narrowCache is not null && (_narrowCache.HoldsNonFiniteHalf(kvHead) || (_narrowCache.Element == CacheElement.Half && !_halfQueriesFinite));
            fixed (float* queries = _scaledQueries, halfQueries = _halfQueries, partials = _partials)
            {
                // Heads that see the same keys here run as one group (all of them, unless the pattern differs per head, as
                // per-head dilation does), so the block's keys are read once per group.
                for (int member = 0; member < _groupSize; member++)
                {
                    if (scratch.Counts[member] < 0)
                    {
                        continue;
                    }

                    ReadOnlySpan<KeySegment> segments = scratch.Segments.AsSpan(member * _segmentsPerHead, scratch.Counts[member]);
                    int members = 0;
                    for (int other = member; other < _groupSize; other++)
                    {
                        if (scratch.Counts[other] >= 0 && segments.SequenceEqual(scratch.Segments.AsSpan(other * _segmentsPerHead, scratch.Counts[other])))
                        {
                            scratch.Heads[members++] = firstHead + other;
                            scratch.Counts[other] = other == member ? scratch.Counts[other] : -1;
                        }
                    }

                    if (segments.IsEmpty)
                    {
                        continue;
                    }

                    int inTiles = exactHalfOnly ? 0 : members / 4 * 4;
                    for (int first = 0; first < members; first += first < inTiles ? 4 : members - first)
                    {
                        int size = first < inTiles ? 4 : members - first;
                        var group = new GroupBlock
                        {
                            Heads = scratch.Heads.AsSpan(first, size),
                            Queries = queries,
                            HalfQueries = halfQueries,
                            States = partials + (long)block * PartialLength,
                            StateStride = (nint)_blocks * PartialLength,
                            Segments = segments,
                            Positions = scratch.Positions.AsSpan(member * _segmentsPerHead, scratch.Counts[member]),
                            QueryPosition = _position,
                            AlibiSlopes = TScores.ModifiesScores ? _alibiSlopes : default,
                            Source = source,
                            Scratch = scratch.Tile,
                            // Where this thread goes on to: the same keys for the next heads, else (in a contiguous share)
                            // the next item's; no hint where a group with other keys follows (per-head patterns).
                            Then = first + size < members ? source.At(segments[0].Start, segments[0].Step, headDim)
                                : UngroupedAfter(scratch.Counts.AsSpan(0, _groupSize), member) ? default
                                : nextItem,
                        };
                        switch (_lanes)
                        {
                            case 16:
                                Run<Lanes512, System.Runtime.Intrinsics.Vector512<float>>(group, fourHeads: first < inTiles);
                                break;
                            case 8:
                                Run<Lanes256, System.Runtime.Intrinsics.Vector256<float>>(group, fourHeads: first < inTiles);
                                break;
                            default:
                                Run<Lanes128, System.Runtime.Intrinsics.Vector128<float>>(group, fourHeads: first < inTiles);
                                break;
                        }
                    }
                }
            }
        }

        /// <summary>The first tile of work item <paramref name="item"/>'s keys (those of its KV head's first query head), or none.</summary>
        private TileStart FirstTileOf(int item)
        {
            int kvHead = item / _blocks, block = item % _blocks;
            int firstSlot = block * _blockSlots, endSlot = Math.Min(firstSlot + _blockSlots, _store.SlotsPerKvHead);
            int head = kvHead * _groupSize;
            return KeySegmentMath.FirstKeyIn(_headSegments.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]), firstSlot, endSlot, out int slot, out int step)
                ? SourceOf(kvHead).At(slot, step, TKernel.HeadDim)
                : default;
        }

        /// <summary>KV head <paramref name="kvHead"/>'s keys and values, in the cache's own element type.</summary>
        private KvSource SourceOf(int kvHead)
        {
            long kvOffset = (long)kvHead * _store.SlotsPerKvHead * TKernel.HeadDim;
            return _narrowCache is null
                ? KvSource.Single(_store.Keys + kvOffset, _store.Values + kvOffset)
                : KvSource.Narrow(_narrowCache.Element, _narrowKeys + kvOffset, _narrowValues + kvOffset);
        }

        /// <summary>Whether a member after <paramref name="member"/> still waits for a group of its own (its keys differ).</summary>
        private static bool UngroupedAfter(ReadOnlySpan<int> counts, int member)
        {
            for (int other = member + 1; other < counts.Length; other++)
            {
                if (counts[other] >= 0)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>The group kernel at one width: four heads on the cache's own element type, or one head at a time.</summary>
        private static void Run<TLanes, TVector>(in GroupBlock group, bool fourHeads)
            where TLanes : struct, ISimdLanes<TVector>
            where TVector : unmanaged
        {
            if (!fourHeads)
            {
                GroupDecodeKernel.Accumulate<TKernel, TLanes, TVector, TScores>(group);
                return;
            }

            switch (group.Source.Element)
            {
                case CacheElement.Single:
                    GroupDecodeKernel.AccumulateFour<TKernel, TLanes, TVector, float, TScores>(group);
                    break;
                case CacheElement.Half:
                    GroupDecodeKernel.AccumulateFour<TKernel, TLanes, TVector, Half, TScores>(group);
                    break;
                default:
                    GroupDecodeKernel.AccumulateFour<TKernel, TLanes, TVector, BFloat16, TScores>(group);
                    break;
            }
        }

        /// <summary>The scalar ISA: every head of the item's KV head through the generated row kernel, one after another.</summary>
        private void ExecuteRows(int item)
        {
            int headDim = TKernel.HeadDim;
            int kvHead = item / _blocks, block = item % _blocks;
            int firstSlot = block * _blockSlots, endSlot = Math.Min(firstSlot + _blockSlots, _store.SlotsPerKvHead);
            long kvOffset = (long)kvHead * _store.SlotsPerKvHead * headDim;
            float* keys = _store.Keys + kvOffset, values = _store.Values + kvOffset;
            bool widened = false;
            CpuAttention.WorkerScratch scratch = CpuAttention.WorkerScratch.ForThisThread(_pattern, TKernel.ScratchLength, 1, headDim, 0);
            for (int head = kvHead * _groupSize; head < (kvHead + 1) * _groupSize; head++)
            {
                ReadOnlySpan<KeySegment> slots = _headSegments.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]);
                ReadOnlySpan<int> positions = _headPositions.AsSpan(head * _segmentsPerHead, _headSegmentCounts[head]);
                int inBlock = KeySegmentMath.Clip(slots, positions, firstSlot, endSlot, 0, scratch.ClippedSegments, scratch.MappedPositions);
                Span<float> partial = _partials.AsSpan((head * _blocks + block) * PartialLength, PartialLength);
                float max = float.NegativeInfinity, sum = 0f;
                Span<float> accumulator = partial.Slice(2);
                accumulator.Clear();
                if (inBlock > 0 && _narrowCache is not null && !widened)
                {
                    // The block's slots in fp32, in this thread's buffer, addressed as if it were the whole head's: slot s
                    // at (s - firstSlot) x HeadDim. The kernel only reads slots of this block.
                    WidenedBlock.ForThisThread(_blockSlots * headDim, out float* keyBlock, out float* valueBlock);
                    int floats = (endSlot - firstSlot) * headDim;
                    _narrowCache.ReadSlots(kvHead, firstSlot, endSlot - firstSlot, new Span<float>(keyBlock, floats), new Span<float>(valueBlock, floats));
                    keys = keyBlock - (long)firstSlot * headDim;
                    values = valueBlock - (long)firstSlot * headDim;
                    widened = true;
                }

                if (inBlock > 0)
                {
                    var row = new ScoreRow(_position, head, TScores.ModifiesScores ? _alibiSlopes[head] : 0f, scratch.MappedPositions.AsSpan(0, inBlock));
                    TKernel.AccumulateRow<TScores>(ref *(_query + (long)head * headDim), ref *keys, ref *values, scratch.ClippedSegments.AsSpan(0, inBlock), row, _scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), ref max, ref sum, accumulator);
                }

                partial[0] = max;
                partial[1] = sum;
            }
        }

        /// <summary>Merges each head's partial states (base 2, like the kernels' softmax) and writes the normalised row.</summary>
        public void Combine(float* output, float* sinkLogits)
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

                CpuAttention.FinishRow(total, max, sum, sinkLogits == null ? null : sinkLogits + head, output + (long)head * headDim, null);
            }
        }

        private static void Grow<T>(ref T[] array, int length)
        {
            if (array.Length < length)
            {
                array = new T[length];
            }
        }
    }

    /// <summary>Every stream's decode items as one run: item i belongs to the stream whose range holds it.</summary>
    private sealed class StreamsJob<TKernel, TScores> : WorkerPool.Job
        where TKernel : struct, IAttentionRowKernel
        where TScores : struct, IScoreModifier
    {
        [ThreadStatic]
        private static StreamsJob<TKernel, TScores>? t_instance;

        public DecodeJob<TKernel, TScores>[] Streams = Array.Empty<DecodeJob<TKernel, TScores>>();

        // Stream s's items are FirstItems[s] .. FirstItems[s + 1] - 1.
        private int[] _firstItems = Array.Empty<int>();
        private int _streams;

        /// <summary>Each thread takes a run of streams' (KV head, block) items, in memory order within each stream.</summary>
        public override bool ContiguousShares => true;

        public static StreamsJob<TKernel, TScores> ForThisThread(int streams)
        {
            StreamsJob<TKernel, TScores> batch = t_instance ??= new StreamsJob<TKernel, TScores>();
            if (batch.Streams.Length < streams)
            {
                batch.Streams = new DecodeJob<TKernel, TScores>[streams];
                batch._firstItems = new int[streams + 1];
            }

            for (int stream = 0; stream < streams; stream++)
            {
                batch.Streams[stream] = DecodeJob<TKernel, TScores>.ForThisThread(stream);
            }

            return batch;
        }

        /// <summary>Numbers the prepared streams' items one after another; returns how many there are.</summary>
        public int CountItems(int streams)
        {
            _streams = streams;
            for (int stream = 0; stream < streams; stream++)
            {
                _firstItems[stream + 1] = _firstItems[stream] + Streams[stream].Items;
            }

            return _firstItems[streams];
        }

        public override void Execute(int item)
        {
            // Every stream has at least one item (a KV head, one block), so the first-item numbers are strictly increasing:
            // an exact hit is that stream's first item, a miss falls after the stream's first.
            int stream = Array.BinarySearch(_firstItems, 0, _streams + 1, item);
            if (stream < 0)
            {
                stream = ~stream - 1;
            }

            Streams[stream].Execute(item - _firstItems[stream]);
        }
    }

    /// <summary>
    /// Each worker thread's buffers for <see cref="GroupDecodeKernel"/>: per head of a KV group its clipped key segments and
    /// their positions, the heads of the group being run, and the kernel's tile scratch (native, 64-byte aligned, so the
    /// kernel addresses it by pointer). Grown on demand and kept for the thread's life.
    /// </summary>
    private sealed class GroupScratch
    {
        [ThreadStatic]
        private static GroupScratch? t_instance;

        public KeySegment[] Segments = Array.Empty<KeySegment>();
        public int[] Positions = Array.Empty<int>();
        public int[] Counts = Array.Empty<int>();
        public int[] Heads = Array.Empty<int>();
        public float* Tile;
        private int _tileFloats;

        public static GroupScratch ForThisThread(int groupSize, int segmentsPerHead, int tileFloats)
        {
            GroupScratch scratch = t_instance ??= new GroupScratch();
            if (scratch.Segments.Length < groupSize * segmentsPerHead)
            {
                scratch.Segments = new KeySegment[groupSize * segmentsPerHead];
                scratch.Positions = new int[groupSize * segmentsPerHead];
            }

            if (scratch.Counts.Length < groupSize)
            {
                scratch.Counts = new int[groupSize];
                scratch.Heads = new int[groupSize];
            }

            if (scratch._tileFloats < tileFloats)
            {
                System.Runtime.InteropServices.NativeMemory.AlignedFree(scratch.Tile);
                scratch.Tile = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)tileFloats * sizeof(float), 64);
                scratch._tileFloats = tileFloats;
            }

            return scratch;
        }
    }

    /// <summary>
    /// Each worker thread's fp32 buffers for one widened block of a narrow cache's keys and values. Native memory, so the
    /// kernel may be handed an address before its start (see DecodeJob.Execute) without that being a reference into
    /// another managed object; one pair per thread, grown on demand and kept for the thread's life (a few hundred KiB).
    /// </summary>
    private static class WidenedBlock
    {
        [ThreadStatic]
        private static float* t_keys;

        [ThreadStatic]
        private static float* t_values;

        [ThreadStatic]
        private static int t_floats;

        public static void ForThisThread(int floats, out float* keys, out float* values)
        {
            if (t_floats < floats)
            {
                System.Runtime.InteropServices.NativeMemory.AlignedFree(t_keys);
                System.Runtime.InteropServices.NativeMemory.AlignedFree(t_values);
                t_keys = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
                t_values = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
                t_floats = floats;
            }

            keys = t_keys;
            values = t_values;
        }
    }
}
