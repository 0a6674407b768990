using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Decode;

/// <summary>
/// Half and BFloat16 KV caches and batched decode (issue 15). A narrow cache rounds what is appended, so the streams'
/// inputs are made exactly representable in the type first: the reference then sees what decode reads, and the kernels'
/// usual tolerance applies.
/// </summary>
public class NarrowCacheAndBatchedDecodeTests
{
    public static TheoryData<string, CacheElement> KernelsAndElements()
    {
        var data = new TheoryData<string, CacheElement>();
        foreach (string name in new[] { nameof(CausalWindowWithSinks), nameof(CausalCutsRightSide), nameof(WindowWiderThanTile) })
        {
            data.Add(name, CacheElement.Half);
            data.Add(name, CacheElement.BFloat16);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndElements))]
    public void ANarrowCacheDecodesLikeTheReferenceOnEveryIsa(string name, CacheElement element)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        Func<float, float> round = element == CacheElement.Half ? x => (float)(Half)x : x => (float)(BFloat16)x;
        var stream = StreamCase.Create(kernel, new Random(name.Length + (int)element), round: round);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            stream.AssertPrefillHalfThenDecode(new AttentionOptions { Isa = isa }, $"{element} cache, {isa}", element);
        }
    }

    [Fact]
    public void ANarrowCacheHoldsHalfTheBytesAndReadsBackTheRoundedValues()
    {
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        var single = new KvCache(kernel.Pattern, 2, kernel.HeadDim);
        var half = new KvCache(kernel.Pattern, 2, kernel.HeadDim, CacheElement.Half);
        var bf16 = new KvCache(kernel.Pattern, 2, kernel.HeadDim, CacheElement.BFloat16);
        Assert.Equal(single.MemoryBytes, 2 * half.MemoryBytes);
        Assert.Equal(single.MemoryBytes, 2 * bf16.MemoryBytes);
        float[] token = AttentionCheck.RandomArray(new Random(2), 2 * kernel.HeadDim, 3f);
        half.Append(token, token);
        bf16.Append(token, token);
        var key = new float[kernel.HeadDim];
        var value = new float[kernel.HeadDim];
        Assert.True(half.TryRead(0, 1, key, value));
        Assert.Equal(token.Skip(kernel.HeadDim).Select(x => (float)(Half)x), key);
        Assert.True(bf16.TryRead(0, 1, key, value));
        Assert.Equal(token.Skip(kernel.HeadDim).Select(x => (float)(BFloat16)x), value);
        Assert.Equal("element", Assert.Throws<ArgumentException>(() => new KvCache(kernel.Pattern, 2, kernel.HeadDim, (CacheElement)7)).ParamName);
    }

    [Fact]
    public unsafe void EveryCacheTensorStartsOnACacheLine()
    {
        // Decode reads rows a line at a time; a tensor off a line boundary makes every 512-bit load straddle two lines.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        for (int i = 0; i < 8; i++)
        {
            var single = new KvCache(kernel.Pattern, 1 + i % 3, kernel.HeadDim);
            var half = new KvCache(kernel.Pattern, 1 + i % 3, kernel.HeadDim, CacheElement.Half);
            Assert.Equal(0, (long)single.Keys % 64);
            Assert.Equal(0, (long)single.Values % 64);
            Assert.Equal(0, (long)half.NarrowKeys % 64);
            Assert.Equal(0, (long)half.NarrowValues % 64);
        }
    }

    [Fact]
    public void BatchedDecodeEqualsDecodingEachStreamAlone()
    {
        // Three streams at different positions (one past its window, one with a global token in its ring), one fp32 and two narrow caches.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        int d = kernel.HeadDim, heads = 4, kvHeads = 2;
        var random = new Random(11);
        int[] lengths = { 5, 40, 700 };
        CacheElement[] elements = { CacheElement.Single, CacheElement.Half, CacheElement.BFloat16 };
        var caches = new KvCache[lengths.Length];
        for (int stream = 0; stream < lengths.Length; stream++)
        {
            caches[stream] = new KvCache(kernel.Pattern, kvHeads, d, elements[stream]);
            for (int token = 0; token < lengths[stream]; token++)
            {
                float[] kv = AttentionCheck.RandomArray(random, kvHeads * d, 1.5f);
                caches[stream].Append(kv, kv.Reverse().ToArray());
            }
        }

        float[] query = AttentionCheck.RandomArray(random, lengths.Length * heads * d, 1.5f);
        var batched = new float[query.Length];
        CausalWindowWithSinks.Decode(query, caches, batched);
        for (int stream = 0; stream < lengths.Length; stream++)
        {
            var alone = new float[heads * d];
            CausalWindowWithSinks.Decode(query.AsSpan(stream * heads * d, heads * d), caches[stream], alone);
            Assert.Equal(alone, batched.AsSpan(stream * heads * d, heads * d).ToArray());
        }

        // One parallel run over every stream's items; a warm call allocates nothing on the calling thread.
        long before = GC.GetAllocatedBytesForCurrentThread();
        CausalWindowWithSinks.Decode(query, caches, batched);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        Assert.Equal("caches", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, Array.Empty<KvCache>(), batched)).ParamName);
        Assert.Equal("caches", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, new[] { caches[0], null!, caches[2] }, batched)).ParamName);
        Assert.Equal("query", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query.AsSpan(1), caches, batched.AsSpan(1))).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, caches, batched.AsSpan(1))).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, caches, query)).ParamName);
        KvCache foreign = WindowWithLearnedSinks.CreateCache(kvHeads);
        ArgumentException wrongKernel = Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, new[] { caches[0], foreign, caches[2] }, batched));
        Assert.Equal("caches", wrongKernel.ParamName);
        Assert.Contains("caches[1] was created for another kernel", wrongKernel.Message);
        KvCache threeKvHeads = new(CausalWindowWithSinks.Pattern, 3, d);
        threeKvHeads.Append(new float[3 * d], new float[3 * d]);
        Assert.Equal("query", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, new[] { caches[0], threeKvHeads, caches[2] }, batched)).ParamName);
        Assert.Contains("caches[2] is empty", Assert.Throws<InvalidOperationException>(() => CausalWindowWithSinks.Decode(query, new[] { caches[0], caches[1], CausalWindowWithSinks.CreateCache(kvHeads) }, batched)).Message);
        float[] untouched = batched.ToArray();
        Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Decode(query, new[] { caches[0], foreign, caches[2] }, batched));
        Assert.Equal(untouched, batched); // a wrong call writes nothing
    }
}
