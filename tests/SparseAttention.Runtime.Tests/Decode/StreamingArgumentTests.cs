using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Decode;

/// <summary>
/// Wrong calls to the cache, Decode and Prefill throw a clear exception naming what is wrong, and leave the cache exactly
/// as it was: same Count, same contents (the next decode gives the same answer as before the bad call).
/// </summary>
public sealed class StreamingArgumentTests
{
    private static readonly KernelUnderTest Kernel = DeclaredKernels.Get(nameof(DilatedCausalWithSinks));

    [Fact]
    public void Decode_on_an_empty_cache_says_to_append_first()
    {
        KvCache cache = Kernel.Streaming!.CreateCache(2);
        var query = new float[4 * Kernel.HeadDim];
        var exception = Assert.Throws<InvalidOperationException>(() => Kernel.Streaming.Decode(query, cache, new float[query.Length], AttentionOptions.Default));
        Assert.Contains("Append", exception.Message);
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void Wrong_calls_throw_and_leave_the_cache_unchanged()
    {
        StreamCase stream = WithShape(new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 60));
        KvCache cache = Kernel.Streaming!.CreateCache(2);
        cache.Append(stream.ChunkKeys(0, 50), stream.ChunkValues(0, 50));
        float[] before = stream.DecodeNewest(cache, AttentionOptions.Default);
        int d = Kernel.HeadDim;
        float[] query = stream.TokenQuery(49);
        float[] token = stream.TokenKeys(50);

        AssertRejected<ArgumentException>("query", () => Kernel.Streaming.Decode(query.AsSpan(0, query.Length - 1), cache, new float[query.Length - 1], AttentionOptions.Default), "multiple of 2 x 32 = 64");
        AssertRejected<ArgumentException>("query", () => Kernel.Streaming.Decode(new float[d], cache, new float[d], AttentionOptions.Default), "multiple of 2 x 32");
        AssertRejected<ArgumentException>("output", () => Kernel.Streaming.Decode(query, cache, new float[query.Length + d], AttentionOptions.Default), "[Heads, HeadDim] = 128");
        AssertRejected<ArgumentException>("output", () => Kernel.Streaming.Decode(query, cache, query, AttentionOptions.Default), "share memory");
        AssertRejected<ArgumentException>("key", () => cache.Append(token.AsSpan(0, d), token.AsSpan(0, d)), "multiple of 2 x 32 = 64");
        AssertRejected<ArgumentException>("key", () => cache.Append(ReadOnlySpan<float>.Empty, ReadOnlySpan<float>.Empty), "positive multiple");
        AssertRejected<ArgumentException>("value", () => cache.Append(token, token.AsSpan(0, d)), "as many floats as key");

        var otherKernelCache = DeclaredKernels.Get(nameof(ManySinks)).Streaming!.CreateCache(2);
        AssertRejected<ArgumentException>("cache", () => Kernel.Streaming.Decode(query, otherKernelCache, new float[query.Length], AttentionOptions.Default), "CreateCache");

        var prompt = new AttentionShape(4, 2, 3);
        float[] q = new float[4 * 3 * d], k = new float[2 * 3 * d], o = new float[4 * 3 * d];
        AssertRejected<ArgumentException>("key", () => Kernel.Streaming.Prefill(q, k.AsSpan(1), k, o, prompt, cache, AttentionOptions.Default), "[KvHeads, SeqLen, HeadDim]");
        AssertRejected<ArgumentException>("shape", () => Kernel.Streaming.Prefill(new float[4 * 3 * d], new float[4 * 3 * d], new float[4 * 3 * d], new float[4 * 3 * d], new AttentionShape(4, 4, 3), cache, AttentionOptions.Default), "cache's KvHeads = 2");
        AssertRejected<ArgumentException>("output", () => Kernel.Streaming.Prefill(q, k, k, q, prompt, cache, AttentionOptions.Default), "share memory");
        Assert.Throws<ArgumentNullException>(() => Kernel.Streaming.Decode(query, null!, new float[query.Length], AttentionOptions.Default));

        Assert.Equal(50, cache.Count);
        Assert.Equal(before, stream.DecodeNewest(cache, AttentionOptions.Default));

        void AssertRejected<TException>(string parameter, Action call, string messagePart)
            where TException : ArgumentException
        {
            var exception = Assert.Throws<TException>(call);
            Assert.Equal(parameter, exception.ParamName);
            Assert.Contains(messagePart, exception.Message);
            Assert.Equal(50, cache.Count);
        }
    }

    [Theory]
    [InlineData(nameof(LongformerLike), "bidirectional")]
    [InlineData(nameof(DenseBidirectional), "bidirectional")]
    [InlineData(nameof(DenseCausal), "SlidingWindow(Size = W)")]
    [InlineData(nameof(SparseTransformerStrided), "[Strided]")]
    [InlineData(nameof(StridedWithMixedDilation), "[Strided]")]
    [InlineData(nameof(BigBirdCausal), "block-sparse attention's global and random blocks reach any distance back")]
    [InlineData(nameof(SparseTransformerFixed), "summary positions stay visible to every later block")]
    [InlineData(nameof(FixedVaryingByHead), "summary positions stay visible to every later block")]
    public void Patterns_a_rolling_cache_cannot_serve_are_refused_with_the_reason(string name, string reason)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        Assert.False(kernel.Pattern.SupportsStreaming);
        Assert.Contains(reason, kernel.Pattern.FindStreamingProblem());
        var exception = Assert.Throws<NotSupportedException>(() => kernel.Streaming!.CreateCache(1));
        Assert.Contains(reason, exception.Message);

        // A cache made for a streamable kernel does not let Decode through either.
        KvCache other = DeclaredKernels.Get(nameof(ManySinks)).Streaming!.CreateCache(1);
        other.Append(new float[16], new float[16]);
        exception = Assert.Throws<NotSupportedException>(() => kernel.Streaming!.Decode(new float[kernel.HeadDim], other, new float[kernel.HeadDim], AttentionOptions.Default));
        Assert.Contains(reason, exception.Message);
    }

    /// <summary>
    /// SlidingWindow(Size = int.MaxValue) is a valid pattern for Forward, but its ring of 2^31 - 1 slots cannot be
    /// allocated even for one KV head. CreateCache used to blame the KV heads ("use fewer KV heads per cache"); the window
    /// is the cause, and it is named, as SPA0011 names it at compile time.
    /// </summary>
    [Fact]
    public void A_window_too_wide_for_any_cache_is_refused_as_the_window_not_the_kv_heads()
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(WindowTooWideForACache));
        Assert.True(kernel.Pattern.SupportsStreaming); // the pattern alone is fine; its size in floats is not
        string? problem = kernel.Pattern.FindStreamingProblem(kernel.HeadDim);
        Assert.NotNull(problem);
        Assert.Contains("make the window (Left x Dilation) smaller", problem);
        var exception = Assert.Throws<NotSupportedException>(() => kernel.Streaming!.CreateCache(1));
        Assert.Contains("2147483647 slots x HeadDim 8", exception.Message);
        Assert.DoesNotContain("KV heads", exception.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-8)]
    public void The_streaming_check_needs_a_positive_head_dim(int headDim)
    {
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => AttentionPattern.SlidingWindow(8).FindStreamingProblem(headDim));
        Assert.Equal("headDim", exception.ParamName);
    }

    [Fact]
    public void A_cache_too_large_only_for_its_kv_heads_names_the_kv_heads()
    {
        // A window of 2^24 keys at HeadDim 8 fits one KV head (2^27 floats), not 64 of them.
        var pattern = AttentionPattern.SlidingWindow(1 << 24);
        Assert.Null(pattern.FindStreamingProblem(8));
        var exception = Assert.Throws<ArgumentException>(() => new KvCache(pattern, kvHeads: 64, headDim: 8));
        Assert.Equal("kvHeads", exception.ParamName);
        Assert.Contains("8589934592 floats", exception.Message);
    }

    [Fact]
    public void A_cache_needs_at_least_one_kv_head()
    {
        var exception = Assert.Throws<ArgumentException>(() => Kernel.Streaming!.CreateCache(0));
        Assert.Equal("kvHeads", exception.ParamName);
    }

    private static StreamCase WithShape(AttentionShape shape)
    {
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(23), shape, Kernel.HeadDim);
        return new StreamCase(Kernel, inputs, AttentionCheck.Reference(Kernel, inputs), Window: 16);
    }
}
