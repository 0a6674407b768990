namespace SparseAttention.Runtime.Tests;

/// <summary><see cref="AttentionPattern"/>'s segments and counts against a brute-force visibility scan.</summary>
public class AttentionPatternTests
{
    /// <summary>A random pattern: any mix of components, causal or not, per-head dilations, globals anywhere.</summary>
    internal static AttentionPattern RandomPattern(Random random)
    {
        bool hasWindow = random.Next(4) != 0;
        int? left = hasWindow ? random.Next(0, 12) : null;
        int? right = hasWindow ? random.Next(0, 12) : null;
        int[] dilation = hasWindow && random.Next(3) == 0 ? Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(1, 5)).ToArray() : Array.Empty<int>();
        int[] globals = random.Next(2) == 0 ? Enumerable.Range(0, random.Next(1, 5)).Select(_ => random.Next(0, 60)).ToArray() : Array.Empty<int>();
        int? stride = random.Next(3) == 0 ? random.Next(1, 9) : null;
        return new AttentionPattern(random.Next(2) == 0, left, right, dilation, globals, stride);
    }

    [Fact]
    public void SegmentsHoldExactlyTheVisibleKeysOnceEach()
    {
        var random = new Random(42);
        var segments = new KeySegment[256];
        for (int trial = 0; trial < 400; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
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
                        int expected = pattern.IsVisible(query, key, head) ? 1 : 0;
                        Assert.True(expected == seen[key], $"{pattern}, n {seqLen}, head {head}, query {query}, key {key}: visible {expected == 1}, in segments {seen[key]} times");
                    }
                }
            }
        }
    }

    /// <summary>
    /// The strided bands the tiled kernels run over residue streams hold exactly the keys of the strided
    /// segments GetKeySegments returns (those before the global columns, after the window's).
    /// </summary>
    [Fact]
    public void StridedBandsHoldExactlyTheStridedSegments()
    {
        var random = new Random(17);
        var segments = new KeySegment[256];
        int checkedPatterns = 0;
        for (int trial = 0; trial < 600; trial++)
        {
            AttentionPattern pattern = RandomPattern(random);
            int seqLen = random.Next(1, 70);
            for (int head = 0; head < 3; head++)
            {
                if (!pattern.TryGetStridedBands(head, out var before, out var after))
                {
                    continue;
                }

                checkedPatterns++;
                int stride = pattern.Stride;
                for (int query = 0; query < seqLen; query++)
                {
                    if (pattern.IsGlobal(query))
                    {
                        continue;
                    }

                    int count = pattern.GetKeySegments(query, head, seqLen, segments, out int firstGlobal);
                    var fromSegments = new SortedSet<int>();
                    for (int s = pattern.HasWindow ? 1 : 0; s < firstGlobal; s++)
                    {
                        for (int c = 0; c < segments[s].Count; c++)
                        {
                            fromSegments.Add(segments[s].Start + c * segments[s].Step);
                        }
                    }

                    var fromBands = new SortedSet<int>();
                    int residue = query % stride, m = query / stride;
                    int streamLength = (seqLen - residue + stride - 1) / stride;
                    foreach (var band in after is { } a ? new[] { before, a } : new[] { before })
                    {
                        for (long k = Math.Max(0, m - band.Left); k <= Math.Min(streamLength - 1, m + band.Right); k++)
                        {
                            fromBands.Add((int)(residue + k * stride));
                        }
                    }

                    Assert.True(fromSegments.SetEquals(fromBands), $"{pattern}, n {seqLen}, head {head}, query {query}: segments {string.Join(",", fromSegments)} bands {string.Join(",", fromBands)}");
                }
            }
        }

        Assert.True(checkedPatterns > 50, "too few random patterns had strided bands to make the test meaningful");
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
                        expected += pattern.IsVisible(query, key, head) ? 1 : 0;
                    }
                }
            }

            Assert.Equal(expected, pattern.VisiblePairs(seqLen, heads));
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
