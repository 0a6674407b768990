using System;
using System.Collections.Generic;
using System.Linq;

namespace SparseAttention.Gpu;

/// <summary>
/// FlexAttention's block mask, built on the host from the pattern's own answers: for each (head, block of query rows),
/// the key tiles with a visible pair, each full (no test) or partial with a bit mask of its visible pairs (one bit per
/// row and key, from the rows' key segments). The ILGPU kernel walks this table instead of knowing any pattern, so the
/// GPU sees exactly what <see cref="AttentionPattern.ClassifyTile"/> and
/// <see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment})"/> say. Heads that see the same keys (the
/// pattern's <see cref="AttentionPattern.HeadPeriod"/>) share entries.
/// </summary>
/// <remarks>
/// <para>
/// Blocks and tiles are arithmetic progressions. A block is up to a group's rows <c>rowStart + rowStep · i</c>; a tile
/// is up to KeyTile keys <c>keyStart + keyStep · j</c> (positions relative to the slice's first query and key). With
/// steps of 1 these are runs of consecutive rows and keys. A dilated window (dilation D) or a strided pattern (stride
/// S) makes a row see one key in D (or S): its **residue streams** take the rows of one residue class mod D together and
/// their keys of the matching class with step D, so the window's tiles are full instead of 1/D useful; keys outside the
/// class (global tokens, a strided pattern's local run) go in tiles of step 1 beside them. Each head gets the layout
/// with fewer tiles (a strided pattern's local runs can make consecutive rows the cheaper one).
/// </para>
/// <para>
/// **Long rows** (a global token's row, which sees the whole sequence where the others see a window) would make their
/// block walk every tile while the others walk a few, and the launch would last as long as that one block. So the
/// builder takes them out: the ordinary blocks compute them with no visible key (their masks are empty there and the
/// tiles only they needed are dropped), and separate blocks of long rows, listed by row, walk the long rows' tiles cut
/// into parts about as long as an ordinary block. Each part writes its rows' normalised outputs and log-sum-exps to
/// partial slots, and a merge launch (<see cref="GpuPartialMerge"/>) combines each row's parts, adds a learned sink once
/// and writes the row over what the ordinary block wrote (FlashDecoding's split-KV, for the rows that need it).
/// </para>
/// <para>
/// Layout, all ints: <see cref="TableHeaderInts"/> values (blocks per head: the grid's width, a head with fewer has empty
/// blocks; merge groups per head; partial slots per head; where the merge headers start); then per (head, block) a
/// header of <see cref="HeaderInts"/>: first entry, entry count, row start, row step, row count, partial slot (-1: the
/// block writes its rows; else its row i goes to slot partial slot + i); then per (head, merge group) a merge header of
/// <see cref="MergeInts"/>: row list, row count, first slot, parts (row i's part p is in slot first slot + p · row count
/// + i); then the entries, <see cref="EntryInts"/> each: key start, key step, <see cref="TileClass"/>, mask offset (-1
/// when full), the position of the tile's first key (key j is at position + key step · j: the slice's first key
/// position plus the key start, or, over a rolling cache's ring, the position the slot holds); then the masks, <see cref="MaskWordsPerRow"/> words per row of the block; then the row lists. A block's
/// rows are rowStart + rowStep · i, or, when rowStep is 0, the list of rows at rowStart (<see cref="RowOf(ILGPU.ArrayView{int}, int, int, int)"/>).
/// </para>
/// </remarks>
public static class GpuTileTable
{
    /// <summary>Ints per entry.</summary>
    public const int EntryInts = 5;

    /// <summary>Ints before the block headers: blocks per head, merge groups per head, partial slots per head, where the merge headers start.</summary>
    public const int TableHeaderInts = 4;

    /// <summary>Ints per block header.</summary>
    public const int HeaderInts = 6;

    /// <summary>Ints per merge header.</summary>
    public const int MergeInts = 4;

    /// <summary>A long row is one that sees more than this many times the mean row's keys (and at least <see cref="LongRowMinTiles"/> tiles).</summary>
    internal const int LongRowFactor = 4;

    /// <summary>A row seeing fewer than this many tiles' worth of keys is never split off, however short the others are.</summary>
    internal const int LongRowMinTiles = 4;

    /// <summary>The fewest tiles in a long rows' part (parts are otherwise as long as the mean ordinary block).</summary>
    internal const int MinPartTiles = 4;

    /// <summary>Where (head, block)'s header sits.</summary>
    public static int HeaderOf(int head, int block, int blocksPerHead) => TableHeaderInts + HeaderInts * (head * blocksPerHead + block);

    /// <summary>Where (head, merge group)'s merge header sits, given the table's merge-header start and groups per head.</summary>
    public static int MergeHeaderOf(int head, int group, int mergeStart, int groupsPerHead) => mergeStart + MergeInts * (head * groupsPerHead + group);

    /// <summary>Row <paramref name="index"/> of a block: a progression, or (step 0) the list at <paramref name="rowStart"/>.</summary>
    public static int RowOf(ILGPU.ArrayView<int> tiles, int rowStart, int rowStep, int index) => rowStep != 0 ? rowStart + rowStep * index : tiles[rowStart + index];

    /// <summary>As <see cref="RowOf(ILGPU.ArrayView{int}, int, int, int)"/>, over the table on the host.</summary>
    public static int RowOf(int[] tiles, int rowStart, int rowStep, int index) => rowStep != 0 ? rowStart + rowStep * index : tiles[rowStart + index];

    /// <summary>Mask words per query row of a key tile of <paramref name="keyTile"/> keys.</summary>
    public static int MaskWordsPerRow(int keyTile) => (keyTile + 31) / 32;

    /// <summary>Builds the table for one call shape.</summary>
    /// <exception cref="ArgumentException">The table would not fit in one array (named on <c>shape</c>).</exception>
    public static int[] Build(AttentionPattern pattern, int seqLen, int heads, int groupSize, int keyTile) =>
        Build(pattern, new AttentionSlice(heads, heads, seqLen, 0, seqLen, 0, seqLen), groupSize, keyTile);

    /// <summary>
    /// Builds the table for a partial call: <paramref name="slice"/>'s queries against its keys, the pattern at their absolute
    /// positions. Rows and keys count from the slice's first query and key, as the views hold only the slice.
    /// </summary>
    /// <exception cref="ArgumentException">The table would not fit in one array (named on <c>shape</c>).</exception>
    public static int[] Build(AttentionPattern pattern, AttentionSlice slice, int groupSize, int keyTile)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        int heads = slice.Heads;
        int period = Math.Min(pattern.HeadPeriod, heads);
        var builder = new TableBuilder(pattern, slice, groupSize, keyTile);
        var blocksOfHead = new List<Block>[period];
        var mergesOfHead = new List<Merge>[period];
        var slotsOfHead = new int[period];
        for (int head = 0; head < period; head++)
        {
            bool[]? longRows = builder.LongRows(head);
            List<Block> consecutive = builder.Consecutive(head, longRows);
            int step = ResidueStep(pattern, head);
            List<Block>? residues = step > 1 && step < slice.QueryCount ? builder.ResidueStreams(head, step, longRows) : null;
            List<Block> blocks = residues is not null && TileCount(residues) < TileCount(consecutive) ? residues : consecutive;
            mergesOfHead[head] = new List<Merge>();
            if (longRows is not null)
            {
                // Parts about as long as the head's mean ordinary block, so no part outlasts the rest of the launch.
                int partTiles = Math.Max(MinPartTiles, (int)Math.Ceiling(TileCount(blocks) / (double)Math.Max(1, blocks.Count)));
                slotsOfHead[head] = builder.LongRowParts(head, longRows, partTiles, blocks, mergesOfHead[head]);
            }

            blocksOfHead[head] = blocks;
        }

        return LayOut(builder, heads, blocksOfHead, mergesOfHead, slotsOfHead);
    }

    /// <summary>
    /// Builds the table of one decode step: the query at <paramref name="position"/> (every one of <paramref name="heads"/>
    /// query heads) against a rolling cache laid out by <paramref name="slots"/> with <paramref name="capacity"/> slots per KV
    /// head. The grid's heads are the KV heads; a block's rows are the query heads of one (<see cref="GpuAttentionArguments.RowsAreHeads"/>),
    /// listed, so each key tile is staged once for the whole GQA group. Tiles are runs of slots whose positions run along
    /// with them (a tile the ring wraps inside becomes two entries), cut into parts so that about <paramref name="targetBlocks"/>
    /// blocks share the window (Flash-Decoding); every part writes partial slots, merged by <see cref="GpuPartialMerge"/>.
    /// Without <paramref name="positionsMatter"/> (no ALiBi, mask or score mod: nothing reads a key's position) a tile's
    /// entry ignores where the ring wraps: one entry per tile of slots, its position field the slot's, so the table depends
    /// only on the slots each head sees (<see cref="DecodeSlots"/>) and a full ring gives the same table every step.
    /// </summary>
    internal static int[] BuildDecode(AttentionPattern pattern, Cpu.SlotMap slots, int position, int heads, int kvHeads, int capacity, int groupSize, int keyTile, int targetBlocks, bool positionsMatter = true)
    {
        var builder = new TableBuilder(pattern, new AttentionSlice(heads, kvHeads, position + 1, position, 1, 0, capacity), groupSize, keyTile);
        var blocksOfHead = new List<Block>[kvHeads];
        var mergesOfHead = new List<Merge>[kvHeads];
        var slotsOfHead = new int[kvHeads];
        for (int kvHead = 0; kvHead < kvHeads; kvHead++)
        {
            blocksOfHead[kvHead] = new List<Block>();
            mergesOfHead[kvHead] = new List<Merge>();
            slotsOfHead[kvHead] = builder.DecodeParts(slots, kvHead, heads / kvHeads, targetBlocks / kvHeads, blocksOfHead[kvHead], mergesOfHead[kvHead], positionsMatter);
        }

        return LayOut(builder, kvHeads, blocksOfHead, mergesOfHead, slotsOfHead);
    }

    /// <summary>
    /// The cache slots each of <paramref name="heads"/> query heads sees at the decode step of <paramref name="position"/>:
    /// head h's slot segments into <paramref name="segments"/> after those of the heads before it, and their number into
    /// <paramref name="counts"/>[h] (both grown as needed). Returns the segments written. Two steps that write the same
    /// have the same <see cref="BuildDecode"/> table when positions do not matter: a window whose ring is full sees every
    /// slot at every step, so decode builds its table once instead of every token.
    /// </summary>
    internal static int DecodeSlots(AttentionPattern pattern, Cpu.SlotMap slots, int position, int heads, ref KeySegment[] segments, ref int[] counts)
    {
        int perHead = Cpu.SlotMap.MaxSlotSegments(pattern);
        Span<KeySegment> positions = pattern.MaxSegmentsPerQuery <= 64 ? stackalloc KeySegment[pattern.MaxSegmentsPerQuery] : new KeySegment[pattern.MaxSegmentsPerQuery];
        Span<int> firstPositions = perHead <= 64 ? stackalloc int[perHead] : new int[perHead];
        if (segments.Length < heads * perHead)
        {
            segments = new KeySegment[heads * perHead];
        }

        if (counts.Length < heads)
        {
            counts = new int[heads];
        }

        int written = 0;
        for (int head = 0; head < heads; head++)
        {
            int count = pattern.GetKeySegments(position, head, position + 1, positions);
            Span<KeySegment> headSlots = segments.AsSpan(written, perHead);
            counts[head] = Canonical(headSlots.Slice(0, slots.ToSlots(positions.Slice(0, count), headSlots, firstPositions)));
            written += counts[head];
        }

        return written;
    }

    /// <summary>
    /// Sorts a head's slot segments by first slot and joins runs that continue each other, in place; returns how many
    /// remain. A full ring maps to a run up to the ring's end and one from its start, split where it wraps, which moves
    /// every step: joined, every step's slots read the same.
    /// </summary>
    private static int Canonical(Span<KeySegment> slots)
    {
        slots.Sort((a, b) => a.Start.CompareTo(b.Start));
        int count = 0;
        foreach (KeySegment segment in slots)
        {
            if (count > 0 && slots[count - 1].Step == 1 && segment.Step == 1 && slots[count - 1].Last + 1 == segment.Start)
            {
                KeySegment run = slots[count - 1];
                slots[count - 1] = new KeySegment(run.Start, 1, run.Count + segment.Count);
            }
            else
            {
                slots[count++] = segment;
            }
        }

        return count;
    }

    /// <summary>The table of <paramref name="heads"/> grid heads (head h takes the lists of h mod their count), from the builder's entries, masks and rows.</summary>
    private static int[] LayOut(TableBuilder builder, int heads, List<Block>[] blocksOfHead, List<Merge>[] mergesOfHead, int[] slotsOfHead)
    {
        int period = blocksOfHead.Length;
        int blocksPerHead = blocksOfHead.Max(blocks => blocks.Count);
        int mergesPerHead = mergesOfHead.Max(merges => merges.Count);
        int slotsPerHead = slotsOfHead.Max();
        long mergeStart = TableHeaderInts + (long)heads * blocksPerHead * HeaderInts;
        long entryBase = mergeStart + (long)heads * mergesPerHead * MergeInts;
        long maskBase = entryBase + builder.Entries.Count, rowListBase = maskBase + builder.Masks.Count;
        long total = rowListBase + builder.RowLists.Count;
        if (total > Array.MaxLength)
        {
            throw new ArgumentException($"This call's GPU tile table would hold {total} ints, more than one array; split it over fewer heads or a shorter sequence.", "shape");
        }

        var table = new int[total];
        table[0] = blocksPerHead;
        table[1] = mergesPerHead;
        table[2] = slotsPerHead;
        table[3] = (int)mergeStart;
        for (int head = 0; head < heads; head++)
        {
            List<Block> blocks = blocksOfHead[head % period];
            for (int b = 0; b < blocks.Count; b++)
            {
                int at = HeaderOf(head, b, blocksPerHead);
                table[at] = (int)entryBase + blocks[b].FirstEntry;
                table[at + 1] = blocks[b].EntryCount;
                table[at + 2] = blocks[b].RowStep == 0 ? (int)rowListBase + blocks[b].RowStart : blocks[b].RowStart;
                table[at + 3] = blocks[b].RowStep;
                table[at + 4] = blocks[b].RowCount;
                table[at + 5] = blocks[b].PartialSlot;
            }

            // Past the head's own blocks: no entries and no rows (the kernel's group only returns).
            for (int b = blocks.Count; b < blocksPerHead; b++)
            {
                int at = HeaderOf(head, b, blocksPerHead);
                table[at] = (int)entryBase;
                table[at + 3] = 1;
                table[at + 5] = -1;
            }

            List<Merge> merges = mergesOfHead[head % period];
            for (int g = 0; g < mergesPerHead; g++)
            {
                // Past the head's own merge groups: no rows.
                int at = MergeHeaderOf(head, g, (int)mergeStart, mergesPerHead);
                Merge merge = g < merges.Count ? merges[g] : default;
                table[at] = (int)rowListBase + merge.RowList;
                table[at + 1] = merge.RowCount;
                table[at + 2] = merge.FirstSlot;
                table[at + 3] = merge.Parts;
            }
        }

        List<int> entries = builder.Entries;
        for (int e = 0; e < entries.Count; e += EntryInts)
        {
            table[entryBase + e] = entries[e];
            table[entryBase + e + 1] = entries[e + 1];
            table[entryBase + e + 2] = entries[e + 2];
            table[entryBase + e + 3] = entries[e + 3] < 0 ? -1 : (int)maskBase + entries[e + 3];
            table[entryBase + e + 4] = entries[e + 4];
        }

        builder.Masks.CopyTo(table, (int)maskBase);
        builder.RowLists.CopyTo(table, (int)rowListBase);
        return table;
    }

    /// <summary>
    /// The step of a head's residue streams: the window's dilation, the stride, or the largest step both share; 1 when the
    /// head has neither (consecutive rows and keys only).
    /// </summary>
    internal static int ResidueStep(AttentionPattern pattern, int head)
    {
        int dilation = pattern.DilationOf(head), stride = pattern.Stride;
        return (dilation > 1, stride > 1) switch
        {
            (true, true) => GreatestCommonDivisor(dilation, stride),
            (true, false) => dilation,
            (false, true) => stride,
            _ => 1,
        };
    }

    private static int GreatestCommonDivisor(int a, int b) => b == 0 ? a : GreatestCommonDivisor(b, a % b);

    private static long TileCount(List<Block> blocks) => blocks.Sum(block => (long)block.EntryCount);

    /// <summary>
    /// A block of rows and where its entries sit in <see cref="TableBuilder.Entries"/>; a long rows' part has row step 0
    /// (its rows are the list at <see cref="RowStart"/> in <see cref="TableBuilder.RowLists"/>) and a partial slot.
    /// </summary>
    private readonly record struct Block(int RowStart, int RowStep, int RowCount, int FirstEntry, int EntryCount, int PartialSlot = -1);

    /// <summary>A group of long rows (the list at <see cref="RowList"/>) merged from <see cref="Parts"/> parts' slots.</summary>
    private readonly record struct Merge(int RowList, int RowCount, int FirstSlot, int Parts);

    /// <summary>Builds blocks, entries and masks into shared lists, one head at a time.</summary>
    private sealed class TableBuilder(AttentionPattern pattern, AttentionSlice slice, int groupSize, int keyTile)
    {
        private readonly KeySegment[] _segments = new KeySegment[pattern.MaxSegmentsPerQuery];
        private readonly int _words = MaskWordsPerRow(keyTile);

        public List<int> Entries { get; } = new();

        public List<int> Masks { get; } = new();

        /// <summary>The long rows' parts' row lists.</summary>
        public List<int> RowLists { get; } = new();

        /// <summary>
        /// One KV head of a decode step: its <paramref name="groupHeads"/> query heads as listed rows (up to a group's rows per
        /// list), each list's tiles cut into about <paramref name="targetParts"/> parts of at least <see cref="MinPartTiles"/>
        /// tiles, all writing partial slots. Returns the slots used.
        /// </summary>
        public int DecodeParts(Cpu.SlotMap map, int kvHead, int groupHeads, int targetParts, List<Block> blocks, List<Merge> merges, bool positionsMatter)
        {
            int position = slice.QueryStart;
            var slotSegments = new KeySegment[Cpu.SlotMap.MaxSlotSegments(pattern)];
            var firstPositions = new int[slotSegments.Length];
            // A tile: keyTile slots from a multiple of keyTile whose positions are slot + offset; a ring wrapping inside the
            // slots (or pinned slots of non-adjacent positions) gives two tiles over the same slots with different offsets.
            var tiles = new Dictionary<(int Number, int Offset), int[]>();
            int slots = 0;
            for (int listStart = 0; listStart < groupHeads; listStart += groupSize)
            {
                int rowCount = Math.Min(groupSize, groupHeads - listStart);
                int rowList = RowLists.Count;
                tiles.Clear();
                for (int i = 0; i < rowCount; i++)
                {
                    RowLists.Add(listStart + i);
                    int head = kvHead * groupHeads + listStart + i;
                    int count = pattern.GetKeySegments(position, head, position + 1, _segments);
                    int mapped = map.ToSlots(_segments.AsSpan(0, count), slotSegments, firstPositions);
                    for (int s = 0; s < mapped; s++)
                    {
                        // A segment's positions run along with its slots, so its offset (position - slot) is one number, and
                        // each tile it crosses is looked up once. A lookup per key made this table 1.3 ms of host work per
                        // step at a 4096-key window and 32 heads (0.45 ms now), where the H200 reads the window's 33.6 MB of
                        // keys and values in about ten microseconds.
                        KeySegment segment = slotSegments[s];
                        // Without positions, the slots before and after the ring's wrap share their tiles' entries.
                        int offset = positionsMatter ? firstPositions[s] - segment.Start : 0;
                        for (int k = 0; k < segment.Count;)
                        {
                            int slot = segment.Start + k * segment.Step, number = slot / keyTile, tileEnd = (number + 1) * keyTile;
                            if (!tiles.TryGetValue((number, offset), out int[]? mask))
                            {
                                tiles[(number, offset)] = mask = new int[groupSize * _words];
                            }

                            if (segment.Step == 1)
                            {
                                // A run of slots: its bits a word at a time.
                                int last = Math.Min(tileEnd, segment.Start + segment.Count) - 1;
                                SetBits(mask, i * _words, slot - number * keyTile, last - number * keyTile);
                                k += last - slot + 1;
                                continue;
                            }

                            for (; k < segment.Count && slot < tileEnd; k++, slot += segment.Step)
                            {
                                int bit = slot - number * keyTile;
                                mask[i * _words + (bit >> 5)] |= 1 << (bit & 31);
                            }
                        }
                    }
                }

                int first = Entries.Count, tileCount = 0;
                foreach (((int number, int offset), int[] mask) in tiles.OrderBy(tile => tile.Key.Number).ThenBy(tile => tile.Key.Offset))
                {
                    int keyStart = number * keyTile;
                    bool full = IsFull(mask, rowCount, Math.Min(keyTile, slice.KeyCount - keyStart));
                    AddEntry(keyStart, 1, full ? TileClass.Full : TileClass.Partial, full ? -1 : Masks.Count, keyStart + offset);
                    if (!full)
                    {
                        Masks.AddRange(mask);
                    }

                    tileCount++;
                }

                slots = AddParts(blocks, merges, rowList, rowCount, first, tileCount, Math.Max(1, Math.Min(targetParts, tileCount / MinPartTiles)), slots);
            }

            return slots;
        }

        /// <summary>Sets bits <paramref name="from"/> .. <paramref name="to"/> of the row mask at <paramref name="rowBase"/>.</summary>
        private static void SetBits(int[] mask, int rowBase, int from, int to)
        {
            for (int word = from >> 5; word <= to >> 5; word++)
            {
                int low = Math.Max(from, word << 5) & 31, high = Math.Min(to, (word << 5) + 31) & 31;
                mask[rowBase + word] |= (int)((uint.MaxValue >> (31 - high + low)) << low);
            }
        }

        /// <summary>
        /// The rows (relative to the slice's first query) that see more than <see cref="LongRowFactor"/> times the mean row's
        /// keys and at least <see cref="LongRowMinTiles"/> tiles' worth; null when there is none. A dense or causal pattern
        /// has none (no row sees four times the mean); a window with global tokens has the global rows.
        /// </summary>
        public bool[]? LongRows(int head)
        {
            int rows = slice.QueryCount, keyEnd = slice.KeyStart + slice.KeyCount;
            if (rows == 0)
            {
                return null;
            }

            var keys = new long[rows];
            long total = 0;
            for (int i = 0; i < rows; i++)
            {
                int count = pattern.GetKeySegments(slice.QueryStart + i, head, slice.SeqLen, _segments);
                for (int s = 0; s < count; s++)
                {
                    keys[i] += KeySegmentMath.Clip(_segments[s], slice.KeyStart, keyEnd - 1L).Count;
                }

                total += keys[i];
            }

            double threshold = Math.Max(LongRowFactor * (total / (double)rows), LongRowMinTiles * keyTile);
            bool[]? result = null;
            for (int i = 0; i < rows; i++)
            {
                if (keys[i] > threshold)
                {
                    (result ??= new bool[rows])[i] = true;
                }
            }

            return result;
        }

        /// <summary>
        /// The long rows' blocks, a group's rows to a list, each list's tiles cut into parts of about
        /// <paramref name="partTiles"/> tiles; each part is a block with partial slots and each list a merge group. Returns
        /// the slots used.
        /// </summary>
        public int LongRowParts(int head, bool[] longRows, int partTiles, List<Block> blocks, List<Merge> merges)
        {
            int keyEnd = slice.KeyStart + slice.KeyCount, keyTiles = (slice.KeyCount + keyTile - 1) / keyTile;
            var rows = new List<int>();
            for (int i = 0; i < longRows.Length; i++)
            {
                if (longRows[i])
                {
                    rows.Add(i);
                }
            }

            int slots = 0;
            var tileMasks = new int[keyTiles][];
            for (int listStart = 0; listStart < rows.Count; listStart += groupSize)
            {
                int rowCount = Math.Min(groupSize, rows.Count - listStart);
                int rowList = RowLists.Count;
                RowLists.AddRange(rows.GetRange(listStart, rowCount));
                Array.Clear(tileMasks);
                for (int i = 0; i < rowCount; i++)
                {
                    int count = pattern.GetKeySegments(slice.QueryStart + rows[listStart + i], head, slice.SeqLen, _segments);
                    for (int s = 0; s < count; s++)
                    {
                        KeySegment clipped = KeySegmentMath.Clip(_segments[s], slice.KeyStart, keyEnd - 1L);
                        for (int k = 0, position = clipped.Start; k < clipped.Count; k++, position += clipped.Step)
                        {
                            int key = position - slice.KeyStart, bit = key % keyTile;
                            int[] mask = tileMasks[key / keyTile] ??= new int[groupSize * _words];
                            mask[i * _words + (bit >> 5)] |= 1 << (bit & 31);
                        }
                    }
                }

                int first = Entries.Count, tiles = 0;
                for (int tile = 0; tile < keyTiles; tile++)
                {
                    if (tileMasks[tile] is not { } mask)
                    {
                        continue;
                    }

                    bool full = IsFull(mask, rowCount, Math.Min(keyTile, slice.KeyCount - tile * keyTile));
                    AddEntry(tile * keyTile, 1, full ? TileClass.Full : TileClass.Partial, full ? -1 : Masks.Count);
                    if (!full)
                    {
                        Masks.AddRange(mask);
                    }

                    tiles++;
                }

                slots = AddParts(blocks, merges, rowList, rowCount, first, tiles, Math.Max(1, (tiles + partTiles - 1) / partTiles), slots);
            }

            return slots;
        }

        /// <summary>
        /// Cuts the <paramref name="tiles"/> entries from <paramref name="firstEntry"/> on, seen by the listed rows, into
        /// <paramref name="parts"/> blocks of (nearly) equal length (part p takes tiles [p·tiles/parts, (p+1)·tiles/parts)),
        /// each writing its rows to partial slots from <paramref name="slots"/> on, and adds their merge group. Returns the
        /// next free slot.
        /// </summary>
        private static int AddParts(List<Block> blocks, List<Merge> merges, int rowList, int rowCount, int firstEntry, int tiles, int parts, int slots)
        {
            for (int p = 0; p < parts; p++)
            {
                int from = (int)((long)p * tiles / parts), to = (int)((long)(p + 1) * tiles / parts);
                blocks.Add(new Block(rowList, 0, rowCount, firstEntry + from * EntryInts, to - from, slots + p * rowCount));
            }

            merges.Add(new Merge(rowList, rowCount, slots, parts));
            return slots + parts * rowCount;
        }

        /// <summary>
        /// Blocks of consecutive rows against tiles of consecutive keys, classified by <see cref="AttentionPattern.ClassifyTile"/>
        /// (a full tile needs no enumeration), the partial tiles' masks from the rows' segments.
        /// </summary>
        /// <remarks>
        /// A block holding a long row (<paramref name="longRows"/>) shows it no key: its tiles are all partial, the long row's
        /// mask bits empty, and a tile only the long rows see is dropped (the long rows' own blocks cover it).
        /// </remarks>
        public List<Block> Consecutive(int head, bool[]? longRows)
        {
            int seqLen = slice.SeqLen;
            int blocks = (slice.QueryCount + groupSize - 1) / groupSize, keyTiles = (slice.KeyCount + keyTile - 1) / keyTile;
            int keyEnd = slice.KeyStart + slice.KeyCount;
            var result = new List<Block>(blocks);
            var partialStarts = new List<int>();
            var partialMasks = new List<int>();
            for (int block = 0; block < blocks; block++)
            {
                // Absolute positions here; the entries keep key starts relative to the slice's first key.
                int queryFirst = slice.QueryStart + block * groupSize;
                int queryLast = Math.Min(slice.QueryStart + slice.QueryCount, queryFirst + groupSize) - 1;
                int first = Entries.Count, firstMask = Masks.Count;
                bool holdsLongRows = longRows is not null && Array.IndexOf(longRows, true, queryFirst - slice.QueryStart, queryLast - queryFirst + 1) >= 0;
                partialStarts.Clear();
                partialMasks.Clear();
                int lastTile = pattern.Causal ? (queryLast < slice.KeyStart ? -1 : Math.Min(keyTiles - 1, (queryLast - slice.KeyStart) / keyTile)) : keyTiles - 1;
                for (int tile = 0; tile <= lastTile; tile++)
                {
                    int keyFirst = slice.KeyStart + tile * keyTile, keyLast = Math.Min(keyEnd, keyFirst + keyTile) - 1;
                    TileClass tileClass = pattern.ClassifyTile(head, queryFirst, queryLast, keyFirst, keyLast, seqLen);
                    if (tileClass == TileClass.Empty)
                    {
                        continue;
                    }

                    // A full tile would show the long rows their keys here too.
                    tileClass = holdsLongRows ? TileClass.Partial : tileClass;

                    AddEntry(tile * keyTile, 1, tileClass, tileClass == TileClass.Full ? -1 : Masks.Count);
                    if (tileClass == TileClass.Full)
                    {
                        continue;
                    }

                    partialStarts.Add(keyFirst);
                    partialMasks.Add(Masks.Count);
                    Masks.AddRange(new int[groupSize * _words]);
                }

                for (int query = queryFirst; query <= queryLast && partialStarts.Count > 0; query++)
                {
                    if (holdsLongRows && longRows![query - slice.QueryStart])
                    {
                        continue;
                    }

                    int count = pattern.GetKeySegments(query, head, seqLen, _segments);
                    for (int p = 0; p < partialStarts.Count; p++)
                    {
                        int rowWords = partialMasks[p] + (query - queryFirst) * _words;
                        for (int s = 0; s < count; s++)
                        {
                            KeySegment clipped = KeySegmentMath.Clip(_segments[s], partialStarts[p], Math.Min(partialStarts[p] + keyTile, keyEnd) - 1L);
                            for (int k = 0, position = clipped.Start; k < clipped.Count; k++, position += clipped.Step)
                            {
                                SetBit(rowWords, position - partialStarts[p]);
                            }
                        }
                    }
                }

                if (holdsLongRows)
                {
                    DropEmptyTiles(first, firstMask, queryLast - queryFirst + 1);
                }

                result.Add(new Block(block * groupSize, 1, queryLast - queryFirst + 1, first, (Entries.Count - first) / EntryInts));
            }

            return result;
        }

        /// <summary>
        /// Removes the partial tiles from <paramref name="firstEntry"/> on whose masks are empty for all <paramref name="rows"/>
        /// rows, with their masks (the block's entries and masks are the last in their lists).
        /// </summary>
        private void DropEmptyTiles(int firstEntry, int firstMask, int rows)
        {
            var keptEntries = new List<int>();
            var keptMasks = new List<int>();
            int maskInts = groupSize * _words;
            for (int e = firstEntry; e < Entries.Count; e += EntryInts)
            {
                int mask = Entries[e + 3];
                bool empty = true;
                for (int w = 0; w < rows * _words && empty; w++)
                {
                    empty = Masks[mask + w] == 0;
                }

                if (!empty)
                {
                    keptEntries.AddRange(new[] { Entries[e], Entries[e + 1], Entries[e + 2], firstMask + keptMasks.Count, Entries[e + 4] });
                    keptMasks.AddRange(Masks.GetRange(mask, maskInts));
                }
            }

            Entries.RemoveRange(firstEntry, Entries.Count - firstEntry);
            Masks.RemoveRange(firstMask, Masks.Count - firstMask);
            Entries.AddRange(keptEntries);
            Masks.AddRange(keptMasks);
        }

        /// <summary>
        /// Blocks of the rows of one residue class mod <paramref name="step"/>; the keys each sees go to tiles of step
        /// <paramref name="step"/> when they are in the rows' class, else to tiles of step 1. Built by walking every
        /// visible pair, since the pattern classifies only runs of consecutive rows and keys.
        /// </summary>
        /// <remarks>A long row (<paramref name="longRows"/>) is given no pair here: its own blocks cover it.</remarks>
        public List<Block> ResidueStreams(int head, int step, bool[]? longRows)
        {
            int seqLen = slice.SeqLen, keyEnd = slice.KeyStart + slice.KeyCount;
            var result = new List<Block>();
            // A tile's index in this block's list, by its number among the tiles of step `step` and of step 1 (-1: none yet);
            // arrays rather than a dictionary, as every visible pair looks its tile up.
            var streamTiles = new int[slice.KeyCount / (keyTile * step) + 2];
            var plainTiles = new int[slice.KeyCount / keyTile + 2];
            Array.Fill(streamTiles, -1);
            Array.Fill(plainTiles, -1);
            var order = new List<(int Start, int Step)>();
            var rowMasks = new List<int[]>();
            for (int residue = 0; residue < step && residue < slice.QueryCount; residue++)
            {
                int rowsInClass = (slice.QueryCount - residue + step - 1) / step;
                // A row at absolute position Q sees the keys K ≡ Q (mod step) of its window; relative to the slice's first
                // key those are the keys ≡ keyResidue.
                int keyResidue = (int)(((long)slice.QueryStart + residue - slice.KeyStart) % step + step) % step;
                for (int firstIndex = 0; firstIndex < rowsInClass; firstIndex += groupSize)
                {
                    int rowCount = Math.Min(groupSize, rowsInClass - firstIndex);
                    int rowStart = residue + firstIndex * step;
                    foreach ((int start, int tileStep) in order)
                    {
                        (tileStep == 1 ? plainTiles : streamTiles)[start / (tileStep * keyTile)] = -1;
                    }

                    order.Clear();
                    rowMasks.Clear();
                    for (int i = 0; i < rowCount; i++)
                    {
                        if (longRows is not null && longRows[rowStart + i * step])
                        {
                            continue;
                        }

                        int query = slice.QueryStart + rowStart + i * step;
                        int count = pattern.GetKeySegments(query, head, seqLen, _segments);
                        for (int s = 0; s < count; s++)
                        {
                            KeySegment clipped = KeySegmentMath.Clip(_segments[s], slice.KeyStart, keyEnd - 1L);
                            for (int k = 0, position = clipped.Start; k < clipped.Count; k++, position += clipped.Step)
                            {
                                int key = position - slice.KeyStart;
                                bool inStream = (key - keyResidue) % step == 0;
                                // A stream tile's number is key / (step · keyTile): its keys share the residue, so that is their compressed tile.
                                int number = inStream ? key / (step * keyTile) : key / keyTile;
                                int[] numbered = inStream ? streamTiles : plainTiles;
                                int index = numbered[number];
                                if (index < 0)
                                {
                                    index = numbered[number] = order.Count;
                                    order.Add(inStream ? (keyResidue + number * keyTile * step, step) : (number * keyTile, 1));
                                    rowMasks.Add(new int[groupSize * _words]);
                                }

                                (int tileStart, int tileStep) = order[index];
                                int bit = (key - tileStart) / tileStep;
                                rowMasks[index][i * _words + (bit >> 5)] |= 1 << (bit & 31);
                            }
                        }
                    }

                    int first = Entries.Count;
                    for (int t = 0; t < order.Count; t++)
                    {
                        (int start, int tileStep) = order[t];
                        bool full = IsFull(rowMasks[t], rowCount, Math.Min(keyTile, (slice.KeyCount - 1 - start) / tileStep + 1));
                        AddEntry(start, tileStep, full ? TileClass.Full : TileClass.Partial, full ? -1 : Masks.Count);
                        if (!full)
                        {
                            Masks.AddRange(rowMasks[t]);
                        }
                    }

                    result.Add(new Block(rowStart, step, rowCount, first, order.Count));
                }
            }

            return result;
        }

        /// <summary>Whether every one of <paramref name="rows"/> rows sees each of the tile's <paramref name="keys"/> existing keys.</summary>
        private bool IsFull(int[] rowMasks, int rows, int keys)
        {
            for (int row = 0; row < rows; row++)
            {
                for (int key = 0; key < keys; key++)
                {
                    if ((rowMasks[row * _words + (key >> 5)] & (1 << (key & 31))) == 0)
                    {
                        return false;
                    }
                }
            }

            return true;
        }

        /// <summary>An entry over the slice's keys: key start relative to its first key, the position absolute.</summary>
        private void AddEntry(int keyStart, int keyStep, TileClass tileClass, int mask) => AddEntry(keyStart, keyStep, tileClass, mask, slice.KeyStart + keyStart);

        private void AddEntry(int keyStart, int keyStep, TileClass tileClass, int mask, int position)
        {
            Entries.Add(keyStart);
            Entries.Add(keyStep);
            Entries.Add((int)tileClass);
            Entries.Add(mask);
            Entries.Add(position);
        }

        private void SetBit(int rowWords, int bit) => Masks[rowWords + (bit >> 5)] |= 1 << (bit & 31);
    }
}
