namespace SparseAttention.Runtime.Tests;

/// <summary>The oracle itself, on cases small enough to work out by hand.</summary>
public class ReferenceAttentionTests
{
    [Fact]
    public void TwoTokensCausalByHand()
    {
        // HeadDim 1, scale 1: query 1 sees keys 0 and 1 with scores 1*1 and 1*2.
        float[] query = { 5f, 1f }, key = { 1f, 2f }, value = { 10f, 20f }, output = new float[2];
        ReferenceAttention.Forward(AttentionPattern.Dense(), query, key, value, output, new AttentionShape(1, 1, 2), new AttentionOptions { Scale = 1f });
        Assert.Equal(10f, output[0]);
        double weight0 = Math.Exp(1), weight1 = Math.Exp(2);
        Assert.Equal((10 * weight0 + 20 * weight1) / (weight0 + weight1), output[1], 5);
    }

    [Fact]
    public void GroupedQueryHeadsReadTheirSharedKvHead()
    {
        // Four query heads share two KV heads: heads 0,1 read KV 0; heads 2,3 read KV 1.
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 1);
        float[] query = new float[4], key = new float[2], value = { 3f, 7f }, output = new float[4];
        ReferenceAttention.Forward(AttentionPattern.Dense(), query, key, value, output, shape);
        Assert.Equal(new[] { 3f, 3f, 7f, 7f }, output);
    }

    [Fact]
    public void RowThatSeesNothingIsZero()
    {
        var pattern = new AttentionPattern(causal: true, globalTokens: new[] { 3 });
        float[] query = { 1f, 1f, 1f, 1f }, key = { 1f, 1f, 1f, 1f }, value = { 9f, 9f, 9f, 9f }, output = new float[4];
        ReferenceAttention.Forward(pattern, query, key, value, output, new AttentionShape(1, 1, 4));
        Assert.Equal(new[] { 0f, 0f, 0f, 9f }, output);
    }

    [Fact]
    public void MaxAbsoluteErrorFindsADifferenceInASampledRowOnly()
    {
        var random = new Random(4);
        var shape = new AttentionShape(2, 1, 20);
        AttentionPattern pattern = AttentionPattern.SlidingWindow(5);
        float[] query = Enumerable.Range(0, 2 * 20 * 8).Select(_ => (float)random.NextDouble()).ToArray();
        float[] key = query.Take(20 * 8).ToArray(), value = query.Skip(20 * 8).ToArray();
        var output = new float[query.Length];
        ReferenceAttention.Forward(pattern, query, key, value, output, shape);
        (int, int)[] rows = { (0, 3), (1, 19) };
        Assert.True(ReferenceAttention.MaxAbsoluteError(pattern, query, key, value, output, shape, rows) < 1e-6);

        output[(1 * 20 + 19) * 8 + 2] += 0.5f;
        Assert.Equal(0.5, ReferenceAttention.MaxAbsoluteError(pattern, query, key, value, output, shape, rows), 5);
        output[(0 * 20 + 7) * 8] += 9f;
        Assert.Equal(0.5, ReferenceAttention.MaxAbsoluteError(pattern, query, key, value, output, shape, rows), 5);
        Assert.Equal("actual", Assert.Throws<ArgumentException>(() => ReferenceAttention.MaxAbsoluteError(pattern, query, key, value, output.AsSpan(1), shape, rows)).ParamName);
    }
}
