using SparseAttention.Gpu;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>Longformer's dilated layers: ±256 steps of dilation 2 and two global tokens.</summary>
[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 256, Right = 256)]
[Dilation(2)]
[GlobalTokens(0, 1)]
public static partial class WideDilatedWindow;

/// <summary>
/// The GPU kernel's tile table, read back on the host: every row of every head written by exactly one block, every
/// visible pair in exactly one tile (as a full tile's key or a set mask bit), no invisible pair anywhere, every partial
/// slot merged into its own row; dilated and strided patterns laid out as residue streams where that takes fewer
/// tiles; long rows split into parts no longer than the other blocks.
/// </summary>
public class GpuTileTableTests
{
    private const int Rows = 64, KeyTile = 32;

    public static TheoryData<string, int> KernelsAndLengths()
    {
        var data = new TheoryData<string, int>();
        int[] lengths = { 1, 33, 130, 301 };
        for (int i = 0; i < DeclaredKernels.All.Length; i++)
        {
            data.Add(DeclaredKernels.All[i].Name, lengths[i % lengths.Length]);
            data.Add(DeclaredKernels.All[i].Name, 700);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndLengths))]
    public void EveryVisiblePairIsInExactlyOneTileAndNoOtherPairIsInAny(string name, int seqLen)
    {
        AttentionPattern pattern = DeclaredKernels.Get(name).Pattern;
        const int heads = 3;
        int[] table = GpuTileTable.Build(pattern, seqLen, heads, Rows, KeyTile);
        for (int head = 0; head < heads; head++)
        {
            var seen = new int[seqLen, seqLen];
            var rowBlocks = new int[seqLen];
            var slotRows = new Dictionary<int, int>();
            foreach ((int row, int key) in Pairs(table, head, rowBlocks, slotRows))
            {
                Assert.True(pattern.IsVisible(row, key, head, seqLen), $"{name} n={seqLen} head {head}: the table shows ({row}, {key}), which the pattern hides");
                seen[row, key]++;
            }

            Assert.All(rowBlocks, count => Assert.Equal(1, count));
            AssertEverySlotIsMergedIntoItsRow(table, head, slotRows);
            for (int row = 0; row < seqLen; row++)
            {
                for (int key = 0; key < seqLen; key++)
                {
                    int expected = pattern.IsVisible(row, key, head, seqLen) ? 1 : 0;
                    Assert.True(seen[row, key] == expected, $"{name} n={seqLen} head {head}: ({row}, {key}) is in {seen[row, key]} tiles, expected {expected}");
                }
            }
        }
    }

    [Fact]
    public void ADilatedWindowRunsAsResidueStreamsOfFullTiles()
    {
        // Consecutive rows would see one key in two of every window tile; the residue streams hold the even rows with the
        // even keys and the odd with the odd.
        AttentionPattern pattern = WideDilatedWindow.Pattern;
        int seqLen = 2048;
        int[] table = GpuTileTable.Build(pattern, seqLen, 1, Rows, KeyTile);
        int step = GpuTileTable.ResidueStep(pattern, 0);
        Assert.True(step > 1, "the kernel under test is dilated");

        int blocks = table[0], full = 0, entries = 0;
        for (int block = 0; block < blocks; block++)
        {
            int header = GpuTileTable.HeaderOf(0, block, blocks);
            if (table[header + 5] >= 0)
            {
                continue; // the global rows' parts (listed rows, see GlobalRowsRunAsParts...)
            }

            Assert.Equal(step, table[header + 3]);
            for (int e = 0; e < table[header + 1]; e++)
            {
                int entry = table[header] + e * GpuTileTable.EntryInts;
                entries++;
                full += table[entry + 2] == (int)TileClass.Full ? 1 : 0;
            }
        }

        long pairs = pattern.VisiblePairs(seqLen, 1);
        Assert.True(full * 2 > entries, $"{full} of {entries} tiles are full");
        Assert.True(entries * (long)Rows * KeyTile < 2 * pairs, $"{entries} tiles of {Rows} x {KeyTile} for {pairs} visible pairs: less than half the work is wasted");
    }

    [Fact]
    public void TheKernelTestsRunResidueStreamsToo()
    {
        // The accelerator tests (n up to 203) must reach the residue layout, or its kernel indexing would go untested.
        string[] streamed = DeclaredKernels.All
            .Where(kernel => Enumerable.Range(0, 3).Any(head => UsesResidueStreams(GpuTileTable.Build(kernel.Pattern, 203, 3, Rows, KeyTile), head)))
            .Select(kernel => kernel.Name).ToArray();
        Assert.True(streamed.Length >= 3, "kernels laid out as residue streams at n = 203: " + string.Join(", ", streamed));
        Assert.Contains(nameof(PerHeadDilation), streamed); // heads of dilation 1, 2 and 3: layouts differ by head
    }

    [Theory]
    [InlineData(nameof(WideDilatedWindow), 4096)]
    [InlineData(nameof(LongformerLike), 2000)]
    [InlineData(nameof(CausalWindowWithSinks), 3000)]
    public void GlobalRowsRunAsPartsNoLongerThanTheOtherBlocks(string name, int seqLen)
    {
        AttentionPattern pattern = name == nameof(WideDilatedWindow) ? WideDilatedWindow.Pattern : DeclaredKernels.Get(name).Pattern;
        int[] table = GpuTileTable.Build(pattern, seqLen, 1, Rows, KeyTile);
        int blocks = table[0];
        int[] tiles = Enumerable.Range(0, blocks).Select(block => table[GpuTileTable.HeaderOf(0, block, blocks) + 1]).ToArray();
        int[] parts = Enumerable.Range(0, blocks).Where(block => table[GpuTileTable.HeaderOf(0, block, blocks) + 5] >= 0).ToArray();
        int globalsInRange = pattern.GlobalTokens.Count(position => position < seqLen);
        int ordinary = blocks - parts.Length;
        double mean = Enumerable.Range(0, blocks).Except(parts).Average(block => tiles[block]);

        Assert.Equal(1, table[1]); // one merge group: the global rows fit one block of rows
        int listed = table[table[3] + 1];
        int[] longRows = Enumerable.Range(0, listed).Select(i => table[table[table[3]] + i]).ToArray();
        Assert.All(longRows, row => Assert.True(pattern.IsGlobal(row), $"row {row} is split off but is no global token"));
        // Without the causal cut every global row sees the whole sequence; with it, the late ones (500 of 0, 3, 500).
        Assert.Equal(pattern.Causal ? 1 : globalsInRange, listed);
        Assert.True(parts.Length > 1, $"{parts.Length} parts");
        // Before, the block holding a global row walked every key tile; now no block walks more than twice the mean ordinary one.
        Assert.True(tiles.Max() <= Math.Max(GpuTileTable.MinPartTiles, 2 * Math.Ceiling(mean)), $"{name}: blocks walk up to {tiles.Max()} tiles, the {ordinary} ordinary ones {mean:F1} on average");
    }

    [Fact]
    public void TheKernelTestsRunLongRowPartsToo()
    {
        // The accelerator suite must reach long rows split into several parts and merged, or that path would go untested.
        string[] split = DeclaredKernels.All
            .Where(kernel => AcceleratorSuite.SequenceLengths.Any(seqLen => HasSplitLongRows(GpuTileTable.Build(kernel.Pattern, seqLen, 3, Rows, KeyTile))))
            .Select(kernel => kernel.Name).ToArray();
        // On a GPU; the CPU accelerator runs two lengths per kernel, which miss these, so SinksAndLogSumExpTests runs a kernel
        // split at n = 300 there, with sinks, log-sum-exps and NaNs.
        Assert.True(split.Length >= 2, "kernels with long rows split into parts: " + string.Join(", ", split));
    }

    /// <summary>Whether a merge group of the table's head 0 has more than one part.</summary>
    private static bool HasSplitLongRows(int[] table) => table[1] > 0 && table[GpuTileTable.MergeHeaderOf(0, 0, table[3], table[1]) + 3] > 1;

    [Theory]
    [InlineData(nameof(DilatedCausalWithSinks), 6, 2)]
    [InlineData(nameof(WindowOverSeveralDecodeBlocks), 4, 2)]
    [InlineData(nameof(CausalWindowWithSinks), 8, 1)]
    [InlineData(nameof(ManySinks), 3, 3)]
    public void ADecodeStepsTableShowsEachQueryHeadExactlyTheCacheSlotsOfItsVisibleKeys(string name, int heads, int kvHeads)
    {
        AttentionPattern pattern = DeclaredKernels.Get(name).Pattern;
        int ringSlots = pattern.StreamingRingSlots, capacity = ringSlots + pattern.GlobalTokens.Count, group = heads / kvHeads;
        int[] pinned = pattern.GlobalTokens.ToArray();
        foreach (int position in new[] { 0, ringSlots / 2, ringSlots - 1, ringSlots, 2 * ringSlots + 7, 5 * ringSlots + 3 })
        {
            var map = new Cpu.SlotMap(origin: 0, ringSlots, Math.Max(0, position + 1 - ringSlots), pinned);
            int[] table = GpuTileTable.BuildDecode(pattern, map, position, heads, kvHeads, capacity, Rows, KeyTile, targetBlocks: 16);
            for (int kvHead = 0; kvHead < kvHeads; kvHead++)
            {
                var seen = new Dictionary<(int Head, int Key), int>();
                var slotRows = new Dictionary<int, int>();
                for (int block = 0; block < table[0]; block++)
                {
                    int header = GpuTileTable.HeaderOf(kvHead, block, table[0]);
                    int rowCount = table[header + 4], partialSlot = table[header + 5];
                    Assert.True(rowCount == 0 || partialSlot >= 0, "every decode block writes partial slots");
                    for (int i = 0; i < rowCount; i++)
                    {
                        int head = kvHead * group + GpuTileTable.RowOf(table, table[header + 2], table[header + 3], i);
                        slotRows.Add(partialSlot + i, head - kvHead * group);
                        for (int e = 0; e < table[header + 1]; e++)
                        {
                            int entry = table[header] + e * GpuTileTable.EntryInts;
                            int keyStart = table[entry], keyStep = table[entry + 1], mask = table[entry + 3], firstPosition = table[entry + 4];
                            for (int j = 0; j < KeyTile && keyStart + keyStep * j < capacity; j++)
                            {
                                if (table[entry + 2] != (int)TileClass.Full && ((table[mask + i * GpuTileTable.MaskWordsPerRow(KeyTile) + (j >> 5)] >> (j & 31)) & 1) == 0)
                                {
                                    continue;
                                }

                                int slot = keyStart + keyStep * j, key = firstPosition + keyStep * j;
                                Assert.True(pattern.IsVisible(position, key, head, position + 1), $"{name} at {position}: head {head} is shown key {key}, which it cannot see");
                                int holds = key >= position + 1 - ringSlots ? key % ringSlots : ringSlots + Array.IndexOf(pinned, key);
                                Assert.True(slot == holds, $"{name} at {position}: key {key} is read from slot {slot}; the cache keeps it in slot {holds}");
                                seen[(head, key)] = seen.GetValueOrDefault((head, key)) + 1;
                            }
                        }
                    }
                }

                for (int g = 0; g < group; g++)
                {
                    int head = kvHead * group + g;
                    int[] visible = Enumerable.Range(0, position + 1).Where(key => pattern.IsVisible(position, key, head, position + 1)).ToArray();
                    Assert.All(visible, key => Assert.True(seen.GetValueOrDefault((head, key)) == 1, $"{name} at {position}: head {head} sees key {key} {seen.GetValueOrDefault((head, key))} times"));
                    Assert.Equal(visible.Length, seen.Keys.Count(pair => pair.Head == head));
                }

                AssertEverySlotIsMergedIntoItsRow(table, kvHead, slotRows);
            }
        }
    }

    [Fact]
    public void ADecodeStepSpreadsALongWindowOverParts()
    {
        AttentionPattern pattern = DeclaredKernels.Get(nameof(WindowOverSeveralDecodeBlocks)).Pattern;
        int ringSlots = pattern.StreamingRingSlots, position = 1000;
        var map = new Cpu.SlotMap(0, ringSlots, position + 1 - ringSlots, pattern.GlobalTokens.ToArray());
        int[] table = GpuTileTable.BuildDecode(pattern, map, position, 4, 2, ringSlots + 1, Rows, KeyTile, targetBlocks: 8);
        // 300 keys (the ring wraps inside one 32-slot tile, which becomes two) and the global one: 12 tiles per KV head,
        // in 3 parts (4 target parts per KV head, at least 4 tiles each).
        Assert.Equal(3, table[0]);
        Assert.Equal(3, table[GpuTileTable.MergeHeaderOf(0, 0, table[3], table[1]) + 3]);
        Assert.All(Enumerable.Range(0, 3), part => Assert.Equal(4, table[GpuTileTable.HeaderOf(1, part, table[0]) + 1]));
    }

    private static void AssertEverySlotIsMergedIntoItsRow(int[] table, int head, Dictionary<int, int> slotRows)
    {
        int groups = table[1], merged = 0;
        for (int group = 0; group < groups; group++)
        {
            int at = GpuTileTable.MergeHeaderOf(head, group, table[3], groups);
            int rowList = table[at], rowCount = table[at + 1], firstSlot = table[at + 2], parts = table[at + 3];
            for (int i = 0; i < rowCount; i++)
            {
                for (int p = 0; p < parts; p++)
                {
                    Assert.True(slotRows.TryGetValue(firstSlot + p * rowCount + i, out int row), $"slot {firstSlot + p * rowCount + i} is merged but no part writes it");
                    Assert.Equal(table[rowList + i], row);
                    merged++;
                }
            }
        }

        Assert.Equal(slotRows.Count, merged);
        Assert.All(slotRows.Keys, slot => Assert.InRange(slot, 0, table[2] - 1));
    }

    private static bool UsesResidueStreams(int[] table, int head) =>
        Enumerable.Range(0, table[0]).Any(block => table[GpuTileTable.HeaderOf(head, block, table[0]) + 3] > 1);

    /// <summary>
    /// Every (row, key) pair the table marks visible for <paramref name="head"/>; counts the blocks that write each row
    /// and records which row each partial slot holds.
    /// </summary>
    private static IEnumerable<(int Row, int Key)> Pairs(int[] table, int head, int[] rowBlocks, Dictionary<int, int> slotRows)
    {
        int blocks = table[0], words = GpuTileTable.MaskWordsPerRow(KeyTile), seqLen = rowBlocks.Length;
        for (int block = 0; block < blocks; block++)
        {
            int header = GpuTileTable.HeaderOf(head, block, blocks);
            int firstEntry = table[header], entryCount = table[header + 1], rowStart = table[header + 2], rowStep = table[header + 3], rowCount = table[header + 4];
            int partialSlot = table[header + 5];
            Assert.InRange(rowCount, 0, Rows);
            for (int i = 0; i < rowCount; i++)
            {
                int row = GpuTileTable.RowOf(table, rowStart, rowStep, i);
                if (partialSlot < 0)
                {
                    rowBlocks[row]++;
                }
                else
                {
                    Assert.True(slotRows.TryAdd(partialSlot + i, row), $"two parts write slot {partialSlot + i}");
                }
            }

            for (int e = 0; e < entryCount; e++)
            {
                int entry = firstEntry + e * GpuTileTable.EntryInts;
                int keyStart = table[entry], keyStep = table[entry + 1], mask = table[entry + 3];
                bool full = table[entry + 2] == (int)TileClass.Full;
                for (int i = 0; i < rowCount; i++)
                {
                    for (int j = 0; j < KeyTile; j++)
                    {
                        int key = keyStart + keyStep * j;
                        if (key < seqLen && (full || ((table[mask + i * words + (j >> 5)] >> (j & 31)) & 1) != 0))
                        {
                            yield return (GpuTileTable.RowOf(table, rowStart, rowStep, i), key);
                        }
                    }
                }
            }
        }
    }
}
