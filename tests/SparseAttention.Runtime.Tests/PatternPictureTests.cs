using System.Text.RegularExpressions;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// docs/patterns.md shows each pattern's mask as an SVG drawn by <see cref="AttentionPattern.ToSvg"/>. The committed
/// pictures must be what the runtime draws today: a mismatch writes <c>name.received.svg</c> next to the picture and
/// fails; <c>tests/accept-snapshots.sh</c> accepts it, as for the generator's snapshots.
/// </summary>
public class PatternPictureTests
{
    private const int Tokens = 16;

    public static readonly (string Name, AttentionPattern Pattern, int Head)[] Pictures =
    {
        ("dense-causal", AttentionPattern.Dense(causal: true), 0),
        ("dense-bidirectional", AttentionPattern.Dense(causal: false), 0),
        ("sliding-window-size-4", AttentionPattern.SlidingWindow(4), 0),
        ("window-left-2-right-2", new AttentionPattern(causal: false, windowLeft: 2, windowRight: 2), 0),
        ("dilated-window-left-2-right-2-dilation-2", new AttentionPattern(causal: false, windowLeft: 2, windowRight: 2, dilation: new[] { 2 }), 0),
        ("longformer-window-dilation-globals", new AttentionPattern(causal: false, windowLeft: 2, windowRight: 2, dilation: new[] { 2 }, globalTokens: new[] { 0, 1 }), 0),
        ("sinks-window-size-4-global-0", new AttentionPattern(causal: true, windowLeft: 3, windowRight: 0, globalTokens: new[] { 0 }), 0),
        ("strided-left-3-stride-4", new AttentionPattern(causal: true, windowLeft: 3, windowRight: 0, stride: 4), 0),
        ("fixed-block-4-summary-1", new AttentionPattern(causal: true, new PatternComponent[] { new FixedFactorizedComponent(4, 1, varyByHead: false) }), 0),
        ("fixed-block-4-summary-2-bidirectional", new AttentionPattern(causal: false, new PatternComponent[] { new FixedFactorizedComponent(4, 2, varyByHead: false) }), 0),
        ("fixed-block-4-summary-1-vary-by-head-head-1", new AttentionPattern(causal: true, new PatternComponent[] { new FixedFactorizedComponent(4, 1, varyByHead: true) }), 1),
        ("bigbird-block-2-window-1-globals-first-last-random-1", new AttentionPattern(causal: false, new PatternComponent[] { new BlockSparseComponent(2, 1, new[] { 0, -1 }, 1, 2020, causal: false) }), 0),
        ("bigbird-causal-block-2-window-1-global-0-random-1", new AttentionPattern(causal: true, new PatternComponent[] { new BlockSparseComponent(2, 1, new[] { 0 }, 1, 2020, causal: true) }), 0),
        ("neighborhood-3x3-dilation-1x2-grid-4x4", new AttentionPattern(causal: false, new PatternComponent[] { new NeighborhoodComponent(new[] { 3, 3 }, new[] { 1, 2 }) }).WithGrid(new[] { 4, 4 }), 0),
    };

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var picture in Pictures)
        {
            data.Add(picture.Name);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CommittedPictureIsWhatTheRuntimeDraws(string name)
    {
        var (_, pattern, head) = Pictures.Single(picture => picture.Name == name);
        string folder = Path.Combine(Testing.RepositoryRoot.Find(), "docs", "patterns");
        string path = Path.Combine(folder, name + ".svg");
        string drawn = pattern.ToSvg(Tokens, head);
        string? committed = File.Exists(path) ? File.ReadAllText(path) : null;
        if (committed != drawn)
        {
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, name + ".received.svg"), drawn);
            Assert.Fail($"docs/patterns/{name}.svg is {(committed is null ? "missing" : "out of date")}; the runtime's drawing was written to {name}.received.svg. Look at it, then run tests/accept-snapshots.sh and commit.");
        }

        Assert.Contains("](patterns/" + name + ".svg)", File.ReadAllText(Path.Combine(Testing.RepositoryRoot.Find(), "docs", "patterns.md")));
    }

    [Fact]
    public void EverySquareIsAPairAndTheFilledOnesAreTheVisiblePairs()
    {
        var pattern = new AttentionPattern(causal: false, windowLeft: 3, windowRight: 1, dilation: new[] { 1, 3 }, globalTokens: new[] { 5 }, stride: 7);
        foreach (int head in new[] { 0, 1 })
        {
            string svg = pattern.ToSvg(20, head, cellSize: 4);
            int squares = Regex.Matches(svg, "<rect x=").Count;
            int filled = Regex.Matches(svg, "<rect x=[^>]*fill=\"#(1f5fbf|e08a00)\"").Count;
            Assert.Equal(20 * 20, squares);
            long expected = pattern.VisiblePairs(20, head + 1) - pattern.VisiblePairs(20, head);
            Assert.Equal(expected, filled);
            Assert.Contains(expected + " visible pairs", svg);
        }
    }

    [Theory]
    [InlineData(0, 0, 12, "seqLength")]
    [InlineData(257, 0, 12, "seqLength")]
    [InlineData(8, -1, 12, "head")]
    [InlineData(8, 0, 1, "cellSize")]
    public void OutOfRangeArgumentsAreRejected(int seqLength, int head, int cellSize, string parameter)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => AttentionPattern.Dense().ToSvg(seqLength, head, cellSize));
        Assert.Equal(parameter, error.ParamName);
    }
}
