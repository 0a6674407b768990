namespace SparseAttention.Runtime.Tests;

/// <summary><see cref="AttentionPattern"/>'s segments and counts against a brute-force visibility scan.</summary>
public class AttentionPatternTests
{
    /// <summary>
    /// A random pattern: any mix of components (window with per-head dilations, stride, fixed factorized, block-sparse,
    /// globals anywhere), causal or not.
    /// </summary>
    internal static AttentionPattern RandomPattern(Random random)
    {
        bool causal = random.Next(2) == 0;
        var components = new List<PatternComponent>();
        if (random.Next(4) != 0)
        {
            int[] dilation = random.Next(3) == 0 ? Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(1, 5)).ToArray() : Array.Empty<int>();
            components.Add(new WindowComponent(random.Next(0, 12), random.Next(0, 12), dilation));
        }

        if (random.Next(3) == 0)
        {
            components.Add(new StridedComponent(random.Next(1, 9)));
        }

        if (random.Next(5) == 0)
        {
            int summary = random.Next(1, 5);
            bool vary = random.Next(2) == 0;
            int block = vary ? summary * random.Next(1, 4) : random.Next(summary, 12);
            components.Add(new FixedFactorizedComponent(block, summary, vary));
        }

        if (random.Next(5) == 0)
        {
            int[] globalBlocks = Enumerable.Range(0, random.Next(0, 3)).Select(_ => random.Next(-3, 6)).ToArray();
            components.Add(new BlockSparseComponent(random.Next(1, 9), random.Next(0, 3), globalBlocks, random.Next(0, 4), random.Next(), causal));
        }

        if (random.Next(2) == 0)
        {
            components.Add(new GlobalTokensComponent(Enumerable.Range(0, random.Next(1, 5)).Select(_ => random.Next(0, 60))));
        }

        return new AttentionPattern(causal, components);
    }

    /// <summary>Every visible key of a row, by brute force over <see cref="AttentionPattern.IsVisible(int, int, int, int)"/>.</summary>
    private static SortedSet<int> VisibleKeys(AttentionPattern pattern, int query, int head, int seqLen) =>
        new(Enumerable.Range(0, seqLen).Where(key => pattern.IsVisible(query, key, head, seqLen)));

    [Fact]
    public void SegmentsHoldExactlyTheVisibleKeysOnceEach()
    {
        var random = new Random(42);
        for (int trial = 0; trial < 500; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            var segments = new KeySegment[pattern.MaxSegmentsPerQuery];
            int seqLen = random.Next(1, 70);
            for (int head = 0; head < 4; head++)
            {
                for (int query = 0; query < seqLen; query++)
                {
                    int count = pattern.GetKeySegments(query, head, seqLen, segments);
                    Assert.True(count <= pattern.MaxSegmentsPerQuery);
                    var seen = new int[seqLen];
                    foreach (KeySegment segment in segments.AsSpan(0, count))
                    {
                        Assert.True(segment.Count > 0 && segment.Step > 0, $"{pattern}: empty or backwards segment {segment}");
                        for (int c = 0; c < segment.Count; c++)
                        {
                            int key = segment.Start + c * segment.Step;
                            Assert.True(key >= 0 && key < seqLen, $"{pattern}, n {seqLen}, query {query}: key {key} out of range in {segment}");
                            seen[key]++;
                        }
                    }

                    for (int key = 0; key < seqLen; key++)
                    {
                        int expected = pattern.IsVisible(query, key, head, seqLen) ? 1 : 0;
                        Assert.True(expected == seen[key], $"{pattern}, n {seqLen}, head {head}, query {query}, key {key}: visible {expected == 1}, in segments {seen[key]} times");
                    }
                }
            }
        }
    }

    /// <summary>
    /// The ordering contract: segments come component by component, each component's keys less the earlier ones', and
    /// asking from a later component gives exactly the tail of the full list; a covered row is one whole segment.
    /// </summary>
    [Fact]
    public void SegmentsComeInComponentOrderAndFromComponentGivesTheTail()
    {
        var random = new Random(5);
        for (int trial = 0; trial < 300; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            var all = new KeySegment[pattern.MaxSegmentsPerQuery];
            var tail = new KeySegment[pattern.MaxSegmentsPerQuery];
            int seqLen = random.Next(1, 60);
            for (int query = 0; query < seqLen; query++)
            {
                int head = random.Next(4);
                int count = pattern.GetKeySegments(query, head, seqLen, all, 0, out int coveredBy);
                int lastKey = pattern.Causal ? query : seqLen - 1;
                if (coveredBy >= 0)
                {
                    Assert.Equal(1, count);
                    Assert.Equal(new KeySegment(0, 1, lastKey + 1).ToString(), all[0].ToString());
                    Assert.True(pattern.Components[coveredBy].CoversRow(query, head, seqLen));
                    continue;
                }

                // Component c's keys are those it contains and no earlier one does.
                int at = 0;
                for (int c = 0; c < pattern.Components.Count; c++)
                {
                    int tailCount = pattern.GetKeySegments(query, head, seqLen, tail, c, out _);
                    Assert.Equal(count - at, tailCount);
                    for (int s = 0; s < tailCount; s++)
                    {
                        Assert.Equal(all[at + s].ToString(), tail[s].ToString());
                    }

                    var expected = new SortedSet<int>(Enumerable.Range(0, lastKey + 1).Where(key =>
                        pattern.Components[c].Contains(query, key, head, seqLen) && !pattern.Components.Take(c).Any(earlier => earlier.Contains(query, key, head, seqLen))));
                    var actual = new SortedSet<int>();
                    int next = c + 1 < pattern.Components.Count ? count - pattern.GetKeySegments(query, head, seqLen, tail, c + 1, out _) : count;
                    for (int s = at; s < next; s++)
                    {
                        for (int k = 0; k < all[s].Count; k++)
                        {
                            actual.Add(all[s].Start + k * all[s].Step);
                        }
                    }

                    Assert.True(expected.SetEquals(actual), $"{pattern}, n {seqLen}, query {query}, component {c}: expected {string.Join(",", expected)}, got {string.Join(",", actual)}");
                    at = next;
                }
            }
        }
    }

    /// <summary>Tile classes against brute force: Empty means no visible pair, Full every pair visible.</summary>
    [Fact]
    public void TileClassesAreExact()
    {
        var random = new Random(11);
        int partial = 0, full = 0, empty = 0;
        for (int trial = 0; trial < 3000; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            int seqLen = random.Next(1, 80), head = random.Next(4);
            int queryFirst = random.Next(seqLen), queryLast = Math.Min(seqLen - 1, queryFirst + random.Next(16));
            int keyFirst = random.Next(seqLen), keyLast = Math.Min(seqLen - 1, keyFirst + random.Next(16));
            int visible = 0, pairs = 0;
            for (int query = queryFirst; query <= queryLast; query++)
            {
                for (int key = keyFirst; key <= keyLast; key++)
                {
                    pairs++;
                    visible += pattern.IsVisible(query, key, head, seqLen) ? 1 : 0;
                }
            }

            TileClass tileClass = pattern.ClassifyTile(head, queryFirst, queryLast, keyFirst, keyLast, seqLen);
            string where = $"{pattern}, n {seqLen}, head {head}, queries {queryFirst}..{queryLast}, keys {keyFirst}..{keyLast}: {visible} of {pairs} visible";
            switch (tileClass)
            {
                case TileClass.Empty: Assert.True(visible == 0, where + ", classed Empty"); empty++; break;
                case TileClass.Full: Assert.True(visible == pairs, where + ", classed Full"); full++; break;
                default: partial++; break;
            }
        }

        Assert.True(partial > 300 && full > 300 && empty > 300, $"too few of a class to mean anything: {empty} empty, {partial} partial, {full} full");
    }

    /// <summary>
    /// What the tiled kernels run: the tiled components' bands (over residue streams) and block runs (over query blocks)
    /// hold exactly the keys of those components' segments, each once, so the row kernel adds only the rest.
    /// </summary>
    [Fact]
    public void TilePlansHoldExactlyTheTiledComponentsKeys()
    {
        var random = new Random(17);
        var plan = new SparseAttention.Cpu.CpuAttention.TilePlan();
        int bandPatterns = 0, blockPatterns = 0;
        for (int trial = 0; trial < 800; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            int seqLen = random.Next(1, 70), heads = 3;
            plan.Prepare(pattern, heads, seqLen, keyTile: 0, tileRows: 6, neighborhoodRows: 4, wholeSequence: true);
            var segments = new KeySegment[pattern.MaxSegmentsPerQuery];
            for (int head = 0; head < heads; head++)
            {
                int tiled = plan.TiledComponents[head];
                if (tiled == 0 && pattern.Components.Count > 0)
                {
                    continue;
                }

                bandPatterns += plan.BlockComponent is null ? 1 : 0;
                blockPatterns += plan.BlockComponent is null ? 0 : 1;
                for (int query = 0; query < seqLen; query++)
                {
                    // Keys the row kernel does not add: all of them when a tiled component covers the row, else those
                    // before the first untiled component's segments.
                    int count = pattern.GetKeySegments(query, head, seqLen, segments, 0, out int coveredBy);
                    int untiled = tiled < pattern.Components.Count ? pattern.GetKeySegments(query, head, seqLen, new KeySegment[pattern.MaxSegmentsPerQuery], tiled, out _) : 0;
                    if (coveredBy >= tiled)
                    {
                        continue; // computed whole by the row kernel
                    }

                    var expected = new List<int>();
                    for (int s = 0; s < (coveredBy >= 0 ? count : count - untiled); s++)
                    {
                        for (int k = 0; k < segments[s].Count; k++)
                        {
                            expected.Add(segments[s].Start + k * segments[s].Step);
                        }
                    }

                    var fromTiles = new List<int>();
                    if (plan.BlockComponent is { } block)
                    {
                        var runs = new KeyRun[block.MaxBlockRuns(seqLen)];
                        int runCount = block.WriteBlockRuns(head, query / block.BlockRows, seqLen, pattern.Causal, runs);
                        foreach (KeyRun run in runs.AsSpan(0, runCount))
                        {
                            for (int k = run.First; k <= run.Last; k++)
                            {
                                int position = run.Step == 0 ? block.GatheredPosition(head, k) : run.Residue + k * run.Step;
                                if (!run.CausalCut || position <= query)
                                {
                                    fromTiles.Add(position);
                                }
                            }
                        }
                    }
                    else
                    {
                        for (int pass = 0; pass < Math.Max(1, tiled); pass++)
                        {
                            int step = plan.Steps[pass * heads + head];
                            int residue = query % step, m = query / step;
                            int streamLength = (seqLen - residue + step - 1) / step;
                            foreach ((long left, long right) in plan.Bands[pass * heads + head]!)
                            {
                                for (long k = Math.Max(0, m - left); k <= Math.Min(streamLength - 1, m + right); k++)
                                {
                                    fromTiles.Add((int)(residue + k * step));
                                }
                            }
                        }
                    }

                    expected.Sort();
                    fromTiles.Sort();
                    Assert.True(expected.SequenceEqual(fromTiles), $"{pattern}, n {seqLen}, head {head}, query {query}: segments {string.Join(",", expected)}, tiles {string.Join(",", fromTiles)}");
                }
            }
        }

        Assert.True(bandPatterns > 200 && blockPatterns > 50, $"too few tiled patterns: {bandPatterns} band, {blockPatterns} block");
    }

    [Fact]
    public void VisiblePairsEqualsBruteForceCount()
    {
        var random = new Random(9);
        for (int trial = 0; trial < 200; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            int seqLen = random.Next(1, 90);
            int heads = random.Next(1, 6);
            long expected = 0;
            for (int head = 0; head < heads; head++)
            {
                for (int query = 0; query < seqLen; query++)
                {
                    for (int key = 0; key < seqLen; key++)
                    {
                        expected += pattern.IsVisible(query, key, head, seqLen) ? 1 : 0;
                    }
                }
            }

            Assert.Equal(expected, pattern.VisiblePairs(seqLen, heads));
        }
    }

    /// <summary>
    /// The segment subtraction under the union, on its own: single keys (global columns), runs of step 1 (its quick paths)
    /// and any steps (the general congruence), against set arithmetic on the keys.
    /// </summary>
    [Fact]
    public void SubtractLeavesExactlyThePieceLessTheCut()
    {
        var random = new Random(17);
        var written = new KeySegment[16];
        for (int trial = 0; trial < 20000; trial++)
        {
            KeySegment piece = RandomRun(random), cut = RandomRun(random);
            int count = KeySegmentMath.Subtract(piece, cut, written);
            Assert.InRange(count, 0, (int)KeySegmentMath.MaxPieces(cut.Step));

            var expected = Keys(piece).Except(Keys(cut)).ToHashSet();
            var actual = new List<int>();
            for (int s = 0; s < count; s++)
            {
                Assert.True(written[s].Count > 0, $"{piece} - {cut}: an empty segment was written");
                actual.AddRange(Keys(written[s]));
            }

            Assert.True(actual.Count == actual.Distinct().Count(), $"{piece} - {cut}: a key is written twice");
            Assert.True(expected.SetEquals(actual), $"{piece} - {cut}: wrote {string.Join(", ", written.Take(count))}");
        }

        static KeySegment RandomRun(Random random) => random.Next(4) switch
        {
            0 => new KeySegment(random.Next(40), 1, 1),
            1 => new KeySegment(random.Next(40), 1, random.Next(0, 30)),
            _ => new KeySegment(random.Next(40), random.Next(1, 7), random.Next(0, 20)),
        };

        static IEnumerable<int> Keys(KeySegment segment) => Enumerable.Range(0, segment.Count).Select(t => segment.Start + t * segment.Step);
    }

    /// <summary>
    /// Where decode's next block of slots starts (the tile it requests ahead): the first key of slot-ordered segments in a
    /// block [first, end), and its segment's step, against the keys enumerated; none when no key lies in the block.
    /// </summary>
    [Fact]
    public void FirstKeyInFindsTheBlocksFirstKeyAndItsStep()
    {
        var random = new Random(23);
        for (int trial = 0; trial < 20000; trial++)
        {
            var segments = Enumerable.Range(0, random.Next(0, 4))
                .Select(_ => new KeySegment(random.Next(60), random.Next(1, 6), random.Next(0, 15)))
                .OrderBy(segment => segment.Start)
                .ToArray();
            int first = random.Next(70), end = first + random.Next(0, 30);

            var inBlock = segments.SelectMany(segment => Enumerable.Range(0, segment.Count).Select(t => (Key: segment.Start + t * segment.Step, segment.Step)))
                .Where(key => key.Key >= first && key.Key < end)
                .ToList();
            bool found = KeySegmentMath.FirstKeyIn(segments, first, end, out int key, out int step);
            Assert.Equal(inBlock.Count > 0, found);
            if (found)
            {
                // The first segment (by start) that reaches into the block gives it, as Clip's first part would begin.
                var expected = segments
                    .Select(segment => Enumerable.Range(0, segment.Count).Select(t => segment.Start + t * segment.Step).Where(k => k >= first && k < end).Select(k => (Key: k, segment.Step)))
                    .First(keys => keys.Any())
                    .First();
                Assert.Equal(expected.Key, key);
                Assert.Equal(expected.Step, step);
            }
        }
    }

    [Theory]
    [InlineData(1, 100)]
    [InlineData(4096, 16384)]
    [InlineData(512, 4096)]
    public void SizeWCountsWKeysIncludingTheQuery(int size, int seqLen)
    {
        // llama.cpp n_swa = W, FlashAttention window_size = (W - 1, 0), FlexAttention q - kv < W.
        AttentionPattern pattern = AttentionPattern.SlidingWindow(size);
        Assert.True(pattern.IsVisible(seqLen - 1, seqLen - size));
        Assert.False(pattern.IsVisible(seqLen - 1, seqLen - size - 1));
        Assert.False(pattern.IsVisible(10, 11));
        long fullRows = (long)(seqLen - size + 1) * size;
        long rampRows = (long)(size - 1) * size / 2;
        Assert.Equal(fullRows + rampRows, pattern.VisiblePairs(seqLen, 1));
    }

    [Fact]
    public void LeftRightFollowFlashAttentionAndDilationSkipsKeys()
    {
        var pattern = new AttentionPattern(causal: false, windowLeft: 2, windowRight: 1, dilation: new[] { 3 });
        int[] visible = Enumerable.Range(0, 30).Where(key => pattern.IsVisible(15, key)).ToArray();
        Assert.Equal(new[] { 9, 12, 15, 18 }, visible);
    }

    [Fact]
    public void GlobalTokensSeeAndAreSeenByAllUnderTheCausalCut()
    {
        var pattern = new AttentionPattern(causal: true, windowLeft: 1, windowRight: 0, globalTokens: new[] { 5 });
        Assert.True(pattern.IsVisible(5, 0));
        Assert.True(pattern.IsVisible(40, 5));
        Assert.False(pattern.IsVisible(5, 6), "a global query still cannot see the future under Causal");
        Assert.False(pattern.IsVisible(3, 5), "nor can a query see a global key after it");
    }

    [Fact]
    public void StridedMatchesModuloDefinition()
    {
        var pattern = new AttentionPattern(causal: true, stride: 4);
        Assert.Equal(new[] { 2, 6, 10 }, Enumerable.Range(0, 20).Where(key => pattern.IsVisible(10, key)).ToArray());
    }

    [Fact]
    public void ReceptiveFieldIsWindowTimesLayers()
    {
        // Mistral: 4096 keys (4095 back), 32 layers: about 131K tokens.
        ReceptiveField mistral = AttentionPattern.SlidingWindow(4096).ReceptiveField(32);
        Assert.Equal(4095L * 32, mistral.Back);
        Assert.Equal(0, mistral.Forward);

        var dilated = new AttentionPattern(causal: false, windowLeft: 256, windowRight: 128, dilation: new[] { 1, 2 });
        Assert.Equal(new ReceptiveField(256L * 2 * 3, 128L * 2 * 3), dilated.ReceptiveField(3));
        Assert.Equal(new ReceptiveField(0, 0), dilated.ReceptiveField(0));

        ReceptiveField global = new AttentionPattern(causal: true, windowLeft: 8, globalTokens: new[] { 0 }).ReceptiveField(2);
        Assert.True(global.IsBackUnbounded);
        Assert.Equal(0, global.Forward);
        Assert.True(AttentionPattern.Dense(causal: false).ReceptiveField(1).IsForwardUnbounded);
    }

    [Theory]
    [InlineData(-1, null, null, null, "windowLeft")]
    [InlineData(null, -2, null, null, "windowRight")]
    [InlineData(3, 0, 0, null, "dilation")]
    [InlineData(3, 0, null, 0, "stride")]
    public void InvalidValuesAreRejectedWithTheParameterName(int? left, int? right, int? dilation, int? stride, string parameter)
    {
        var exception = Assert.Throws<ArgumentException>(() => new AttentionPattern(true, left, right, dilation is int d ? new[] { d } : null, null, stride));
        Assert.Equal(parameter, exception.ParamName);
        Assert.Contains("got", exception.Message);
    }

    [Fact]
    public void DilationWithoutAWindowIsRejected()
    {
        var exception = Assert.Throws<ArgumentException>(() => new AttentionPattern(true, dilation: new[] { 2 }, stride: 4));
        Assert.Equal("dilation", exception.ParamName);
        Assert.Contains("no sliding window", exception.Message);
    }

    [Fact]
    public void NegativeGlobalTokenIsRejected()
    {
        var exception = Assert.Throws<ArgumentException>(() => new AttentionPattern(true, globalTokens: new[] { 0, -3 }));
        Assert.Equal("globalTokens", exception.ParamName);
    }
}
