using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using SparseAttention.Cpu;

namespace SparseAttention.Decode;

/// <summary>
/// Decode's kernel: the query heads of one KV head that see the same keys (all of a GQA group, as a rule) over one block of
/// cache slots, <see cref="TileKeys"/> keys at a time. Per tile, the keys are read from memory once for every head of the
/// group (a narrow cache's are widened once, into a tile buffer that stays in L1); per head, four keys' dot products run
/// side by side and are finished together (<see cref="ISimdLanes{TVector}.SumEach"/>), the tile's scores go through the
/// online softmax as whole vectors, and P·V adds two keys at a time into independent accumulators. The generated row
/// kernel, which decode used before, finishes every key's dot product with its own horizontal sum and one dependent chain
/// of FMAs; decode's work per key and head is what bounds it below the memory's bandwidth.
/// </summary>
/// <remarks>
/// Semantics are the row kernel's: base-2 online softmax (the queries carry scale x log2(e)), score modifiers on each tile's
/// raw scores, and the NaN/Inf policy (a poisoning raw score makes the head's sum NaN). Written once for every vector width
/// through <see cref="ISimdLanes{TVector}"/>; HeadDim comes from the kernel type argument, a constant to the JIT.
/// </remarks>
internal static unsafe class GroupDecodeKernel
{
    /// <summary>
    /// Keys per tile over an fp32 cache (and on the one-head path): a multiple of every width's lanes (4, 8, 16) and of the
    /// four dot products finished together.
    /// </summary>
    public const int TileKeys = 32;

    /// <summary>
    /// Keys per tile of the four-head kernel over a 16-bit cache: the same bytes of keys per tile as an fp32 tile (16 KiB at
    /// HeadDim 128). 64 keys took 0.91-0.93x the time of 32 on a Half cache; fp32 was unchanged by 64, so it keeps 32.
    /// </summary>
    public const int NarrowTileKeys = 64;

    /// <summary>
    /// Keys per tile of the four-head kernel over an fp32 cache at widths below 512 bits, whose P·V reads each value row
    /// in column passes (<see cref="AddValuesFour{TKernel, TLanes, TVector, TElement}"/>): 16 keys keep a tile's keys and
    /// values and the next tile's requested ones (8 KiB each at HeadDim 128) within a 32 KiB L1, where at 32 keys the
    /// requests evicted value rows that later passes read again. On a Zen 1 (Vector256), 0.92-0.93x the time per fp32
    /// token at 64K; Half caches were unchanged by 32 keys, so they keep <see cref="NarrowTileKeys"/>.
    /// </summary>
    public const int ColumnPassTileKeys = 16;

    /// <summary>Floats between the four heads' rows of scores in the scratch: room for the longest tile.</summary>
    private const int ScoreRowFloats = NarrowTileKeys;

    /// <summary>
    /// Tiles of a chunk in <see cref="AccumulateFour{TKernel, TLanes, TVector, TElement, TScores}"/> over a Half or BFloat16
    /// cache: all of a chunk's keys are scored before any of its values is read, so the memory sees one stream at a time
    /// for this many tiles (8,192 slots, 2 MiB at HeadDim 128; a 4,096-slot block is one chunk) instead of a tile's 16 KiB
    /// of keys and then its values. Measured on a Zen 5 against the tile-by-tile order over the same caches in one
    /// process, rounds alternating (two threads, 64K, 32 layers): Half 0.92-0.98x the time per token and BFloat16
    /// 0.95-1.00x on Vector512, 0.91-0.95x and 0.93x on Vector256, 0.93x and 0.95x on Vector128. An fp32 cache stays tile by
    /// tile: there chunks of 8 to 128 tiles took 1.02-1.07x the time in 12 of 13 comparisons over the three widths, with
    /// or without one request per page 64 KiB or 256 KiB ahead (0.95x once, at Vector256, and 1.03x when repeated).
    /// </summary>
    public const int ChunkTiles = 128;

    /// <summary>
    /// Floats of per-thread scratch for HeadDim <paramref name="headDim"/>: a chunk's scores (four heads' rows per tile, as
    /// <see cref="AccumulateFour{TKernel, TLanes, TVector, TElement, TScores}"/> keeps them), or one tile's scores (one
    /// row), keys and values (<see cref="Accumulate{TKernel, TLanes, TVector, TScores}"/>).
    /// </summary>
    public static int ScratchFloats(int headDim) => Math.Max(ChunkTiles * TileScoreFloats, TileScoreFloats + 2 * TileKeys * headDim);

    /// <summary>Floats of one tile's scores in a chunk: the four heads' rows, <see cref="ScoreRowFloats"/> apart.</summary>
    private const int TileScoreFloats = 4 * ScoreRowFloats;

    /// <summary>Adds the block's keys in <see cref="GroupBlock.Segments"/> to the state of every head in <see cref="GroupBlock.Heads"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate<TKernel, TLanes, TVector, TScores>(in GroupBlock group)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : struct, IScoreModifier
    {
        int headDim = TKernel.HeadDim;
        float* scores = group.Scratch;
        float* tileKeys = scores + TileScoreFloats, tileValues = tileKeys + TileKeys * headDim;
        ReadOnlySpan<KeySegment> segments = group.Segments;
        for (int segmentIndex = 0; segmentIndex < segments.Length; segmentIndex++)
        {
            KeySegment segment = segments[segmentIndex];
            for (int tileStart = 0; tileStart < segment.Count; tileStart += TileKeys)
            {
                int count = Math.Min(TileKeys, segment.Count - tileStart);
                long firstSlot = segment.Start + (long)tileStart * segment.Step;
                // The tile's work is compute, during which the hardware prefetcher does not run far enough ahead: ask for
                // the next tile's rows now, so memory and arithmetic overlap (decode reads each byte once).
                var next = NextRows.Of(group.Source, firstSlot + (long)count * segment.Step, segment.Step, Math.Min(TileKeys, segment.Count - tileStart - count), headDim);
                next.Keys(0, TileKeys);
                next.Values(0, TileKeys);

                float* keys, values;
                nint rowStride;
                if (group.Source.Element == CacheElement.Single)
                {
                    keys = group.Source.Keys + firstSlot * headDim;
                    values = group.Source.Values + firstSlot * headDim;
                    rowStride = (nint)segment.Step * headDim;
                }
                else
                {
                    group.Source.Widen(firstSlot, segment.Step, count, headDim, tileKeys, tileValues);
                    keys = tileKeys;
                    values = tileValues;
                    rowStride = headDim;
                }

                foreach (int head in group.Heads)
                {
                    float* state = group.States + head * group.StateStride;
                    float* query = group.Queries + (long)head * headDim;
                    bool poisoned = Score<TKernel, TLanes, TVector, TScores>(query, keys, rowStride, count, scores);
                    ToProbabilities<TKernel, TLanes, TVector, TScores>(group, head, scores, count, TileKeys, poisoned, segmentIndex, segment, tileStart);
                    AddValues<TKernel, TLanes, TVector>(state + 2, scores, values, rowStride, count);
                }
            }
        }
    }

    /// <summary>
    /// As <see cref="Accumulate{TKernel, TLanes, TVector, TScores}"/> for exactly four heads (<see cref="GroupBlock.Heads"/>)
    /// as the rows of a register tile, reading the cache in place as <typeparamref name="TElement"/> (float, Half or
    /// BFloat16): each key vector is loaded, and widened, once for the four heads, in the dot products and in P·V alike, so
    /// a narrow cache needs no widening pass and no tile buffer. Half data must hold no infinity or NaN (the fast rule).
    /// Over a 16-bit cache a run of slots is taken in chunks of <see cref="ChunkTiles"/> tiles: every tile's scores first,
    /// then every tile's softmax step and P·V, in the same order, so the results are those of taking the tiles one by one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateFour<TKernel, TLanes, TVector, TElement, TScores>(in GroupBlock group)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
        where TScores : struct, IScoreModifier
    {
        int headDim = TKernel.HeadDim;
        float* chunkScores = group.Scratch; // per tile of the chunk, four rows ScoreRowFloats apart
        int tileKeys = sizeof(TElement) != sizeof(float) ? NarrowTileKeys : TLanes.Count < 16 ? ColumnPassTileKeys : TileKeys;
        // Over a 16-bit cache a run of slots is taken in chunks (ChunkTiles); over fp32, tile by tile.
        int chunkTiles = sizeof(TElement) == sizeof(float) ? 1 : ChunkTiles;
        bool tileByTile = chunkTiles == 1;
        int chunkKeys = chunkTiles * tileKeys;
        ReadOnlySpan<int> heads = group.Heads;
        // Half keys and values come in times 2^-112; the queries (and below, the probabilities) carry the 2^112 back.
        float* queries = typeof(TElement) == typeof(Half) ? group.HalfQueries : group.Queries;
        float* query0 = queries + (long)heads[0] * headDim, query1 = queries + (long)heads[1] * headDim;
        float* query2 = queries + (long)heads[2] * headDim, query3 = queries + (long)heads[3] * headDim;
        byte* keyBase = group.Source.KeyBytes, valueBase = group.Source.ValueBytes;
        ReadOnlySpan<KeySegment> segments = group.Segments;
        bool firstTileRequested = false;
        for (int segmentIndex = 0; segmentIndex < segments.Length; segmentIndex++)
        {
            KeySegment segment = segments[segmentIndex];
            nint rowBytes = (nint)segment.Step * headDim * sizeof(TElement);
            if (!firstTileRequested)
            {
                // Nothing before it requested the segment's first tile: ask for all its rows at once (its values too when
                // they are read right after its keys).
                var firstTile = NextRows.Of(group.Source, segment.Start, segment.Step, Math.Min(tileKeys, segment.Count), headDim);
                firstTile.Keys(0, tileKeys);
                if (tileByTile)
                {
                    firstTile.Values(0, tileKeys);
                }
            }

            // What the segment's last tile requests as its next: the next segment's first tile (a ring's window is two
            // segments, one run in memory) or, after the last, what this thread reads next (GroupBlock.Then), when it steps
            // as this segment does; otherwise the last tile itself, whose lines are held already, and the next segment
            // starts cold. Every such start waits a whole tile's latency (blocks of 2,048 slots, two starts more per block,
            // took 1.03x the time per token of blocks of 4,096 in one run).
            TileStart after = segmentIndex + 1 < segments.Length
                ? group.Source.At(segments[segmentIndex + 1].Start, segments[segmentIndex + 1].Step, headDim)
                : group.Then;
            bool handsOver = after.Step == segment.Step;
            firstTileRequested = handsOver;
            for (int chunkStart = 0; chunkStart < segment.Count; chunkStart += chunkKeys)
            {
                int chunkCount = Math.Min(chunkKeys, segment.Count - chunkStart);
                long chunkByte = (segment.Start + (long)chunkStart * segment.Step) * headDim * sizeof(TElement);
                byte* chunkKeyRows = keyBase + chunkByte, chunkValueRows = valueBase + chunkByte;
                // Each stream's rows after this chunk's: the next chunk's, the next segment's or block's, or none known.
                bool lastChunk = chunkStart + chunkCount >= segment.Count;
                byte* keysAfter = !lastChunk ? chunkKeyRows + chunkCount * rowBytes : handsOver ? after.KeyBytes : null;
                byte* valuesAfter = !lastChunk ? chunkValueRows + chunkCount * rowBytes : handsOver ? after.ValueBytes : null;

                // The chunk's keys, scored tile by tile into the scratch. Each tile requests the next tile's rows from inside
                // its loops, beside the loads, so the memory always has requests in flight (decode reads each byte once; a
                // batch of requests at the tile's start leaves it idle for the rest of the tile; a loop of requests per row
                // cost a quarter of the arithmetic). One tile ahead: with the score loads unrolled over the row
                // (DotsFourKeys), the core's stride prefetcher runs ahead as well, and requesting the tile after next
                // instead took 1.1x the time per token at 64K. The chunk's last key tile requests what is read next: the
                // chunk's first values; tile by tile, each stream requests its own next tile instead, a whole tile's time
                // ahead (a tile's values follow its keys too soon for requests made during its scores: those took 1.12x
                // the time per fp32 token at 64K).
                for (int tileStart = 0; tileStart < chunkCount; tileStart += tileKeys)
                {
                    int count = Math.Min(tileKeys, chunkCount - tileStart);
                    byte* keys = chunkKeyRows + tileStart * rowBytes;
                    byte* nextKeys = tileStart + count < chunkCount ? keys + count * rowBytes
                        : !tileByTile ? chunkValueRows
                        : keysAfter != null ? keysAfter : keys;
                    float* tileScores = chunkScores + tileStart / tileKeys * TileScoreFloats;
                    ScoreFour<TKernel, TLanes, TVector, TElement>(query0, query1, query2, query3, keys, rowBytes, count, tileScores, nextKeys);
                }

                // Then its values, tile by tile in the same order, each after its tile's online-softmax step. The last value
                // tile requests the next chunk's keys (tile by tile, the next values).
                for (int tileStart = 0; tileStart < chunkCount; tileStart += tileKeys)
                {
                    int count = Math.Min(tileKeys, chunkCount - tileStart);
                    float* tileScores = chunkScores + tileStart / tileKeys * TileScoreFloats;
                    for (int member = 0; member < 4; member++)
                    {
                        int head = heads[member];
                        float* headScores = tileScores + member * ScoreRowFloats;
                        bool poisoned = EndRawScores<TLanes, TVector, TScores>(headScores, count, tileKeys);
                        ToProbabilities<TKernel, TLanes, TVector, TScores>(group, head, headScores, count, tileKeys, poisoned, segmentIndex, segment, chunkStart + tileStart);
                    }

                    if (typeof(TElement) == typeof(Half))
                    {
                        TVector twoTo112 = TLanes.Create(Tensors.ElementConversion.TwoTo112);
                        for (int k = 0; k < TileScoreFloats; k += TLanes.Count)
                        {
                            TLanes.Store(TLanes.Multiply(TLanes.Load(tileScores + k), twoTo112), tileScores + k);
                        }
                    }

                    byte* values = chunkValueRows + tileStart * rowBytes;
                    byte* nextRows = tileStart + count < chunkCount ? values + count * rowBytes : tileByTile ? valuesAfter : keysAfter;
                    AddValuesFour<TKernel, TLanes, TVector, TElement>(group, tileScores, values, rowBytes, count, nextRows != null ? nextRows : values);
                }
            }
        }
    }

    /// <summary>
    /// One vector of <typeparamref name="TElement"/> elements from <paramref name="row"/>, as float; Half ones times 2^-112
    /// (<see cref="ISimdLanes{TVector}.LoadHalfScaledDown"/>), which the queries and probabilities they meet carry as 2^112.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector LoadElements<TLanes, TVector, TElement>(byte* row, int index)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        if (typeof(TElement) == typeof(float))
        {
            return TLanes.Load((float*)row + index);
        }

        return typeof(TElement) == typeof(Half) ? TLanes.LoadHalfScaledDown((ushort*)row + index) : TLanes.LoadBFloat16((ushort*)row + index);
    }

    /// <summary>
    /// The four heads' raw scores for the tile's keys (four rows, <see cref="ScoreRowFloats"/> apart): head x key accumulators, each
    /// key vector loaded once for the four heads; 4 keys at a time with AVX-512's 32 registers (16 accumulators), 2 with 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void ScoreFour<TKernel, TLanes, TVector, TElement>(float* query0, float* query1, float* query2, float* query3, byte* keys, nint rowBytes, int count, float* scores, byte* nextKeys)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        if (TLanes.Count == 16)
        {
            DotsFourKeys<TKernel, TLanes, TVector, TElement>(query0, query1, query2, query3, keys, rowBytes, count, nextKeys, scores);
            return;
        }

        for (int k = 0; k < count; k += 2)
        {
            DotsTwoKeys<TKernel, TLanes, TVector, TElement>(query0, query1, query2, query3, keys + k * rowBytes, rowBytes, count - k, nextKeys + k * rowBytes, scores + k);
        }
    }

    /// <summary>
    /// The four heads' dot products with the tile's <paramref name="count"/> keys from <paramref name="tileKeys"/>, four at a
    /// time (the last group's missing rows repeat its last), stored at <paramref name="tileScores"/> + key in each head's
    /// row, and the same rows from <paramref name="tileAhead"/> requested. One call per tile: a call per group of four keys
    /// spent its setup (registers saved and restored, arguments, the return) eight times a tile. The loop over groups inside
    /// measured 0.961-1.018x the time in L2 on one thread (three runs) and 0.944-1.054x for Half at 64K (four runs, three of
    /// them faster); fp32 at 64K, bound by the memory, 0.97-1.02x: a small gain at most, within this VM's spread. Unrolled over the row's 64-byte lines (a JIT-constant count; the calls past it are removed; a
    /// line's vectors, one for fp32 at 512 bits, loop), so each load and request instruction runs once per group of keys
    /// and so steps by the same stride from group to group, which the core's stride prefetcher follows. A loop over the row gives each
    /// instruction a stride that breaks at every group. On a Zen 5, unrolling alone took 0.89-0.95x the time per fp32
    /// token at 64K; with the next tile requested instead of the one after (AccumulateFour), 0.72-0.87x on Vector512.
    /// A 16-bit row has at most 8 lines (HeadDim 256), so lines 8-15 are also guarded by the element size, which the JIT
    /// knows before it inlines anything: their call sites are never imported. The HeadDim test only becomes a constant
    /// once <c>TKernel.HeadDim</c> is inlined, so every call site it guards still costs the JIT's inlining budget, and
    /// sixteen sites of widening loads exceeded it (calls were left in the loop; the 16-bit caches kept a rolled loop until
    /// then, and Half and BFloat16 decode at 64K now take 0.89-0.90x its time on Vector512).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void DotsFourKeys<TKernel, TLanes, TVector, TElement>(float* query0, float* query1, float* query2, float* query3, byte* tileKeys, nint rowBytes, int count, byte* tileAhead, float* tileScores)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        for (int first = 0; first < count; first += 4)
        {
            byte* keys = tileKeys + first * rowBytes, ahead = tileAhead + first * rowBytes;
            float* scores = tileScores + first;
            int rows = count - first;
            byte* row0 = keys, row1 = keys + Math.Min(1, rows - 1) * rowBytes;
            byte* row2 = keys + Math.Min(2, rows - 1) * rowBytes, row3 = keys + Math.Min(3, rows - 1) * rowBytes;
            TVector dot00 = TLanes.Zero, dot01 = TLanes.Zero, dot02 = TLanes.Zero, dot03 = TLanes.Zero;
            TVector dot10 = TLanes.Zero, dot11 = TLanes.Zero, dot12 = TLanes.Zero, dot13 = TLanes.Zero;
            TVector dot20 = TLanes.Zero, dot21 = TLanes.Zero, dot22 = TLanes.Zero, dot23 = TLanes.Zero;
            TVector dot30 = TLanes.Zero, dot31 = TLanes.Zero, dot32 = TLanes.Zero, dot33 = TLanes.Zero;
            LineFour<TKernel, TLanes, TVector, TElement>(0, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (1 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(1, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (2 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(2, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (3 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(3, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (4 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(4, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (5 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(5, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (6 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(6, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (7 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(7, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 8 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(8, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 9 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(9, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 10 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(10, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 11 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(11, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 12 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(12, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 13 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(13, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 14 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(14, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
            if (sizeof(TElement) == sizeof(float) && 15 * 64 < TKernel.HeadDim * sizeof(TElement)) LineFour<TKernel, TLanes, TVector, TElement>(15, query0, query1, query2, query3, row0, row1, row2, row3, ahead, rowBytes, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);

            StoreFourKeys<TLanes, TVector>(scores, dot00, dot01, dot02, dot03, dot10, dot11, dot12, dot13, dot20, dot21, dot22, dot23, dot30, dot31, dot32, dot33);
        }
    }

    /// <summary>As <see cref="DotsFourKeys{TKernel, TLanes, TVector, TElement}"/> for two keys (8 accumulators, for the 16 registers of AVX2 and SSE).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void DotsTwoKeys<TKernel, TLanes, TVector, TElement>(float* query0, float* query1, float* query2, float* query3, byte* keys, nint rowBytes, int rows, byte* ahead, float* scores)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        byte* row0 = keys, row1 = keys + Math.Min(1, rows - 1) * rowBytes;
        TVector dot00 = TLanes.Zero, dot01 = TLanes.Zero, dot10 = TLanes.Zero, dot11 = TLanes.Zero;
        TVector dot20 = TLanes.Zero, dot21 = TLanes.Zero, dot30 = TLanes.Zero, dot31 = TLanes.Zero;
        LineTwo<TKernel, TLanes, TVector, TElement>(0, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (1 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(1, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (2 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(2, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (3 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(3, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (4 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(4, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (5 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(5, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (6 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(6, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (7 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(7, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 8 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(8, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 9 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(9, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 10 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(10, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 11 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(11, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 12 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(12, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 13 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(13, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 14 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(14, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        if (sizeof(TElement) == sizeof(float) && 15 * 64 < TKernel.HeadDim * sizeof(TElement)) LineTwo<TKernel, TLanes, TVector, TElement>(15, query0, query1, query2, query3, row0, row1, ahead, rowBytes, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);

        StoreTwoKeys<TLanes, TVector>(scores, dot00, dot01, dot10, dot11, dot20, dot21, dot30, dot31);
    }

    /// <summary>The 4 x 4 dot products finished (<see cref="ISimdLanes{TVector}.SumEach"/>) into four keys' scores at <paramref name="scores"/> in each head's row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFourKeys<TLanes, TVector>(float* scores, TVector dot00, TVector dot01, TVector dot02, TVector dot03, TVector dot10, TVector dot11, TVector dot12, TVector dot13,
        TVector dot20, TVector dot21, TVector dot22, TVector dot23, TVector dot30, TVector dot31, TVector dot32, TVector dot33)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        Vector128.Store(TLanes.SumEach(dot00, dot01, dot02, dot03), scores);
        Vector128.Store(TLanes.SumEach(dot10, dot11, dot12, dot13), scores + ScoreRowFloats);
        Vector128.Store(TLanes.SumEach(dot20, dot21, dot22, dot23), scores + 2 * ScoreRowFloats);
        Vector128.Store(TLanes.SumEach(dot30, dot31, dot32, dot33), scores + 3 * ScoreRowFloats);
    }

    /// <summary>The 4 x 2 dot products finished into two keys' scores at <paramref name="scores"/> in each head's row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTwoKeys<TLanes, TVector>(float* scores, TVector dot00, TVector dot01, TVector dot10, TVector dot11, TVector dot20, TVector dot21, TVector dot30, TVector dot31)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        // Lanes: head 0 key k, head 0 key k+1, head 1 key k, head 1 key k+1 (and heads 2, 3).
        Vector128<double> heads01 = TLanes.SumEach(dot00, dot01, dot10, dot11).AsDouble();
        Vector128<double> heads23 = TLanes.SumEach(dot20, dot21, dot30, dot31).AsDouble();
        *(double*)scores = heads01.ToScalar();
        *(double*)(scores + ScoreRowFloats) = heads01.GetElement(1);
        *(double*)(scores + 2 * ScoreRowFloats) = heads23.ToScalar();
        *(double*)(scores + 3 * ScoreRowFloats) = heads23.GetElement(1);
    }

    /// <summary>Line <paramref name="line"/> of the four key rows: four lines of the four rows at <paramref name="ahead"/> requested (in row order), then its vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LineFour<TKernel, TLanes, TVector, TElement>(int line, float* query0, float* query1, float* query2, float* query3, byte* row0, byte* row1, byte* row2, byte* row3, byte* ahead, nint rowBytes,
        ref TVector dot00, ref TVector dot01, ref TVector dot02, ref TVector dot03, ref TVector dot10, ref TVector dot11, ref TVector dot12, ref TVector dot13, ref TVector dot20, ref TVector dot21, ref TVector dot22, ref TVector dot23, ref TVector dot30, ref TVector dot31, ref TVector dot32, ref TVector dot33)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        RequestGroupLines<TKernel, TElement>(ahead, rowBytes, line, 4);
        // The line's vectors (one for fp32 at 512 bits): a loop, since unrolling these too exceeds the JIT's inlining budget.
        int end = Math.Min((line + 1) * 64 / sizeof(TElement), TKernel.HeadDim);
        for (int d = line * 64 / sizeof(TElement); d < end; d += TLanes.Count)
        {
            VectorFour<TKernel, TLanes, TVector, TElement>(d, query0, query1, query2, query3, row0, row1, row2, row3, ref dot00, ref dot01, ref dot02, ref dot03, ref dot10, ref dot11, ref dot12, ref dot13, ref dot20, ref dot21, ref dot22, ref dot23, ref dot30, ref dot31, ref dot32, ref dot33);
        }
    }

    /// <summary>Line <paramref name="line"/> of the two key rows: two lines of the two rows at <paramref name="ahead"/> requested (in row order), then its vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LineTwo<TKernel, TLanes, TVector, TElement>(int line, float* query0, float* query1, float* query2, float* query3, byte* row0, byte* row1, byte* ahead, nint rowBytes,
        ref TVector dot00, ref TVector dot01, ref TVector dot10, ref TVector dot11, ref TVector dot20, ref TVector dot21, ref TVector dot30, ref TVector dot31)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        RequestGroupLines<TKernel, TElement>(ahead, rowBytes, line, 2);
        // The line's vectors (one for fp32 at 512 bits): a loop, since unrolling these too exceeds the JIT's inlining budget.
        int end = Math.Min((line + 1) * 64 / sizeof(TElement), TKernel.HeadDim);
        for (int d = line * 64 / sizeof(TElement); d < end; d += TLanes.Count)
        {
            VectorTwo<TKernel, TLanes, TVector, TElement>(d, query0, query1, query2, query3, row0, row1, ref dot00, ref dot01, ref dot10, ref dot11, ref dot20, ref dot21, ref dot30, ref dot31);
        }
    }

    /// <summary>
    /// Elements <paramref name="d"/> .. d + Count - 1 of four key rows into the 4 x 4 dot products (nothing at or past
    /// HeadDim). Not two calls of <see cref="VectorTwo{TKernel, TLanes, TVector, TElement}"/>: their query loads were not
    /// all shared, and HeadDim 128's sixteen inlined steps then exceeded the JIT's inlining budget.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VectorFour<TKernel, TLanes, TVector, TElement>(int d, float* query0, float* query1, float* query2, float* query3, byte* row0, byte* row1, byte* row2, byte* row3,
        ref TVector dot00, ref TVector dot01, ref TVector dot02, ref TVector dot03, ref TVector dot10, ref TVector dot11, ref TVector dot12, ref TVector dot13, ref TVector dot20, ref TVector dot21, ref TVector dot22, ref TVector dot23, ref TVector dot30, ref TVector dot31, ref TVector dot32, ref TVector dot33)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        if (d >= TKernel.HeadDim)
        {
            return;
        }

        TVector key0 = LoadElements<TLanes, TVector, TElement>(row0, d), key1 = LoadElements<TLanes, TVector, TElement>(row1, d);
        TVector key2 = LoadElements<TLanes, TVector, TElement>(row2, d), key3 = LoadElements<TLanes, TVector, TElement>(row3, d);
        TVector q = TLanes.Load(query0 + d);
        dot00 = TLanes.MultiplyAdd(q, key0, dot00);
        dot01 = TLanes.MultiplyAdd(q, key1, dot01);
        dot02 = TLanes.MultiplyAdd(q, key2, dot02);
        dot03 = TLanes.MultiplyAdd(q, key3, dot03);
        q = TLanes.Load(query1 + d);
        dot10 = TLanes.MultiplyAdd(q, key0, dot10);
        dot11 = TLanes.MultiplyAdd(q, key1, dot11);
        dot12 = TLanes.MultiplyAdd(q, key2, dot12);
        dot13 = TLanes.MultiplyAdd(q, key3, dot13);
        q = TLanes.Load(query2 + d);
        dot20 = TLanes.MultiplyAdd(q, key0, dot20);
        dot21 = TLanes.MultiplyAdd(q, key1, dot21);
        dot22 = TLanes.MultiplyAdd(q, key2, dot22);
        dot23 = TLanes.MultiplyAdd(q, key3, dot23);
        q = TLanes.Load(query3 + d);
        dot30 = TLanes.MultiplyAdd(q, key0, dot30);
        dot31 = TLanes.MultiplyAdd(q, key1, dot31);
        dot32 = TLanes.MultiplyAdd(q, key2, dot32);
        dot33 = TLanes.MultiplyAdd(q, key3, dot33);
    }

    /// <summary>Elements <paramref name="d"/> .. d + Count - 1 of two key rows into the 4 x 2 dot products (nothing at or past HeadDim).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VectorTwo<TKernel, TLanes, TVector, TElement>(int d, float* query0, float* query1, float* query2, float* query3, byte* row0, byte* row1,
        ref TVector dot00, ref TVector dot01, ref TVector dot10, ref TVector dot11, ref TVector dot20, ref TVector dot21, ref TVector dot30, ref TVector dot31)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        if (d >= TKernel.HeadDim)
        {
            return;
        }

        TVector key0 = LoadElements<TLanes, TVector, TElement>(row0, d), key1 = LoadElements<TLanes, TVector, TElement>(row1, d);
        TVector q = TLanes.Load(query0 + d);
        dot00 = TLanes.MultiplyAdd(q, key0, dot00);
        dot01 = TLanes.MultiplyAdd(q, key1, dot01);
        q = TLanes.Load(query1 + d);
        dot10 = TLanes.MultiplyAdd(q, key0, dot10);
        dot11 = TLanes.MultiplyAdd(q, key1, dot11);
        q = TLanes.Load(query2 + d);
        dot20 = TLanes.MultiplyAdd(q, key0, dot20);
        dot21 = TLanes.MultiplyAdd(q, key1, dot21);
        q = TLanes.Load(query3 + d);
        dot30 = TLanes.MultiplyAdd(q, key0, dot30);
        dot31 = TLanes.MultiplyAdd(q, key1, dot31);
    }

    /// <summary>
    /// accumulator_h += Σ p_hk · value_k for the four heads: head x column-vector accumulators, each value vector loaded,
    /// and widened, once for the four heads; 4 vectors of columns at a time with AVX-512's 32 registers (16 accumulators),
    /// 2 with 16, then one.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void AddValuesFour<TKernel, TLanes, TVector, TElement>(in GroupBlock group, float* probabilities, byte* values, nint rowBytes, int count, byte* nextValues)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        int headDim = TKernel.HeadDim, width = TLanes.Count;
        ReadOnlySpan<int> heads = group.Heads;
        float* output0 = group.States + heads[0] * group.StateStride + 2, output1 = group.States + heads[1] * group.StateStride + 2;
        float* output2 = group.States + heads[2] * group.StateStride + 2, output3 = group.States + heads[3] * group.StateStride + 2;
        float* p0 = probabilities, p1 = p0 + ScoreRowFloats, p2 = p1 + ScoreRowFloats, p3 = p2 + ScoreRowFloats;
        if (TLanes.Count == 16 && headDim == 8 * 16)
        {
            // Rows of eight vectors (HeadDim 128 on AVX-512): two heads' whole rows in 16 accumulators, so the first pass reads
            // each value row from memory front to back; the second pair's pass reads the tile again from L1. Column passes
            // over four heads read every row a piece at a time, a strided order the hardware prefetchers follow badly.
            AddWholeRowsTwoHeads<TKernel, TLanes, TVector, TElement>(output0, output1, p0, p1, values, rowBytes, count, null);
            AddWholeRowsTwoHeads<TKernel, TLanes, TVector, TElement>(output2, output3, p2, p3, values, rowBytes, count, nextValues);
            return;
        }

        int column = 0;
        if (TLanes.Count == 16)
        {
            for (; column + 4 * width <= headDim; column += 4 * width)
            {
                int c1 = column + width, c2 = column + 2 * width, c3 = column + 3 * width;
                TVector a0 = TLanes.Load(output0 + column), b0 = TLanes.Load(output0 + c1), c0 = TLanes.Load(output0 + c2), d0 = TLanes.Load(output0 + c3);
                TVector a1 = TLanes.Load(output1 + column), b1 = TLanes.Load(output1 + c1), cc1 = TLanes.Load(output1 + c2), d1 = TLanes.Load(output1 + c3);
                TVector a2 = TLanes.Load(output2 + column), b2 = TLanes.Load(output2 + c1), cc2 = TLanes.Load(output2 + c2), d2 = TLanes.Load(output2 + c3);
                TVector a3 = TLanes.Load(output3 + column), b3 = TLanes.Load(output3 + c1), cc3 = TLanes.Load(output3 + c2), d3 = TLanes.Load(output3 + c3);
                byte* row = values;
                for (int k = 0; k < count; k++, row += rowBytes)
                {
                    if (column == 0)
                    {
                        RequestRow<TKernel, TElement>(nextValues + k * rowBytes);
                    }

                    TVector v0 = LoadElements<TLanes, TVector, TElement>(row, column), v1 = LoadElements<TLanes, TVector, TElement>(row, c1);
                    TVector v2 = LoadElements<TLanes, TVector, TElement>(row, c2), v3 = LoadElements<TLanes, TVector, TElement>(row, c3);
                    TVector p = TLanes.Create(p0[k]);
                    a0 = TLanes.MultiplyAdd(p, v0, a0);
                    b0 = TLanes.MultiplyAdd(p, v1, b0);
                    c0 = TLanes.MultiplyAdd(p, v2, c0);
                    d0 = TLanes.MultiplyAdd(p, v3, d0);
                    p = TLanes.Create(p1[k]);
                    a1 = TLanes.MultiplyAdd(p, v0, a1);
                    b1 = TLanes.MultiplyAdd(p, v1, b1);
                    cc1 = TLanes.MultiplyAdd(p, v2, cc1);
                    d1 = TLanes.MultiplyAdd(p, v3, d1);
                    p = TLanes.Create(p2[k]);
                    a2 = TLanes.MultiplyAdd(p, v0, a2);
                    b2 = TLanes.MultiplyAdd(p, v1, b2);
                    cc2 = TLanes.MultiplyAdd(p, v2, cc2);
                    d2 = TLanes.MultiplyAdd(p, v3, d2);
                    p = TLanes.Create(p3[k]);
                    a3 = TLanes.MultiplyAdd(p, v0, a3);
                    b3 = TLanes.MultiplyAdd(p, v1, b3);
                    cc3 = TLanes.MultiplyAdd(p, v2, cc3);
                    d3 = TLanes.MultiplyAdd(p, v3, d3);
                }

                TLanes.Store(a0, output0 + column);
                TLanes.Store(b0, output0 + c1);
                TLanes.Store(c0, output0 + c2);
                TLanes.Store(d0, output0 + c3);
                TLanes.Store(a1, output1 + column);
                TLanes.Store(b1, output1 + c1);
                TLanes.Store(cc1, output1 + c2);
                TLanes.Store(d1, output1 + c3);
                TLanes.Store(a2, output2 + column);
                TLanes.Store(b2, output2 + c1);
                TLanes.Store(cc2, output2 + c2);
                TLanes.Store(d2, output2 + c3);
                TLanes.Store(a3, output3 + column);
                TLanes.Store(b3, output3 + c1);
                TLanes.Store(cc3, output3 + c2);
                TLanes.Store(d3, output3 + c3);
            }
        }

        for (; column + 2 * width <= headDim; column += 2 * width)
        {
            // Each pass requests the lines of the next tile's rows that it reads itself (one per row at 256 bits over fp32,
            // every other pass at 128 bits), so the requests run through all passes at the pace of the arithmetic. Asking
            // for whole rows in the first pass (as the four-vector passes above still do) put a row's eight requests on
            // every step of that pass, more than the core keeps in flight, and none on the seven after: 0.83-0.85x the
            // time per fp32 token at 64K on a Zen 1 with requests spread.
            int firstLineByte = (column * sizeof(TElement) + 63) & ~63, endByte = (column + 2 * width) * sizeof(TElement);
            TVector a0 = TLanes.Load(output0 + column), b0 = TLanes.Load(output0 + column + width);
            TVector a1 = TLanes.Load(output1 + column), b1 = TLanes.Load(output1 + column + width);
            TVector a2 = TLanes.Load(output2 + column), b2 = TLanes.Load(output2 + column + width);
            TVector a3 = TLanes.Load(output3 + column), b3 = TLanes.Load(output3 + column + width);
            byte* row = values, ahead = nextValues;
            for (int k = 0; k < count; k++, row += rowBytes, ahead += rowBytes)
            {
                for (int lineByte = firstLineByte; lineByte < endByte; lineByte += 64)
                {
                    LineRequests.Request(ahead + lineByte);
                }

                TVector left = LoadElements<TLanes, TVector, TElement>(row, column), right = LoadElements<TLanes, TVector, TElement>(row, column + width);
                TVector p = TLanes.Create(p0[k]);
                a0 = TLanes.MultiplyAdd(p, left, a0);
                b0 = TLanes.MultiplyAdd(p, right, b0);
                p = TLanes.Create(p1[k]);
                a1 = TLanes.MultiplyAdd(p, left, a1);
                b1 = TLanes.MultiplyAdd(p, right, b1);
                p = TLanes.Create(p2[k]);
                a2 = TLanes.MultiplyAdd(p, left, a2);
                b2 = TLanes.MultiplyAdd(p, right, b2);
                p = TLanes.Create(p3[k]);
                a3 = TLanes.MultiplyAdd(p, left, a3);
                b3 = TLanes.MultiplyAdd(p, right, b3);
            }

            TLanes.Store(a0, output0 + column);
            TLanes.Store(b0, output0 + column + width);
            TLanes.Store(a1, output1 + column);
            TLanes.Store(b1, output1 + column + width);
            TLanes.Store(a2, output2 + column);
            TLanes.Store(b2, output2 + column + width);
            TLanes.Store(a3, output3 + column);
            TLanes.Store(b3, output3 + column + width);
        }

        if (column < headDim)
        {
            TVector a0 = TLanes.Load(output0 + column), a1 = TLanes.Load(output1 + column), a2 = TLanes.Load(output2 + column), a3 = TLanes.Load(output3 + column);
            byte* row = values;
            for (int k = 0; k < count; k++, row += rowBytes)
            {
                TVector value = LoadElements<TLanes, TVector, TElement>(row, column);
                a0 = TLanes.MultiplyAdd(TLanes.Create(p0[k]), value, a0);
                a1 = TLanes.MultiplyAdd(TLanes.Create(p1[k]), value, a1);
                a2 = TLanes.MultiplyAdd(TLanes.Create(p2[k]), value, a2);
                a3 = TLanes.MultiplyAdd(TLanes.Create(p3[k]), value, a3);
            }

            TLanes.Store(a0, output0 + column);
            TLanes.Store(a1, output1 + column);
            TLanes.Store(a2, output2 + column);
            TLanes.Store(a3, output3 + column);
        }
    }

    /// <summary>
    /// The requests of a score loop's line step <paramref name="step"/>: <paramref name="rows"/> lines of the next group's
    /// <paramref name="rows"/> rows at <paramref name="ahead"/>, so that the steps over a row's lines request all of the
    /// group's. Over an fp32 cache, in address order (numbered row by row, a JIT-constant number of lines per row): one
    /// ascending stream, which the L2's prefetcher follows. Asking for the step's own line of every row instead jumps a
    /// row at every request; on a Zen 5 that order took 1.03-1.06x the time per fp32 token at 64K and 1.06-1.11x for 16
    /// batched streams at 8K (two threads, with either build as the comparison's "before"). A 16-bit cache keeps it: in
    /// address order its decode took 1.03-1.06x the time (Half and BFloat16, either build as "before").
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RequestGroupLines<TKernel, TElement>(byte* ahead, nint rowBytes, int step, int rows)
        where TKernel : struct, IAttentionRowKernel
        where TElement : unmanaged
    {
        if (sizeof(TElement) != sizeof(float))
        {
            for (int row = 0; row < rows; row++)
            {
                LineRequests.Request(ahead + row * rowBytes + step * 64);
            }

            return;
        }

        int linesPerRow = (TKernel.HeadDim * sizeof(TElement) + 63) / 64;
        for (int line = step * rows; line < (step + 1) * rows; line++)
        {
            LineRequests.Request(ahead + line / linesPerRow * rowBytes + line % linesPerRow * 64);
        }
    }

    /// <summary>Requests every 64-byte line of the cache row at <paramref name="row"/> (HeadDim elements; the bound is a JIT constant).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RequestRow<TKernel, TElement>(byte* row)
        where TKernel : struct, IAttentionRowKernel
        where TElement : unmanaged
    {
        for (int line = 0; line < TKernel.HeadDim * sizeof(TElement); line += 64)
        {
            LineRequests.Request(row + line);
        }
    }

    /// <summary>
    /// accumulator_h += Σ p_hk · value_k for two heads whose rows are exactly eight vectors: each row is read whole, in
    /// order, and the same row of the tile at <paramref name="nextValues"/> requested (none when null).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddWholeRowsTwoHeads<TKernel, TLanes, TVector, TElement>(float* outputA, float* outputB, float* pA, float* pB, byte* values, nint rowBytes, int count, byte* nextValues)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TElement : unmanaged
    {
        int w = TLanes.Count;
        TVector a0 = TLanes.Load(outputA), a1 = TLanes.Load(outputA + w), a2 = TLanes.Load(outputA + 2 * w), a3 = TLanes.Load(outputA + 3 * w);
        TVector a4 = TLanes.Load(outputA + 4 * w), a5 = TLanes.Load(outputA + 5 * w), a6 = TLanes.Load(outputA + 6 * w), a7 = TLanes.Load(outputA + 7 * w);
        TVector b0 = TLanes.Load(outputB), b1 = TLanes.Load(outputB + w), b2 = TLanes.Load(outputB + 2 * w), b3 = TLanes.Load(outputB + 3 * w);
        TVector b4 = TLanes.Load(outputB + 4 * w), b5 = TLanes.Load(outputB + 5 * w), b6 = TLanes.Load(outputB + 6 * w), b7 = TLanes.Load(outputB + 7 * w);
        byte* row = values, ahead = nextValues;
        for (int k = 0; k < count; k++, row += rowBytes, ahead += rowBytes)
        {
            if (nextValues != null)
            {
                RequestRow<TKernel, TElement>(ahead);
            }

            TVector pa = TLanes.Create(pA[k]), pb = TLanes.Create(pB[k]);
            TVector v = LoadElements<TLanes, TVector, TElement>(row, 0);
            a0 = TLanes.MultiplyAdd(pa, v, a0);
            b0 = TLanes.MultiplyAdd(pb, v, b0);
            v = LoadElements<TLanes, TVector, TElement>(row, w);
            a1 = TLanes.MultiplyAdd(pa, v, a1);
            b1 = TLanes.MultiplyAdd(pb, v, b1);
            v = LoadElements<TLanes, TVector, TElement>(row, 2 * w);
            a2 = TLanes.MultiplyAdd(pa, v, a2);
            b2 = TLanes.MultiplyAdd(pb, v, b2);
            v = LoadElements<TLanes, TVector, TElement>(row, 3 * w);
            a3 = TLanes.MultiplyAdd(pa, v, a3);
            b3 = TLanes.MultiplyAdd(pb, v, b3);
            v = LoadElements<TLanes, TVector, TElement>(row, 4 * w);
            a4 = TLanes.MultiplyAdd(pa, v, a4);
            b4 = TLanes.MultiplyAdd(pb, v, b4);
            v = LoadElements<TLanes, TVector, TElement>(row, 5 * w);
            a5 = TLanes.MultiplyAdd(pa, v, a5);
            b5 = TLanes.MultiplyAdd(pb, v, b5);
            v = LoadElements<TLanes, TVector, TElement>(row, 6 * w);
            a6 = TLanes.MultiplyAdd(pa, v, a6);
            b6 = TLanes.MultiplyAdd(pb, v, b6);
            v = LoadElements<TLanes, TVector, TElement>(row, 7 * w);
            a7 = TLanes.MultiplyAdd(pa, v, a7);
            b7 = TLanes.MultiplyAdd(pb, v, b7);
        }

        TLanes.Store(a0, outputA);
        TLanes.Store(a1, outputA + w);
        TLanes.Store(a2, outputA + 2 * w);
        TLanes.Store(a3, outputA + 3 * w);
        TLanes.Store(a4, outputA + 4 * w);
        TLanes.Store(a5, outputA + 5 * w);
        TLanes.Store(a6, outputA + 6 * w);
        TLanes.Store(a7, outputA + 7 * w);
        TLanes.Store(b0, outputB);
        TLanes.Store(b1, outputB + w);
        TLanes.Store(b2, outputB + 2 * w);
        TLanes.Store(b3, outputB + 3 * w);
        TLanes.Store(b4, outputB + 4 * w);
        TLanes.Store(b5, outputB + 5 * w);
        TLanes.Store(b6, outputB + 6 * w);
        TLanes.Store(b7, outputB + 7 * w);
    }

    /// <summary>
    /// Scores of the tile's <paramref name="count"/> keys (rows <paramref name="rowStride"/> floats apart) against one
    /// query, four keys at a time: four accumulators over HeadDim, then their four sums together. Past the tile the last
    /// key is scored again (its row is valid memory), then those scores are set to -inf (probability 0). Returns whether a
    /// raw score makes the row NaN (the NaN/Inf policy).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static bool Score<TKernel, TLanes, TVector, TScores>(float* query, float* keys, nint rowStride, int count, float* scores)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : struct, IScoreModifier
    {
        int headDim = TKernel.HeadDim;
        for (int k = 0; k < count; k += 4)
        {
            float* row0 = keys + k * rowStride;
            float* row1 = keys + Math.Min(k + 1, count - 1) * rowStride;
            float* row2 = keys + Math.Min(k + 2, count - 1) * rowStride;
            float* row3 = keys + Math.Min(k + 3, count - 1) * rowStride;
            TVector dot0 = TLanes.Zero, dot1 = TLanes.Zero, dot2 = TLanes.Zero, dot3 = TLanes.Zero;
            for (int d = 0; d < headDim; d += TLanes.Count)
            {
                TVector q = TLanes.Load(query + d);
                dot0 = TLanes.MultiplyAdd(q, TLanes.Load(row0 + d), dot0);
                dot1 = TLanes.MultiplyAdd(q, TLanes.Load(row1 + d), dot1);
                dot2 = TLanes.MultiplyAdd(q, TLanes.Load(row2 + d), dot2);
                dot3 = TLanes.MultiplyAdd(q, TLanes.Load(row3 + d), dot3);
            }

            Vector128.Store(TLanes.SumEach(dot0, dot1, dot2, dot3), scores + k);
        }

        return EndRawScores<TLanes, TVector, TScores>(scores, count, TileKeys);
    }

    /// <summary>
    /// Tests a tile's raw scores by the NaN/Inf policy (lanes past <paramref name="count"/>, up to the tile's
    /// <paramref name="tileKeys"/>, count as 0, which never poisons) and then sets those lanes to -inf (probability 0).
    /// Returns whether a raw score makes the row NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool EndRawScores<TLanes, TVector, TScores>(float* scores, int count, int tileKeys)
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : struct, IScoreModifier
    {
        for (int k = count; k < tileKeys; k++)
        {
            scores[k] = 0f;
        }

        bool poisoned = false;
        for (int k = 0; k < tileKeys; k += TLanes.Count)
        {
            poisoned |= TLanes.AnyPoisons<TScores>(TLanes.Load(scores + k));
        }

        for (int k = count; k < tileKeys; k++)
        {
            scores[k] = float.NegativeInfinity;
        }

        return poisoned;
    }

    /// <summary>
    /// One head's tile of raw scores to probabilities, in place: the score modifiers at the keys' positions, the online
    /// softmax step on the head's state, and the NaN/Inf policy's verdict (<paramref name="poisoned"/> makes the sum NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ToProbabilities<TKernel, TLanes, TVector, TScores>(in GroupBlock group, int head, float* scores, int count, int tileKeys, bool poisoned, int segmentIndex, KeySegment segment, int tileStart)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : struct, IScoreModifier
    {
        float* state = group.States + head * group.StateStride;
        if (TScores.ModifiesScores)
        {
            var row = new ScoreRow(group.QueryPosition, head, group.AlibiSlopes.IsEmpty ? 0f : group.AlibiSlopes[head], group.Positions);
            ScoreMath.Modify<TScores>(new Span<float>(scores, count), row.Site(segmentIndex, segment, tileStart));
        }

        Softmax<TKernel, TLanes, TVector, TScores>(state, scores, tileKeys);
        if (poisoned)
        {
            state[1] = float.NaN;
        }
    }

    /// <summary>
    /// The online-softmax step for one head and tile: a larger max rescales the state (sum and accumulator) by
    /// 2^(old - new), then the scores become probabilities 2^(score - max) in place and their sum is added.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Softmax<TKernel, TLanes, TVector, TScores>(float* state, float* scores, int tileKeys)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
        where TScores : struct, IScoreModifier
    {
        TVector tileMaxVector = TLanes.Load(scores);
        for (int k = TLanes.Count; k < tileKeys; k += TLanes.Count)
        {
            tileMaxVector = TLanes.Max(tileMaxVector, TLanes.Load(scores + k));
        }

        float tileMax = TLanes.MaxAcross(tileMaxVector);
        float runningMax = state[0];
        if (tileMax > runningMax)
        {
            TVector correction = TLanes.Create(VectorMath.Exp2(runningMax - tileMax));
            state[1] *= VectorMath.Exp2(runningMax - tileMax);
            float* accumulator = state + 2;
            for (int d = 0; d < TKernel.HeadDim; d += TLanes.Count)
            {
                TLanes.Store(TLanes.Multiply(TLanes.Load(accumulator + d), correction), accumulator + d);
            }

            state[0] = runningMax = tileMax;
        }

        // A row every key of which a mask hid so far has max -inf; 2^(-inf - 0) keeps its probabilities 0 instead of NaN.
        TVector max = TLanes.Create(TScores.ModifiesScores && runningMax == float.NegativeInfinity ? 0f : runningMax);
        TVector sum = TLanes.Zero;
        for (int k = 0; k < tileKeys; k += TLanes.Count)
        {
            TVector probability = TLanes.Exp2(TLanes.Subtract(TLanes.Load(scores + k), max));
            TLanes.Store(probability, scores + k);
            sum = TLanes.Add(sum, probability);
        }

        state[1] += TLanes.SumAcross(sum);
    }

    /// <summary>
    /// accumulator += Σ p_k · value_k over the tile's keys: four vectors of columns at a time, two keys per step into two
    /// sets of accumulators (eight independent FMA chains, which fit AVX2's sixteen registers), then the rest of the columns
    /// one vector at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void AddValues<TKernel, TLanes, TVector>(float* accumulator, float* probabilities, float* values, nint rowStride, int count)
        where TKernel : struct, IAttentionRowKernel
        where TLanes : struct, ISimdLanes<TVector>
        where TVector : unmanaged
    {
        int headDim = TKernel.HeadDim, width = TLanes.Count;
        int column = 0;
        for (; column + 4 * width <= headDim; column += 4 * width)
        {
            float* output = accumulator + column;
            TVector even0 = TLanes.Load(output), even1 = TLanes.Load(output + width), even2 = TLanes.Load(output + 2 * width), even3 = TLanes.Load(output + 3 * width);
            TVector odd0 = TLanes.Zero, odd1 = TLanes.Zero, odd2 = TLanes.Zero, odd3 = TLanes.Zero;
            int k = 0;
            for (; k + 2 <= count; k += 2)
            {
                float* first = values + k * rowStride + column, second = first + rowStride;
                TVector p0 = TLanes.Create(probabilities[k]), p1 = TLanes.Create(probabilities[k + 1]);
                even0 = TLanes.MultiplyAdd(p0, TLanes.Load(first), even0);
                even1 = TLanes.MultiplyAdd(p0, TLanes.Load(first + width), even1);
                even2 = TLanes.MultiplyAdd(p0, TLanes.Load(first + 2 * width), even2);
                even3 = TLanes.MultiplyAdd(p0, TLanes.Load(first + 3 * width), even3);
                odd0 = TLanes.MultiplyAdd(p1, TLanes.Load(second), odd0);
                odd1 = TLanes.MultiplyAdd(p1, TLanes.Load(second + width), odd1);
                odd2 = TLanes.MultiplyAdd(p1, TLanes.Load(second + 2 * width), odd2);
                odd3 = TLanes.MultiplyAdd(p1, TLanes.Load(second + 3 * width), odd3);
            }

            if (k < count)
            {
                float* last = values + k * rowStride + column;
                TVector p = TLanes.Create(probabilities[k]);
                even0 = TLanes.MultiplyAdd(p, TLanes.Load(last), even0);
                even1 = TLanes.MultiplyAdd(p, TLanes.Load(last + width), even1);
                even2 = TLanes.MultiplyAdd(p, TLanes.Load(last + 2 * width), even2);
                even3 = TLanes.MultiplyAdd(p, TLanes.Load(last + 3 * width), even3);
            }

            TLanes.Store(TLanes.Add(even0, odd0), output);
            TLanes.Store(TLanes.Add(even1, odd1), output + width);
            TLanes.Store(TLanes.Add(even2, odd2), output + 2 * width);
            TLanes.Store(TLanes.Add(even3, odd3), output + 3 * width);
        }

        for (; column < headDim; column += width)
        {
            TVector even = TLanes.Load(accumulator + column), odd = TLanes.Zero;
            int k = 0;
            for (; k + 2 <= count; k += 2)
            {
                float* first = values + k * rowStride + column;
                even = TLanes.MultiplyAdd(TLanes.Create(probabilities[k]), TLanes.Load(first), even);
                odd = TLanes.MultiplyAdd(TLanes.Create(probabilities[k + 1]), TLanes.Load(first + rowStride), odd);
            }

            if (k < count)
            {
                even = TLanes.MultiplyAdd(TLanes.Create(probabilities[k]), TLanes.Load(values + k * rowStride + column), even);
            }

            TLanes.Store(TLanes.Add(even, odd), accumulator + column);
        }
    }
}

/// <summary>
/// A tile's key and value rows, requested from memory at once: a segment's first tile, which nothing before it requested,
/// and, by the one-head path at a tile's start, the next tile (a narrow cache's rows there are widened into a buffer
/// first, so there is no register-tile loop to spread the requests over; the four-head kernel requests the next tile's
/// lines beside its loads instead). One <see cref="LineRequests.Request"/> per 64-byte line; nothing when there is no
/// next tile.
/// </summary>
internal readonly unsafe ref struct NextRows
{
    private readonly byte* _keys, _values;
    private readonly nint _rowStride;
    private readonly int _rows, _rowBytes;

    private NextRows(byte* keys, byte* values, nint rowStride, int rows, int rowBytes)
    {
        _keys = keys;
        _values = values;
        _rowStride = rowStride;
        _rows = rows;
        _rowBytes = rowBytes;
    }

    /// <summary>
    /// The <paramref name="rows"/> slots from <paramref name="firstSlot"/>, <paramref name="step"/> apart, of
    /// <paramref name="source"/> in its own element type; none when <paramref name="rows"/> is 0 or less.
    /// </summary>
    public static NextRows Of(in KvSource source, long firstSlot, int step, int rows, int headDim)
    {
        if (rows <= 0)
        {
            return default;
        }

        int rowBytes = headDim * source.ElementBytes;
        long offset = firstSlot * rowBytes;
        return new NextRows(source.KeyBytes + offset, source.ValueBytes + offset, (nint)step * rowBytes, rows, rowBytes);
    }

    /// <summary>Requests key rows <paramref name="first"/> .. first + count - 1 of the next tile (those it has).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Keys(int first, int count) => Request(_keys, first, count);

    /// <summary>Requests value rows <paramref name="first"/> .. first + count - 1 of the next tile (those it has).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Values(int first, int count) => Request(_values, first, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Request(byte* rows, int first, int count)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported || rows == null)
        {
            return;
        }

        for (int row = first; row < first + count && row < _rows; row++)
        {
            byte* start = rows + row * _rowStride;
            for (int line = 0; line < _rowBytes; line += 64)
            {
                LineRequests.Request(start + line);
            }
        }
    }
}

/// <summary>Where decode's keys and values come from: an fp32 cache read in place, or a narrow one widened a tile at a time.</summary>
internal readonly unsafe struct KvSource
{
    private readonly ushort* _narrowKeys, _narrowValues;

    private KvSource(CacheElement element, float* keys, float* values, ushort* narrowKeys, ushort* narrowValues)
    {
        Element = element;
        Keys = keys;
        Values = values;
        _narrowKeys = narrowKeys;
        _narrowValues = narrowValues;
    }

    public CacheElement Element { get; }

    /// <summary>fp32 keys at slot 0 of the KV head (Single only).</summary>
    public float* Keys { get; }

    /// <summary>fp32 values at slot 0 of the KV head (Single only).</summary>
    public float* Values { get; }

    /// <summary>Keys at slot 0 of the KV head, in the cache's own element type.</summary>
    public byte* KeyBytes => Element == CacheElement.Single ? (byte*)Keys : (byte*)_narrowKeys;

    /// <summary>Values at slot 0 of the KV head, in the cache's own element type.</summary>
    public byte* ValueBytes => Element == CacheElement.Single ? (byte*)Values : (byte*)_narrowValues;

    /// <summary>Bytes per element in the cache: 4 for fp32, 2 for Half and BFloat16.</summary>
    public int ElementBytes => Element == CacheElement.Single ? sizeof(float) : sizeof(ushort);

    /// <summary>Where slot <paramref name="slot"/>'s key and value rows start, as the first of a run <paramref name="step"/> slots apart.</summary>
    public TileStart At(long slot, int step, int headDim)
    {
        long offset = slot * headDim * ElementBytes;
        return new TileStart(KeyBytes + offset, ValueBytes + offset, step);
    }

    public static KvSource Single(float* keys, float* values) => new(CacheElement.Single, keys, values, null, null);

    public static KvSource Narrow(CacheElement element, ushort* keys, ushort* values) => new(element, null, null, keys, values);

    /// <summary>Widens <paramref name="count"/> slots from <paramref name="firstSlot"/>, <paramref name="step"/> apart, into consecutive fp32 rows.</summary>
    public void Widen(long firstSlot, int step, int count, int headDim, float* keys, float* values)
    {
        for (int k = 0; k < count; k++)
        {
            long offset = (firstSlot + (long)k * step) * headDim;
            Tensors.ElementConversion.ToSingle(Element, new ReadOnlySpan<ushort>(_narrowKeys + offset, headDim), new Span<float>(keys + k * headDim, headDim));
            Tensors.ElementConversion.ToSingle(Element, new ReadOnlySpan<ushort>(_narrowValues + offset, headDim), new Span<float>(values + k * headDim, headDim));
        }
    }
}

/// <summary>One call's work for <see cref="GroupDecodeKernel"/>: which heads, their queries and states, and the block's keys.</summary>
internal readonly unsafe ref struct GroupBlock
{
    /// <summary>The query heads (indices into <see cref="Queries"/> and <see cref="States"/>).</summary>
    public ReadOnlySpan<int> Heads { get; init; }

    /// <summary>Every head's query, scaled by scale x log2(e): head h at h x HeadDim.</summary>
    public float* Queries { get; init; }

    /// <summary>The same times 2^112, for Half keys read times 2^-112; null where that would overflow (the one-head path then runs).</summary>
    public float* HalfQueries { get; init; }

    /// <summary>Head h's state (max, sum, then HeadDim floats of unnormalised output) at h x <see cref="StateStride"/>.</summary>
    public float* States { get; init; }

    public nint StateStride { get; init; }

    /// <summary>The heads' keys in this block, as slots of the KV head.</summary>
    public ReadOnlySpan<KeySegment> Segments { get; init; }

    /// <summary>The position of each segment's first key (what score modifiers see).</summary>
    public ReadOnlySpan<int> Positions { get; init; }

    public int QueryPosition { get; init; }

    /// <summary>Per head, the ALiBi slope in base-2 units; empty without score modifiers.</summary>
    public ReadOnlySpan<float> AlibiSlopes { get; init; }

    public KvSource Source { get; init; }

    /// <summary><see cref="GroupDecodeKernel.ScratchFloats(int)"/> floats, 64-byte aligned.</summary>
    public float* Scratch { get; init; }

    /// <summary>
    /// Where the thread reads next after this block (the next group's or work item's first tile), requested during the
    /// block's last tile; <c>default</c> (step 0) for nothing. A hint only: a wrong one costs requests, never results.
    /// </summary>
    public TileStart Then { get; init; }
}

/// <summary>The first row of a run of cache slots, in the cache's own element type, and the slots' step.</summary>
internal readonly unsafe struct TileStart(byte* keyBytes, byte* valueBytes, int step)
{
    public byte* KeyBytes { get; } = keyBytes;

    public byte* ValueBytes { get; } = valueBytes;

    public int Step { get; } = step;
}
