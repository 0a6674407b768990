using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Decode;

/// <summary>
/// Streaming decode against the reference: a stream of about 10 x W tokens (further for a global token mid-stream)
/// fed one token at a time and in random chunks; at every step the decoded rows must equal
/// <see cref="ReferenceAttention"/> on the whole sequence at those rows (causal patterns never look ahead, so the whole
/// sequence's row p is what a stream that has seen p + 1 tokens must produce).
/// </summary>
public sealed class StreamingDecodeTests
{
    /// <summary>
    /// How close a decoded row is to <c>Forward</c>'s row on the whole stream (docs/design.md §3): the same keys through the
    /// same kernels, summed in another order (blocks of slots, merged), so float rounding apart, not bit for bit.
    /// </summary>
    private const double DecodeVersusForward = 1e-5;

    [Theory]
    [MemberData(nameof(DeclaredKernels.StreamableNames), MemberType = typeof(DeclaredKernels))]
    public void Token_by_token_decode_matches_the_reference_and_forward_at_every_step(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(AttentionCheck.StableSeed(name));
        var stream = StreamCase.Create(kernel, random);
        var forward = new StreamCase(kernel, stream.Inputs, AttentionCheck.Run(kernel, stream.Inputs, AttentionOptions.Default), stream.Window);
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        double worstVersusForward = 0;
        for (int position = 0; position < stream.Length; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            float[] output = stream.DecodeNewest(cache, AttentionOptions.Default);
            stream.AssertRow(output, position, "token by token");
            float[] forwardRow = forward.ExpectedRow(position);
            for (int i = 0; i < output.Length; i++)
            {
                worstVersusForward = Math.Max(worstVersusForward, Math.Abs((double)output[i] - forwardRow[i]));
            }
        }

        Assert.Equal(stream.Length, cache.Count);
        Assert.True(worstVersusForward <= DecodeVersusForward, $"{name}: decode differs from Forward by up to {worstVersusForward:E2}.");
    }

    [Theory]
    [InlineData(nameof(DilatedCausalWithSinks), KernelIsa.Vector512)]
    [InlineData(nameof(DilatedCausalWithSinks), KernelIsa.Vector256)]
    [InlineData(nameof(DilatedCausalWithSinks), KernelIsa.Vector128)]
    [InlineData(nameof(DilatedCausalWithSinks), KernelIsa.Scalar)]
    [InlineData(nameof(CausalWindowWithSinks), KernelIsa.Vector512)]
    [InlineData(nameof(CausalWindowWithSinks), KernelIsa.Vector256)]
    [InlineData(nameof(CausalWindowWithSinks), KernelIsa.Vector128)]
    [InlineData(nameof(CausalWindowWithSinks), KernelIsa.Scalar)]
    public void Every_instruction_set_decodes_and_prefills_like_the_reference(string name, KernelIsa isa)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var options = new AttentionOptions { Isa = isa };
        // Grouped-query attention on purpose: three query heads share each of two KV heads.
        var stream = StreamCase.Create(kernel, new Random(17 + (int)isa), heads: (6, 2));
        stream.AssertPrefillHalfThenDecode(options, isa.ToString());
    }

    [Theory]
    [MemberData(nameof(DeclaredKernels.StreamableNames), MemberType = typeof(DeclaredKernels))]
    public void Random_chunks_through_prefill_append_and_decode_match_the_reference(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(~AttentionCheck.StableSeed(name) & 0xFFFF);
        var stream = StreamCase.Create(kernel, random);
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        int position = 0;
        while (position < stream.Length)
        {
            int chunk = Math.Min(stream.Length - position, random.Next(1, 3 * stream.Window + 2));
            switch (random.Next(3))
            {
                case 0:
                    // A prompt chunk: every row computed, the chunk appended.
                    stream.AssertRows(stream.Prefill(cache, position, chunk, AttentionOptions.Default), position, chunk, $"prefill of {chunk} at {position}");
                    break;
                case 1:
                    // Several tokens appended at once, then the newest decoded.
                    cache.Append(stream.ChunkKeys(position, chunk), stream.ChunkValues(position, chunk));
                    stream.AssertRow(stream.DecodeNewest(cache, AttentionOptions.Default), position + chunk - 1, $"append of {chunk} at {position}, then decode");
                    break;
                default:
                    chunk = 1;
                    cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
                    stream.AssertRow(stream.DecodeNewest(cache, AttentionOptions.Default), position, "single token");
                    break;
            }

            position += chunk;
            Assert.Equal(position, cache.Count);
        }
    }

    [Theory]
    [InlineData(KernelIsa.Auto)]
    [InlineData(KernelIsa.Scalar)]
    public void Prefill_without_a_window_reads_global_tokens_older_than_the_chunk_from_their_pinned_slots(KernelIsa isa)
    {
        // GlobalsOnly's ring is 3 slots (globals 1 and 2), so prefill runs chunks of 3 and from the third chunk on every
        // row reads tokens 1 and 2 from pinned slots; its rows have no window segment at all.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(GlobalsOnly));
        var stream = StreamCase.Create(kernel, new Random(29), length: 20, heads: (4, 2));
        KvCache cache = kernel.Streaming!.CreateCache(2);
        stream.AssertRows(stream.Prefill(cache, 0, 20, new AttentionOptions { Isa = isa }), 0, 20, $"{isa} prefill without a window");
    }

    [Fact]
    public void A_long_prompt_runs_in_chunks_of_the_ring_and_matches_forward()
    {
        // 7.5 rings' worth in one call: several chunks, the last one partial.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(WindowOfOneKeyTile));
        var stream = StreamCase.Create(kernel, new Random(3), length: 480);
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        Assert.Equal(64, cache.RingSlots);
        float[] prefilled = stream.Prefill(cache, 0, stream.Length, AttentionOptions.Default);
        var forward = new float[prefilled.Length];
        kernel.Forward(stream.Inputs.Query, stream.Inputs.Key, stream.Inputs.Value, forward, stream.Shape, AttentionOptions.Default);
        AttentionCheck.AssertClose(forward, prefilled, stream.Shape, kernel.HeadDim, "prefill vs Forward");
        stream.AssertRows(prefilled, 0, stream.Length, "prefill vs reference");
    }

    [Theory]
    [MemberData(nameof(DeclaredKernels.StreamableNames), MemberType = typeof(DeclaredKernels))]
    public void Cache_memory_is_fixed_at_creation_and_does_not_grow_with_the_stream(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var stream = StreamCase.Create(kernel, new Random(5));
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        AttentionPattern pattern = kernel.Pattern;
        long reach = pattern.HasWindow ? (long)pattern.WindowLeft * pattern.MaxDilation : 0;
        int lastGlobal = pattern.GlobalTokens.Count > 0 ? pattern.GlobalTokens[^1] : -1;
        Assert.Equal(Math.Max(reach + 1, lastGlobal + 1), cache.RingSlots);
        Assert.Equal(pattern.GlobalTokens.Count, cache.PinnedSlots);
        long expectedBytes = 2L * stream.Shape.KvHeads * (cache.RingSlots + cache.PinnedSlots) * kernel.HeadDim * sizeof(float);
        Assert.Equal(expectedBytes, cache.MemoryBytes);

        var bytesSeen = new List<long>();
        for (int position = 0; position < stream.Length; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            bytesSeen.Add(cache.MemoryBytes);
        }

        Assert.All(bytesSeen, bytes => Assert.Equal(expectedBytes, bytes));
        Assert.Equal(cache.RingSlots + cache.PinnedSlots, cache.Capacity);
    }

    [Fact]
    public void The_cache_holds_the_ring_and_the_pinned_global_tokens_and_nothing_older()
    {
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(DilatedCausalWithSinks));
        var stream = StreamCase.Create(kernel, new Random(9), length: 200);
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        cache.Append(stream.ChunkKeys(0, 200), stream.ChunkValues(0, 200));
        int d = kernel.HeadDim;
        var key = new float[d];
        var value = new float[d];
        for (int position = 0; position < 200; position++)
        {
            bool expected = position >= 200 - cache.RingSlots || kernel.Pattern.IsGlobal(position);
            Assert.Equal(expected, cache.Holds(position));
            for (int kvHead = 0; kvHead < stream.Shape.KvHeads; kvHead++)
            {
                Assert.Equal(expected, cache.TryRead(position, kvHead, key, value));
                if (expected)
                {
                    int offset = (kvHead * stream.Length + position) * d;
                    Assert.Equal(stream.Inputs.Key.AsSpan(offset, d).ToArray(), key);
                    Assert.Equal(stream.Inputs.Value.AsSpan(offset, d).ToArray(), value);
                }
            }
        }

        Assert.False(cache.Holds(200));
        Assert.False(cache.Holds(-1));
        cache.Clear();
        Assert.Equal(0, cache.Count);
        Assert.False(cache.Holds(0));
    }

    [Theory]
    [InlineData(nameof(DilatedCausalWithSinks))]
    [InlineData(nameof(ManySinks))]
    public void Keys_the_newest_token_cannot_see_have_no_influence_even_as_NaN_or_infinity(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var stream = StreamCase.Create(kernel, new Random(11));
        int last = stream.Length - 1;
        AttentionShape shape = stream.Shape;
        int d = kernel.HeadDim;
        float[] poisons = { float.NaN, float.PositiveInfinity, float.NegativeInfinity };
        for (int head = 0; head < shape.Heads; head++)
        {
            // Poison, in a copy, every key and value the last row of this head cannot see (in its KV head).
            float[] key = (float[])stream.Inputs.Key.Clone();
            float[] value = (float[])stream.Inputs.Value.Clone();
            int kvHead = shape.KvHeadOf(head);
            for (int j = 0; j < stream.Length; j++)
            {
                if (!kernel.Pattern.IsVisible(last, j, head))
                {
                    Array.Fill(key, poisons[j % 3], (kvHead * stream.Length + j) * d, d);
                    Array.Fill(value, poisons[(j + 1) % 3], (kvHead * stream.Length + j) * d, d);
                }
            }

            var poisoned = stream with { Inputs = stream.Inputs with { Key = key, Value = value } };
            KvCache cache = kernel.Streaming!.CreateCache(shape.KvHeads);
            cache.Append(poisoned.ChunkKeys(0, stream.Length), poisoned.ChunkValues(0, stream.Length));
            float[] output = poisoned.DecodeNewest(cache, AttentionOptions.Default);
            Assert.Equal(stream.ExpectedRow(last).AsSpan(head * d, d).ToArray(), output.AsSpan(head * d, d).ToArray(), new ToleranceComparer());
        }
    }

    [Fact]
    public void Steady_state_append_and_decode_allocate_nothing()
    {
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        var stream = StreamCase.Create(kernel, new Random(13), length: 64);
        KvCache cache = kernel.Streaming!.CreateCache(stream.Shape.KvHeads);
        var options = new AttentionOptions { MaxDegreeOfParallelism = 1 };
        float[] keys = stream.TokenKeys(0), values = stream.TokenValues(0), query = stream.TokenQuery(0);
        var output = new float[query.Length];
        for (int warmUp = 0; warmUp < 50; warmUp++)
        {
            cache.Append(keys, values);
            kernel.Streaming.Decode(query, cache, output, options);
        }

        Assert.Equal(0, AllocationCheck.FewestBytesOverBatches(() =>
        {
            for (int step = 0; step < 200; step++)
            {
                cache.Append(keys, values);
                kernel.Streaming.Decode(query, cache, output, options);
            }
        }));
    }

    /// <summary>A seed from the kernel's name that is the same in every run (string hashes are randomised per process).</summary>

    private sealed class ToleranceComparer : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => Math.Abs((double)x - y) <= AttentionCheck.Tolerance;

        public int GetHashCode(float obj) => 0;
    }
}
