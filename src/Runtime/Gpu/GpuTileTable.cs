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
/// Layout, all ints: [0] blocks per head (the grid's width; a head with fewer has empty blocks); then per (head, block)
/// a header of <see cref="HeaderInts"/>: first entry, entry count, row start, row step, row count; then the entries,
/// <see cref="EntryInts"/> each: key start, key step, <see cref="TileClass"/>, mask offset (-1 when full); then the
/// masks, <see cref="MaskWordsPerRow"/> words per row of the block.
/// </para>
/// </remarks>
public static class GpuTileTable
{
    /// <summary>Ints per entry.</summary>
    public const int EntryInts = 4;

    /// <summary>Ints per block header.</summary>
    public const int HeaderInts = 5;

    /// <summary>Where (head, block)'s header sits.</summary>
    public static int HeaderOf(int head, int block, int blocksPerHead) => 1 + HeaderInts * (head * blocksPerHead + block);

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
        for (int head = 0; head < period; head++)
        {
            List<Block> consecutive = builder.Consecutive(head);
            int step = ResidueStep(pattern, head);
            List<Block>? residues = step > 1 && step < slice.QueryCount ? builder.ResidueStreams(head, step) : null;
            blocksOfHead[head] = residues is not null && TileCount(residues) < TileCount(consecutive) ? residues : consecutive;
        }

        int blocksPerHead = blocksOfHead.Max(blocks => blocks.Count);
        long total = 1L + (long)heads * blocksPerHead * HeaderInts + builder.Entries.Count + builder.Masks.Count;
        if (total > Array.MaxLength)
        {
            throw new ArgumentException($"This call's GPU tile table would hold {total} ints, more than one array; split it over fewer heads or a shorter sequence.", "shape");
        }

        var table = new int[total];
        table[0] = blocksPerHead;
        int entryBase = 1 + heads * blocksPerHead * HeaderInts, maskBase = entryBase + builder.Entries.Count;
        for (int head = 0; head < heads; head++)
        {
            List<Block> blocks = blocksOfHead[head % period];
            for (int b = 0; b < blocks.Count; b++)
            {
                int at = HeaderOf(head, b, blocksPerHead);
                table[at] = entryBase + blocks[b].FirstEntry;
                table[at + 1] = blocks[b].EntryCount;
                table[at + 2] = blocks[b].RowStart;
                table[at + 3] = blocks[b].RowStep;
                table[at + 4] = blocks[b].RowCount;
            }

            // Past the head's own blocks: no entries and no rows (the kernel's group only returns).
            for (int b = blocks.Count; b < blocksPerHead; b++)
            {
                int at = HeaderOf(head, b, blocksPerHead);
                table[at] = entryBase;
                table[at + 3] = 1;
            }
        }

        List<int> entries = builder.Entries;
        for (int e = 0; e < entries.Count; e += EntryInts)
        {
            table[entryBase + e] = entries[e];
            table[entryBase + e + 1] = entries[e + 1];
            table[entryBase + e + 2] = entries[e + 2];
            table[entryBase + e + 3] = entries[e + 3] < 0 ? -1 : maskBase + entries[e + 3];
        }

        builder.Masks.CopyTo(table, maskBase);
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

    /// <summary>A block of rows and where its entries sit in <see cref="TableBuilder.Entries"/>.</summary>
    private readonly record struct Block(int RowStart, int RowStep, int RowCount, int FirstEntry, int EntryCount);

    /// <summary>Builds blocks, entries and masks into shared lists, one head at a time.</summary>
    private sealed class TableBuilder(AttentionPattern pattern, AttentionSlice slice, int groupSize, int keyTile)
    {
        private readonly KeySegment[] _segments = new KeySegment[pattern.MaxSegmentsPerQuery];
        private readonly int _words = MaskWordsPerRow(keyTile);

        public List<int> Entries { get; } = new();

        public List<int> Masks { get; } = new();

        /// <summary>
        /// Blocks of consecutive rows against tiles of consecutive keys, classified by <see cref="AttentionPattern.ClassifyTile"/>
        /// (a full tile needs no enumeration), the partial tiles' masks from the rows' segments.
        /// </summary>
        public List<Block> Consecutive(int head)
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
                int first = Entries.Count;
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

                    Entries.Add(tile * keyTile);
                    Entries.Add(1);
                    Entries.Add((int)tileClass);
                    if (tileClass == TileClass.Full)
                    {
                        Entries.Add(-1);
                        continue;
                    }

                    Entries.Add(Masks.Count);
                    partialStarts.Add(keyFirst);
                    partialMasks.Add(Masks.Count);
                    Masks.AddRange(new int[groupSize * _words]);
                }

                for (int query = queryFirst; query <= queryLast && partialStarts.Count > 0; query++)
                {
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

                result.Add(new Block(block * groupSize, 1, queryLast - queryFirst + 1, first, (Entries.Count - first) / EntryInts));
            }

            return result;
        }

        /// <summary>
        /// Blocks of the rows of one residue class mod <paramref name="step"/>; the keys each sees go to tiles of step
        /// <paramref name="step"/> when they are in the rows' class, else to tiles of step 1. Built by walking every
        /// visible pair, since the pattern classifies only runs of consecutive rows and keys.
        /// </summary>
        public List<Block> ResidueStreams(int head, int step)
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
                        Entries.Add(start);
                        Entries.Add(tileStep);
                        Entries.Add((int)(full ? TileClass.Full : TileClass.Partial));
                        Entries.Add(full ? -1 : Masks.Count);
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

        private void SetBit(int rowWords, int bit) => Masks[rowWords + (bit >> 5)] |= 1 << (bit & 31);
    }
}
