using SparseAttention.Gpu;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// The neighbourhood component (issue 18) against its definition in docs/patterns.md, written here again from the text:
/// random grids (axes shorter than k·d, 1-wide axes), odd and even kernels, dilations, causal axes, 1, 2 and 3 axes;
/// its key segments, tile classes and the GPU tile table built from them; and the hand-worked 5 × 5 table.
/// </summary>
public class NeighborhoodDefinitionTests
{
    /// <summary>The coordinates query coordinate <paramref name="x"/> sees on one axis, from the definition.</summary>
    private static HashSet<int> AxisDefinition(int x, int length, int k, int d, bool causal)
    {
        int rho = x % d, classLength = (int)Math.Ceiling((length - rho) / (double)d), index = x / d;
        IEnumerable<int> indexes = causal
            ? Enumerable.Range(Math.Max(0, index - k + 1), index - Math.Max(0, index - k + 1) + 1)
            : classLength < k ? Enumerable.Range(0, classLength) : Enumerable.Range(Math.Clamp(index - k / 2, 0, classLength - k), k);
        return indexes.Select(t => rho + d * t).ToHashSet();
    }

    private static int[] Coordinates(int position, int[] grid)
    {
        var coordinates = new int[grid.Length];
        for (int axis = grid.Length - 1; axis >= 0; axis--)
        {
            coordinates[axis] = position % grid[axis];
            position /= grid[axis];
        }

        return coordinates;
    }

    private static bool Definition(int query, int key, int[] grid, int[] k, int[] d, bool[] causal)
    {
        int[] q = Coordinates(query, grid), j = Coordinates(key, grid);
        return Enumerable.Range(0, grid.Length).All(axis => AxisDefinition(q[axis], grid[axis], k[axis], d[axis], causal[axis]).Contains(j[axis]));
    }

    public static TheoryData<int> Seeds() => new() { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

    [Theory]
    [MemberData(nameof(Seeds))]
    public void VisibilitySegmentsAndTilesAreTheDefinition(int seed)
    {
        var random = new Random(seed);
        int axes = 1 + seed % 3;
        int[] grid = Enumerable.Range(0, axes).Select(_ => random.Next(5) == 0 ? 1 : random.Next(2, axes == 3 ? 8 : 14)).ToArray();
        int[] k = Enumerable.Range(0, axes).Select(_ => random.Next(1, 8)).ToArray();
        int[] d = Enumerable.Range(0, axes).Select(_ => random.Next(3) == 0 ? random.Next(2, 4) : 1).ToArray();
        bool[] causal = Enumerable.Range(0, axes).Select(_ => random.Next(4) == 0).ToArray();
        int n = grid.Aggregate(1, (product, length) => product * length);
        var pattern = new AttentionPattern(false, new PatternComponent[] { new NeighborhoodComponent(k, d, causal) }).WithGrid(grid);
        string context = $"grid {string.Join("x", grid)}, k {string.Join("x", k)}, d {string.Join("x", d)}, causal {string.Join(",", causal)}";
        var segments = new KeySegment[pattern.MaxSegmentsPerQuery];
        for (int query = 0; query < n; query++)
        {
            var fromSegments = new HashSet<int>();
            int count = pattern.GetKeySegments(query, 0, n, segments);
            for (int s = 0; s < count; s++)
            {
                for (int i = 0; i < segments[s].Count; i++)
                {
                    Assert.True(fromSegments.Add(segments[s].Start + i * segments[s].Step), $"{context}: query {query} gets key {segments[s].Start + i * segments[s].Step} twice");
                }
            }

            for (int key = 0; key < n; key++)
            {
                bool expected = Definition(query, key, grid, k, d, causal);
                Assert.True(expected == pattern.IsVisible(query, key, 0, n), $"{context}: IsVisible({query}, {key}) should be {expected}");
                Assert.True(expected == fromSegments.Contains(key), $"{context}: the segments of {query} {(expected ? "miss" : "hold")} key {key}");
            }
        }

        // The GPU's tile table (from the tile classes and segments): every visible pair in exactly one tile.
        int[] table = GpuTileTable.Build(pattern, n, 1, 64, 32);
        var seen = new int[n, n];
        for (int block = 0; block < table[0]; block++)
        {
            int header = GpuTileTable.HeaderOf(0, block, table[0]);
            for (int i = 0; i < table[header + 4]; i++)
            {
                int row = GpuTileTable.RowOf(table, table[header + 2], table[header + 3], i);
                for (int e = 0; e < table[header + 1]; e++)
                {
                    int entry = table[header] + e * GpuTileTable.EntryInts;
                    for (int j = 0; j < 32 && table[entry] + table[entry + 1] * j < n; j++)
                    {
                        bool full = table[entry + 2] == (int)TileClass.Full;
                        if (full || ((table[table[entry + 3] + i + (j >> 5)] >> (j & 31)) & 1) != 0)
                        {
                            seen[row, table[entry] + table[entry + 1] * j]++;
                        }
                    }
                }
            }
        }

        for (int query = 0; query < n; query++)
        {
            for (int key = 0; key < n; key++)
            {
                Assert.True(seen[query, key] == (Definition(query, key, grid, k, d, causal) ? 1 : 0), $"{context}: the tile table holds ({query}, {key}) {seen[query, key]} times");
            }
        }
    }

    /// <summary>
    /// The CPU's neighbourhood tiles (issue 18) composed as the tiled job composes them: each work item's lines, its key
    /// lines by slot, its stream (key j·M + slot is column origin + j of the slot's line) and its tiles (band or rectangle)
    /// give every query exactly its segments' keys, and every query is computed by exactly one item. Grids long enough for
    /// several chunks along a line and several blocks of lines.
    /// </summary>
    [Theory]
    [MemberData(nameof(Seeds))]
    public void TheCpuTileScheduleHoldsEachQuerysKeysOnce(int seed)
    {
        var random = new Random(seed * 7 + 1);
        int axes = 1 + seed % 3;
        int[] grid = axes switch
        {
            1 => new[] { random.Next(1, 400) },
            2 => new[] { random.Next(1, 80), random.Next(1, 150) },
            _ => new[] { random.Next(1, 4), random.Next(1, 20), random.Next(1, 70) },
        };
        int[] k = Enumerable.Range(0, axes).Select(_ => random.Next(1, 14)).ToArray();
        int[] d = Enumerable.Range(0, axes).Select(_ => random.Next(3) == 0 ? random.Next(2, 4) : 1).ToArray();
        bool[] causal = Enumerable.Range(0, axes).Select(_ => random.Next(4) == 0).ToArray();
        int n = grid.Aggregate(1, (product, length) => product * length);
        var component = new NeighborhoodComponent(k, d, causal, grid);
        var pattern = new AttentionPattern(false, new PatternComponent[] { component });
        string context = $"grid {string.Join("x", grid)}, k {string.Join("x", k)}, d {string.Join("x", d)}, causal {string.Join(",", causal)}";

        // The neighbourhood tile kernel's rows (4, or 3 on Vector128), and the band tile's 6 (kernels without the former).
        int tileRows = (seed % 3) switch { 0 => 3, 1 => 4, _ => 6 };
        context += $", tiles of {tileRows}";
        var schedule = new SparseAttention.Cpu.NeighborhoodSchedule();
        schedule.Prepare(component, n, tileRows, maxRows: 60);
        var computed = new int[n];
        var segments = new KeySegment[pattern.MaxSegmentsPerQuery];
        var starts = new int[schedule.MaxKeyLines];
        var slots = new int[schedule.MaxKeyLines];
        var counts = new int[NeighborhoodComponent.MaxAxes];
        var slotStarts = new int[schedule.MaxKeyLines];
        for (int item = 0; item < schedule.ItemsPerHead; item++)
        {
            schedule.ItemOf(item, out int firstLine, out int lineStep, out int lineCount, out int residue, out int chunk);
            int firstIndex = chunk * schedule.ChunkRows, classLength = schedule.ClassLength(residue);
            if (firstIndex >= classLength || lineCount == 0)
            {
                continue;
            }

            int lastIndex = Math.Min(classLength, firstIndex + schedule.ChunkRows) - 1;
            int origin = 0, columns = classLength;
            if (schedule.Gathers)
            {
                schedule.ColumnsOf(residue, firstIndex, out origin, out _);
                schedule.ColumnsOf(residue, lastIndex, out int lastStart, out int lastCount);
                columns = lastStart + lastCount - origin;
            }

            for (int l = 0; l < lineCount; l++)
            {
                int line = firstLine + l * lineStep, keyLines = 1;
                slotStarts[0] = 0;
                if (schedule.Gathers)
                {
                    keyLines = component.WriteKeyLines(line, n, starts, slots, counts);
                    Array.Fill(slotStarts, -1);
                    for (int m = 0; m < keyLines; m++)
                    {
                        Assert.True(slots[m] >= 0 && slots[m] < keyLines && slotStarts[slots[m]] < 0, $"{context}: line {line} puts two key lines in slot {slots[m]}");
                        slotStarts[slots[m]] = starts[m];
                    }
                }

                int streamLength = columns * keyLines, tiles = 0;
                for (int index = firstIndex; index <= lastIndex; tiles++)
                {
                    int rows = schedule.NextTile(residue, index, lastIndex, origin, keyLines, streamLength, tileRows, out long left, out long right, out int keyFirst, out int keyLast);
                    Assert.InRange(rows, 1, tileRows);
                    for (int t = 0; t < rows; t++)
                    {
                        int query = line * schedule.LineLength + residue + schedule.Dilation * (index + t);
                        computed[query]++;
                        long q = (long)(index + t - origin) * keyLines;
                        var fromTile = new List<int>();
                        for (long key = Math.Max(keyFirst, q - left); key <= Math.Min(keyLast, q + right); key++)
                        {
                            Assert.InRange(key, 0, streamLength - 1);
                            fromTile.Add(slotStarts[(int)(key % keyLines)] + residue + schedule.Dilation * (origin + (int)(key / keyLines)));
                        }

                        int count = pattern.GetKeySegments(query, 0, n, segments);
                        var expected = new List<int>();
                        for (int s = 0; s < count; s++)
                        {
                            expected.AddRange(Enumerable.Range(0, segments[s].Count).Select(i => segments[s].Start + i * segments[s].Step));
                        }

                        fromTile.Sort();
                        expected.Sort();
                        Assert.True(expected.SequenceEqual(fromTile), $"{context}: query {query} (line {line}, index {index + t}) gets {string.Join(",", fromTile)}, expected {string.Join(",", expected)}");
                    }

                    index += rows;
                }

                // Bands where the rows slide, rectangles where they stop: a line's chunk breaks its tiles at most where
                // the left border ends and where the right one starts (fewer bands would still be exact, but slow).
                Assert.True(tiles <= (lastIndex - firstIndex + tileRows) / tileRows + 2, $"{context}: line {line}, chunk {chunk} takes {tiles} tiles for {lastIndex - firstIndex + 1} queries");
            }
        }

        Assert.True(computed.All(times => times == 1), $"{context}: queries computed other than once: {string.Join(",", Enumerable.Range(0, n).Where(q => computed[q] != 1).Take(10))}");
    }

    [Theory]
    [InlineData(0, 0, 1, "0, 1, 2", "0, 1, 2")]
    [InlineData(0, 2, 1, "0, 1, 2", "1, 2, 3")]
    [InlineData(2, 2, 1, "1, 2, 3", "1, 2, 3")]
    [InlineData(4, 4, 1, "2, 3, 4", "2, 3, 4")]
    [InlineData(0, 0, 2, "0, 2, 4", "0, 2, 4")]
    [InlineData(0, 2, 2, "0, 2, 4", "0, 2, 4")]
    [InlineData(2, 2, 2, "0, 2, 4", "0, 2, 4")]
    [InlineData(1, 3, 2, "1, 3", "1, 3")]
    public void TheHandWorkedFiveByFiveTableHolds(int row, int column, int dilation, string rows, string columns)
    {
        var pattern = new AttentionPattern(false, new PatternComponent[] { new NeighborhoodComponent(new[] { 3, 3 }, new[] { dilation, dilation }) }).WithGrid(new[] { 5, 5 });
        int query = row * 5 + column;
        var keys = Enumerable.Range(0, 25).Where(key => pattern.IsVisible(query, key, 0, 25)).ToArray();
        Assert.Equal(rows, string.Join(", ", keys.Select(key => key / 5).Distinct().Order()));
        Assert.Equal(columns, string.Join(", ", keys.Select(key => key % 5).Distinct().Order()));
        Assert.Equal(rows.Split(',').Length * columns.Split(',').Length, keys.Length);
        string table = File.ReadAllText(Path.Combine(Testing.RepositoryRoot.Find(), "docs", "patterns.md"));
        Assert.Contains($"| ({row}, {column}) ", table);
        Assert.Contains($"| {dilation} | {rows} | {columns} |", table);
    }

    [Fact]
    public void BadValuesAreNamedAndAGridIsNeededForMoreThanOneAxis()
    {
        Assert.Equal("kernelSize", Assert.Throws<ArgumentException>(() => new NeighborhoodComponent(new[] { 3, 0 })).ParamName);
        Assert.Equal("kernelSize", Assert.Throws<ArgumentException>(() => new NeighborhoodComponent(new[] { 3, 3, 3, 3 })).ParamName);
        Assert.Equal("dilation", Assert.Throws<ArgumentException>(() => new NeighborhoodComponent(new[] { 3, 3 }, new[] { 1 })).ParamName);
        Assert.Equal("dilation", Assert.Throws<ArgumentException>(() => new NeighborhoodComponent(new[] { 3 }, new[] { 0 })).ParamName);
        Assert.Equal("causalAxes", Assert.Throws<ArgumentException>(() => new NeighborhoodComponent(new[] { 3, 3 }, causalAxes: new[] { true })).ParamName);
        var component = new NeighborhoodComponent(new[] { 3, 3 });
        Assert.Equal("grid", Assert.Throws<ArgumentException>(() => component.WithGrid(new[] { 4 })).ParamName);
        Assert.Equal("grid", Assert.Throws<ArgumentException>(() => component.WithGrid(new[] { 4, 0 })).ParamName);
        Assert.Equal("grid", Assert.Throws<ArgumentException>(() => new AttentionPattern(false, new PatternComponent[] { component }).IsVisible(0, 1, 0, 16)).ParamName);
        Assert.Equal("causal", Assert.Throws<ArgumentException>(() => new AttentionPattern(true, new PatternComponent[] { component })).ParamName);
        Assert.Throws<InvalidOperationException>(() => AttentionPattern.SlidingWindow(4).WithGrid(new[] { 2, 2 }));

        // One axis needs no grid: the sequence is the axis.
        var line = new AttentionPattern(false, new PatternComponent[] { new NeighborhoodComponent(new[] { 3 }) });
        Assert.True(line.IsVisible(0, 2, 0, 10) && !line.IsVisible(0, 3, 0, 10) && line.IsVisible(9, 7, 0, 10));
    }
}
