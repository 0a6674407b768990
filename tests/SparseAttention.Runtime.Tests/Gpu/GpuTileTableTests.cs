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
/// The GPU kernel's tile table, read back on the host: every row of every head in exactly one block, every visible pair
/// in exactly one tile (as a full tile's key or a set mask bit), no invisible pair anywhere; and dilated and strided
/// patterns laid out as residue streams where that takes fewer tiles.
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
            foreach ((int row, int key) in Pairs(table, head, rowBlocks))
            {
                Assert.True(pattern.IsVisible(row, key, head, seqLen), $"{name} n={seqLen} head {head}: the table shows ({row}, {key}), which the pattern hides");
                seen[row, key]++;
            }

            Assert.All(rowBlocks, count => Assert.Equal(1, count));
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

    private static bool UsesResidueStreams(int[] table, int head) =>
        Enumerable.Range(0, table[0]).Any(block => table[GpuTileTable.HeaderOf(head, block, table[0]) + 3] > 1);

    /// <summary>Every (row, key) pair the table marks visible for <paramref name="head"/>; counts each row's blocks.</summary>
    private static IEnumerable<(int Row, int Key)> Pairs(int[] table, int head, int[] rowBlocks)
    {
        int blocks = table[0], words = GpuTileTable.MaskWordsPerRow(KeyTile), seqLen = rowBlocks.Length;
        for (int block = 0; block < blocks; block++)
        {
            int header = GpuTileTable.HeaderOf(head, block, blocks);
            int firstEntry = table[header], entryCount = table[header + 1], rowStart = table[header + 2], rowStep = table[header + 3], rowCount = table[header + 4];
            Assert.InRange(rowCount, 0, Rows);
            for (int i = 0; i < rowCount; i++)
            {
                rowBlocks[rowStart + rowStep * i]++;
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
                            yield return (rowStart + rowStep * i, key);
                        }
                    }
                }
            }
        }
    }
}
