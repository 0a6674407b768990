using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary><see cref="AttentionMerge"/>: partial results over slices of the keys merge into one call over all of them.</summary>
public class AttentionMergeTests
{
    /// <summary>
    /// Random patterns and shapes; the keys cut into 2, 3 or 7 contiguous slices at random points; each slice's output
    /// and log-sum-exp computed here in double (softmax over the row's visible keys in the slice); merged in a random
    /// order, in place. The result must equal the reference over all keys, and its log-sum-exp the whole row's.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    public void MergingTheSlicesOfAPartitionEqualsOneCallOverAllKeys(int slices)
    {
        var random = new Random(slices * 101);
        for (int trial = 0; trial < 25; trial++)
        {
            AttentionPattern pattern = AttentionPatternTests.RandomPattern(random);
            int headDim = random.Next(1, 9), seqLen = random.Next(1, 60);
            AttentionShape shape = AttentionCheck.RandomShape(random, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, headDim);
            int[] cuts = Enumerable.Range(0, slices - 1).Select(_ => random.Next(0, seqLen + 1)).Append(0).Append(seqLen).Order().ToArray();

            var parts = new List<(float[] Output, float[] LogSumExp)>();
            for (int s = 0; s + 1 < cuts.Length; s++)
            {
                parts.Add(Partial(pattern, inputs, cuts[s], cuts[s + 1]));
            }

            parts = parts.OrderBy(_ => random.Next()).ToList();
            (float[] output, float[] logSumExp) = parts[0];
            foreach ((float[] otherOutput, float[] otherLogSumExp) in parts.Skip(1))
            {
                AttentionMerge.Merge(output, logSumExp, otherOutput, otherLogSumExp, headDim);
            }

            // The reference's own log-sum-exp, and this test's over one slice of all keys, must agree too.
            var expected = new float[inputs.Query.Length];
            var expectedLogSumExp = new float[shape.Heads * seqLen];
            ReferenceAttention.Forward(pattern, inputs.Query, inputs.Key, inputs.Value, expected, expectedLogSumExp, shape);
            (float[] wholeOutput, float[] wholeLogSumExp) = Partial(pattern, inputs, 0, seqLen);
            Assert.Equal(expectedLogSumExp.Select(float.IsNegativeInfinity), wholeLogSumExp.Select(float.IsNegativeInfinity));
            Assert.All(expectedLogSumExp.Zip(wholeLogSumExp).Where(pair => float.IsFinite(pair.First)), pair => Assert.Equal(pair.First, pair.Second, 1e-5));
            Assert.All(expected.Zip(wholeOutput), pair => Assert.Equal(pair.First, pair.Second, 1e-5));
            for (int i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - output[i]) <= 1e-5, $"trial {trial}, element {i}: {output[i]} against {expected[i]} ({pattern}, cuts {string.Join(",", cuts)})");
            }

            for (int row = 0; row < logSumExp.Length; row++)
            {
                Assert.True(float.IsNegativeInfinity(expectedLogSumExp[row]) ? float.IsNegativeInfinity(logSumExp[row]) : Math.Abs(expectedLogSumExp[row] - logSumExp[row]) <= 1e-5,
                    $"trial {trial}, row {row}: log-sum-exp {logSumExp[row]} against {expectedLogSumExp[row]}");
            }
        }
    }

    [Fact]
    public void ReferenceLogSumExpIsMinusInfinityForARowThatSeesNothingAndNaNForANaNRow()
    {
        // Causal, one global token at 2: rows 0 and 1 see nothing (the token is after them), row 2 sees keys 0..2,
        // row 3 sees key 2 only. Key 0's value holds NaN, so row 2 is NaN.
        var pattern = new AttentionPattern(causal: true, components: new PatternComponent[] { new GlobalTokensComponent(new[] { 2 }) });
        var shape = new AttentionShape(1, 1, 4);
        float[] query = { 1, 0, 0, 1, 1, 0, 1, 1 }, key = { 1, 1, 0, 1, 1, 0, 5, 5 }, value = { float.NaN, 2, 3, 4, 5, 6, 7, 8 };
        var output = new float[8];
        var logSumExp = new float[4];
        ReferenceAttention.Forward(pattern, query, key, value, output, logSumExp, shape);

        Assert.True(float.IsNegativeInfinity(logSumExp[0]) && float.IsNegativeInfinity(logSumExp[1]));
        Assert.Equal(new float[] { 0, 0, 0, 0 }, output[..4]);
        Assert.True(float.IsNaN(logSumExp[2]), "row 2 sees key 0, whose value holds NaN");
        Assert.Equal(1 / Math.Sqrt(2), logSumExp[3], 1e-6); // One score, q3 · k2 / sqrt(2): its own log-sum-exp.
        Assert.Equal(new float[] { 5, 6 }, output[6..]);
        ArgumentException wrongLength = Assert.Throws<ArgumentException>(() => ReferenceAttention.Forward(pattern, query, key, value, output, new float[3], shape));
        Assert.Equal("logSumExp", wrongLength.ParamName);
    }

    [Fact]
    public void APartWithNoKeysLeavesTheOtherExactlyAndTwoEmptyPartsGiveZeros()
    {
        float[] output = { 0.25f, -1.5f, 3f, 0f, 0f, 0f };
        float[] logSumExp = { 1.75f, float.NegativeInfinity };
        float[] empty = { 0f, 0f, 0f, 0f, 0f, 0f };
        float[] emptyLogSumExp = { float.NegativeInfinity, float.NegativeInfinity };
        AttentionMerge.Merge(output, logSumExp, empty, emptyLogSumExp, headDim: 3);
        Assert.Equal(new[] { 0.25f, -1.5f, 3f, 0f, 0f, 0f }, output);
        Assert.Equal(new[] { 1.75f, float.NegativeInfinity }, logSumExp);
    }

    [Fact]
    public void ANaNPartMakesTheRowNaNAndTheOrderDoesNotMatter()
    {
        float[] a = { 1f, 2f, 5f, 6f }, aLse = { float.NaN, 0.5f };
        float[] b = { 3f, 4f, 7f, 8f }, bLse = { 0.1f, -0.25f };
        var ab = new float[4];
        var abLse = new float[2];
        var ba = new float[4];
        var baLse = new float[2];
        AttentionMerge.Merge(a, aLse, b, bLse, ab, abLse, headDim: 2);
        AttentionMerge.Merge(b, bLse, a, aLse, ba, baLse, headDim: 2);
        Assert.True(float.IsNaN(ab[0]) && float.IsNaN(ab[1]) && float.IsNaN(abLse[0]));
        Assert.Equal(ab[2..], ba[2..]);
        Assert.Equal(abLse[1], baLse[1]);

        // Row 1: weights e^0.5 and e^-0.25 over their sum, and the log of that sum.
        double wa = Math.Exp(0.5), wb = Math.Exp(-0.25);
        Assert.Equal((wa * 5 + wb * 7) / (wa + wb), ab[2], 5);
        Assert.Equal(Math.Log(wa + wb), abLse[1], 5);
    }

    [Fact]
    public void WrongSizesAndShiftedOverlapsNameTheParameter()
    {
        var output = new float[6];
        var logSumExp = new float[2];
        ArgumentException wrongOther = Assert.Throws<ArgumentException>(() => AttentionMerge.Merge(output, logSumExp, new float[5], new float[2], 3));
        Assert.Equal("otherOutput", wrongOther.ParamName);
        Assert.Contains("6", wrongOther.Message);
        ArgumentException wrongRows = Assert.Throws<ArgumentException>(() => AttentionMerge.Merge(output, logSumExp, new float[6], new float[3], 3));
        Assert.Equal("otherLogSumExp", wrongRows.ParamName);

        var shared = new float[9];
        ArgumentException shifted = Assert.Throws<ArgumentException>(() => AttentionMerge.Merge(shared.AsSpan(0, 6), logSumExp, shared.AsSpan(3, 6), new float[2], 3));
        Assert.Equal("otherOutput", shifted.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => AttentionMerge.Merge(output, logSumExp, new float[6], new float[2], 0));
    }

    /// <summary>One slice's result, in double: each row's softmax over its visible keys in [keyFirst, keyEnd).</summary>
    private static (float[] Output, float[] LogSumExp) Partial(AttentionPattern pattern, AttentionCheck.Inputs inputs, int keyFirst, int keyEnd)
    {
        AttentionShape shape = inputs.Shape;
        int d = inputs.HeadDim, n = shape.SeqLen;
        double scale = 1 / Math.Sqrt(d);
        var output = new float[inputs.Query.Length];
        var logSumExp = new float[shape.Heads * n];
        for (int head = 0; head < shape.Heads; head++)
        {
            int kv = shape.KvHeadOf(head);
            for (int query = 0; query < n; query++)
            {
                var scores = new List<(int Key, double Score)>();
                for (int key = keyFirst; key < keyEnd; key++)
                {
                    if (pattern.IsVisible(query, key, head, n))
                    {
                        double dot = 0;
                        for (int e = 0; e < d; e++)
                        {
                            dot += (double)inputs.Query[(head * n + query) * d + e] * inputs.Key[(kv * n + key) * d + e];
                        }

                        scores.Add((key, dot * scale));
                    }
                }

                int row = head * n + query;
                if (scores.Count == 0)
                {
                    logSumExp[row] = float.NegativeInfinity;
                    continue;
                }

                double max = scores.Max(s => s.Score), sum = scores.Sum(s => Math.Exp(s.Score - max));
                logSumExp[row] = (float)(max + Math.Log(sum));
                for (int e = 0; e < d; e++)
                {
                    double value = scores.Sum(s => Math.Exp(s.Score - max) * inputs.Value[(kv * n + s.Key) * d + e]);
                    output[row * d + e] = (float)(value / sum);
                }
            }
        }

        return (output, logSumExp);
    }
}
