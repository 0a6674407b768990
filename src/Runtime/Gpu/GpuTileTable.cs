using System;
using System.Collections.Generic;

namespace SparseAttention.Gpu;

/// <summary>
/// FlexAttention's block mask, built on the host from the pattern's own answers: for each (head, block of query rows:
/// the kernel's rows per group), the key tiles with a visible pair, each full (no test) or partial with a bit mask of its visible
/// pairs (one bit per row and key, from the rows' key segments). The ILGPU kernel walks this table instead of knowing any
/// pattern, so the GPU sees exactly what <see cref="AttentionPattern.ClassifyTile"/> and
/// <see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment})"/> say. Heads that see the same keys (the
/// pattern's <see cref="AttentionPattern.HeadPeriod"/>) share entries.
/// </summary>
/// <remarks>
/// Layout, all ints: [0] query tiles per head; then per (head, query tile) a header (first entry, entry count); then the
/// entries, <see cref="EntryInts"/> each: key tile start, <see cref="TileClass"/>, mask offset (-1 when full); then the
/// masks, <see cref="MaskWordsPerRow"/> words per row of the group.
/// </remarks>
public static class GpuTileTable
{
    /// <summary>Ints per entry.</summary>
    public const int EntryInts = 3;

    /// <summary>Where (head, query tile)'s header sits.</summary>
    public static int HeaderOf(int head, int queryTile, int queryTiles) => 1 + 2 * (head * queryTiles + queryTile);

    /// <summary>Mask words per query row of a key tile of <paramref name="keyTile"/> keys.</summary>
    public static int MaskWordsPerRow(int keyTile) => (keyTile + 31) / 32;

    /// <summary>Builds the table for one call shape.</summary>
    /// <exception cref="ArgumentException">The table would not fit in one array (named on <c>shape</c>).</exception>
    public static int[] Build(AttentionPattern pattern, int seqLen, int heads, int groupSize, int keyTile) =>
        Build(pattern, new AttentionSlice(heads, heads, seqLen, 0, seqLen, 0, seqLen), groupSize, keyTile);

    /// <summary>
    /// Builds the table for a partial call: <paramref name="slice"/>'s queries against its keys, the pattern at their absolute
    /// positions. Query tiles and key tiles count from the slice's first query and key; an entry's key tile start and its
    /// mask bits are relative to the slice's first key, as the views hold only the slice.
    /// </summary>
    /// <exception cref="ArgumentException">The table would not fit in one array (named on <c>shape</c>).</exception>
    public static int[] Build(AttentionPattern pattern, AttentionSlice slice, int groupSize, int keyTile)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        int seqLen = slice.SeqLen, heads = slice.Heads;
        int queryTiles = (slice.QueryCount + groupSize - 1) / groupSize, keyTiles = (slice.KeyCount + keyTile - 1) / keyTile;
        int words = MaskWordsPerRow(keyTile);
        int period = Math.Min(pattern.HeadPeriod, heads);
        var entries = new List<int>();
        var masks = new List<int>();
        var headers = new int[heads * queryTiles * 2];
        var segments = new KeySegment[pattern.MaxSegmentsPerQuery];
        var partialStarts = new List<int>();
        var partialMasks = new List<int>();
        for (int head = 0; head < period; head++)
        {
            for (int queryTile = 0; queryTile < queryTiles; queryTile++)
            {
                // Absolute positions here; the entries keep key tile starts relative to the slice's first key.
                int queryFirst = slice.QueryStart + queryTile * groupSize;
                int queryLast = Math.Min(slice.QueryStart + slice.QueryCount, queryFirst + groupSize) - 1;
                int keyEnd = slice.KeyStart + slice.KeyCount;
                int first = entries.Count;
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

                    entries.Add(tile * keyTile);
                    entries.Add((int)tileClass);
                    if (tileClass == TileClass.Full)
                    {
                        entries.Add(-1);
                        continue;
                    }

                    entries.Add(masks.Count);
                    partialStarts.Add(keyFirst);
                    partialMasks.Add(masks.Count);
                    masks.AddRange(new int[groupSize * words]);
                }

                // The partial tiles' masks, from each row's exact key segments clipped to the tile.
                for (int query = queryFirst; query <= queryLast && partialStarts.Count > 0; query++)
                {
                    int count = pattern.GetKeySegments(query, head, seqLen, segments);
                    for (int p = 0; p < partialStarts.Count; p++)
                    {
                        int rowWords = partialMasks[p] + (query - queryFirst) * words;
                        for (int s = 0; s < count; s++)
                        {
                            KeySegment clipped = KeySegmentMath.Clip(segments[s], partialStarts[p], Math.Min(partialStarts[p] + keyTile, keyEnd) - 1L);
                            for (int k = 0, position = clipped.Start; k < clipped.Count; k++, position += clipped.Step)
                            {
                                int bit = position - partialStarts[p];
                                masks[rowWords + (bit >> 5)] |= 1 << (bit & 31);
                            }
                        }
                    }
                }

                int index = 2 * (head * queryTiles + queryTile);
                headers[index] = first;
                headers[index + 1] = (entries.Count - first) / EntryInts;
            }
        }

        long total = 1L + headers.Length + entries.Count + masks.Count;
        if (total > Array.MaxLength)
        {
            throw new ArgumentException($"This call's GPU tile table would hold {total} ints, more than one array; split it over fewer heads or a shorter sequence.", "shape");
        }

        var table = new int[total];
        table[0] = queryTiles;
        int entryBase = 1 + headers.Length, maskBase = entryBase + entries.Count;
        for (int head = 0; head < heads; head++)
        {
            int source = head % period;
            for (int queryTile = 0; queryTile < queryTiles; queryTile++)
            {
                int from = 2 * (source * queryTiles + queryTile), to = 2 * (head * queryTiles + queryTile);
                table[1 + to] = entryBase + headers[from];
                table[2 + to] = headers[from + 1];
            }
        }

        for (int e = 0; e < entries.Count; e += EntryInts)
        {
            table[entryBase + e] = entries[e];
            table[entryBase + e + 1] = entries[e + 1];
            table[entryBase + e + 2] = entries[e + 2] < 0 ? -1 : maskBase + entries[e + 2];
        }

        masks.CopyTo(table, maskBase);
        return table;
    }
}
