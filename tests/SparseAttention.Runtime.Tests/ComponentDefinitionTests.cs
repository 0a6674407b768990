namespace SparseAttention.Runtime.Tests;

/// <summary>
/// The fixed factorized and block-sparse components against their definitions (issue 13, docs/patterns.md), written
/// here again from the text and not from the runtime's code, so that a mistake has to be made twice to pass.
/// </summary>
public class ComponentDefinitionTests
{
    /// <summary>The fixed pattern (Child et al. 2019, §4.3) as docs/patterns.md defines it, then the causal cut.</summary>
    private static bool FixedDefinition(int i, int j, int h, int l, int c, bool varyByHead, bool causal)
    {
        if (causal && j > i)
        {
            return false;
        }

        if (j / l == i / l)
        {
            return true;
        }

        if (!varyByHead)
        {
            return j % l >= l - c;
        }

        int g = h % (l / c);
        return l - c * (g + 1) <= j % l && j % l < l - c * g;
    }

    [Theory]
    [InlineData(16, 4, false, true)]
    [InlineData(16, 4, false, false)]
    [InlineData(12, 3, true, true)]
    [InlineData(12, 3, true, false)]
    [InlineData(7, 7, false, true)]
    [InlineData(5, 1, true, false)]
    [InlineData(1, 1, false, true)]
    public void FixedFactorizedIsItsDefinition(int block, int summary, bool varyByHead, bool causal)
    {
        var pattern = new AttentionPattern(causal, new PatternComponent[] { new FixedFactorizedComponent(block, summary, varyByHead) });
        const int n = 53;
        for (int head = 0; head < 6; head++)
        {
            for (int query = 0; query < n; query++)
            {
                for (int key = 0; key < n; key++)
                {
                    Assert.True(FixedDefinition(query, key, head, block, summary, varyByHead, causal) == pattern.IsVisible(query, key, head, n),
                        $"l={block} c={summary} vary={varyByHead} causal={causal}: ({query}, {key}) head {head}");
                }
            }
        }
    }

    /// <summary>SplitMix64 exactly as the issue and docs/patterns.md write it.</summary>
    private sealed class SplitMix64(ulong state)
    {
        public ulong Next()
        {
            unchecked
            {
                state += 0x9E3779B97F4A7C15;
                ulong z = state;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
                return z ^ (z >> 31);
            }
        }
    }

    /// <summary>R(h, qb) from the definition.</summary>
    private static int[] RandomBlocksByDefinition(long seed, int head, int qb, int nb, int w, int r, bool causal, Func<int, bool> isGlobal)
    {
        if (isGlobal(qb))
        {
            return Array.Empty<int>();
        }

        List<int> candidates = Enumerable.Range(0, causal ? qb + 1 : nb).Where(kb => Math.Abs(qb - kb) > w && !isGlobal(kb)).ToList();
        ulong state = unchecked((ulong)seed * 0x9E3779B97F4A7C15 ^ (ulong)head * 0xBF58476D1CE4E5B9 ^ (ulong)qb * 0x94D049BB133111EB);
        var generator = new SplitMix64(state);
        int m = candidates.Count, take = Math.Min(r, m);
        for (int t = 0; t < take; t++)
        {
            int k = t + (int)(generator.Next() % (ulong)(m - t));
            (candidates[t], candidates[k]) = (candidates[k], candidates[t]);
        }

        return candidates.Take(take).ToArray();
    }

    [Theory]
    [InlineData(4, 1, new[] { 0, -1 }, 3, 12345L, false, 61)]
    [InlineData(4, 1, new[] { 0, -1 }, 3, 12345L, true, 61)]
    [InlineData(3, 0, new int[0], 5, -7L, false, 40)]
    [InlineData(5, 2, new[] { 2, -2, 100, -100 }, 2, long.MaxValue, true, 77)]
    [InlineData(1, 0, new[] { -1 }, 4, 0L, false, 30)]
    [InlineData(8, 1, new[] { 0 }, 40, 99L, false, 64)]
    public void BlockSparseRandomBlocksAndVisibilityAreTheDefinition(int b, int w, int[] globalBlocks, int r, long seed, bool causal, int n)
    {
        var component = new BlockSparseComponent(b, w, globalBlocks, r, seed, causal);
        var pattern = new AttentionPattern(causal, new PatternComponent[] { component });
        int nb = (n + b - 1) / b;
        var global = new HashSet<int>(globalBlocks.Select(g => g < 0 ? g + nb : g).Where(g => g >= 0 && g < nb));
        Span<int> drawn = stackalloc int[Math.Max(1, r)];
        for (int head = 0; head < 5; head++)
        {
            for (int qb = 0; qb < nb; qb++)
            {
                int[] expected = RandomBlocksByDefinition(seed, head, qb, nb, w, r, causal, global.Contains);
                int count = component.GetRandomBlocks(head, qb, n, drawn);
                Assert.Equal(expected, drawn.Slice(0, count).ToArray());

                for (int query = qb * b; query < Math.Min(n, (qb + 1) * b); query++)
                {
                    for (int key = 0; key < n; key++)
                    {
                        int kb = key / b;
                        bool visible = (Math.Abs(qb - kb) <= w || global.Contains(qb) || global.Contains(kb) || expected.Contains(kb)) && (!causal || key <= query);
                        Assert.True(visible == pattern.IsVisible(query, key, head, n), $"({query}, {key}) head {head} n {n}");
                    }
                }
            }
        }
    }

    [Fact]
    public void BlockSparseRandomBlocksDependOnHeadAndSeed()
    {
        // With enough candidates, two heads (and two seeds) almost surely draw different blocks: a generator that ignored
        // either input would pass the definition test above only by luck of its cases.
        var a = new BlockSparseComponent(4, 0, null, 3, 1, causal: false);
        var b = new BlockSparseComponent(4, 0, null, 3, 2, causal: false);
        int[] Draw(BlockSparseComponent component, int head)
        {
            var blocks = new int[3];
            component.GetRandomBlocks(head, 10, 400, blocks);
            return blocks;
        }

        Assert.NotEqual(Draw(a, 0), Draw(a, 1));
        Assert.NotEqual(Draw(a, 0), Draw(b, 0));
    }

    [Theory]
    [InlineData(0, 1, false, "block")]
    [InlineData(8, 0, false, "summary")]
    [InlineData(8, 9, false, "summary")]
    [InlineData(12, 5, true, "varyByHead")]
    public void FixedFactorizedRejectsImpossibleValues(int block, int summary, bool varyByHead, string parameter)
    {
        var exception = Assert.Throws<ArgumentException>(() => new FixedFactorizedComponent(block, summary, varyByHead));
        Assert.Equal(parameter, exception.ParamName);
        Assert.StartsWith("FixedFactorized", exception.Message);
    }

    [Theory]
    [InlineData(0, 1, 1, "blockSize")]
    [InlineData(4, -1, 1, "windowBlocks")]
    [InlineData(4, 1, -2, "randomBlocks")]
    public void BlockSparseRejectsImpossibleValues(int blockSize, int windowBlocks, int randomBlocks, string parameter)
    {
        var exception = Assert.Throws<ArgumentException>(() => new BlockSparseComponent(blockSize, windowBlocks, null, randomBlocks, 0, causal: true));
        Assert.Equal(parameter, exception.ParamName);
        Assert.Contains("got " + (parameter == "blockSize" ? blockSize : parameter == "windowBlocks" ? windowBlocks : randomBlocks), exception.Message);
    }

    [Fact]
    public void BlockQueriesOutsideTheSequenceAreRefusedWithTheParameterName()
    {
        var component = new BlockSparseComponent(4, 1, new[] { -1 }, 3, 0, causal: false);
        var blocks = new int[3];
        Assert.Equal("queryBlock", Assert.Throws<ArgumentOutOfRangeException>(() => component.GetRandomBlocks(0, 10, 40, blocks)).ParamName);
        Assert.Equal("queryBlock", Assert.Throws<ArgumentOutOfRangeException>(() => component.GetRandomBlocks(0, -1, 40, blocks)).ParamName);
        Assert.Equal("head", Assert.Throws<ArgumentOutOfRangeException>(() => component.GetRandomBlocks(-1, 0, 40, blocks)).ParamName);
        Assert.Equal("seqLength", Assert.Throws<ArgumentOutOfRangeException>(() => component.GetRandomBlocks(0, 0, 0, blocks)).ParamName);
        var small = Assert.Throws<ArgumentException>(() => component.GetRandomBlocks(0, 0, 40, new int[2]));
        Assert.Equal("destination", small.ParamName);
        Assert.Contains("RandomBlocks = 3", small.Message);
        Assert.Contains("0 to 9", Assert.Throws<ArgumentOutOfRangeException>(() => component.IsGlobalBlock(10, 40)).Message);
        Assert.True(component.IsGlobalBlock(9, 40));
        Assert.False(component.IsGlobalBlock(0, 40));
    }

    [Fact]
    public void ABlockSparseComponentMustShareThePatternsDirection()
    {
        var exception = Assert.Throws<ArgumentException>(() => new AttentionPattern(causal: true, new PatternComponent[] { new BlockSparseComponent(4, 1, null, 2, 0, causal: false) }));
        Assert.Equal("components", exception.ParamName);
        Assert.Contains("causal", exception.Message);
    }
}
