namespace SparseAttention.Benchmarks;

/// <summary>
/// Decode as cases of the alternating-round comparisons (`--versus decode-64k-half:decode-64k-single`, `--before-after`):
/// Mistral's attention shape (32 query heads over 8 KV heads, HeadDim 128, window 4096). A timed call appends one token
/// and decodes it in every layer of a 32-layer stack whose caches sit at position 64K (1 GiB of fp32 keys and values, so
/// decode reads them from memory, as in inference), or decodes one step of 16 streams at 8K positions each. The caches
/// are filled once per process and element type and shared by every timer; a call counts the pairs of all its layers
/// (or streams).
/// </summary>
public static class DecodeCases
{
    public const int Heads = 32, KvHeads = 8, HeadDim = Window4096HeadDim128.HeadDim, Window = 4096, Layers = 32, Streams = 16;

    private static readonly Dictionary<(CacheElement, int, long), KvCache[]> s_caches = new();

    public static readonly StandardCase[] All =
    {
        Stack("decode-64k-single", CacheElement.Single),
        Stack("decode-64k-half", CacheElement.Half),
        Stack("decode-64k-bf16", CacheElement.BFloat16),
        InCache("decode-l2-single", CacheElement.Single),
        InCache("decode-l2-half", CacheElement.Half),
        InCache("decode-l2-bf16", CacheElement.BFloat16),
        BatchedStreams("decode-16x8k-single", CacheElement.Single),
        BatchedStreams("decode-16x8k-half", CacheElement.Half),
    };

    /// <summary>Bytes of keys and values one timed call reads.</summary>
    public static long BytesPerCall(string name) =>
        (long)(name.StartsWith("decode-16x", StringComparison.Ordinal) ? Streams : Layers) * 2 * KvHeads * Window * HeadDim * (name.EndsWith("-single", StringComparison.Ordinal) ? 4 : 2);

    private static StandardCase Stack(string name, CacheElement element) =>
        new(name, Window, Window4096HeadDim128.Pattern, NotForward, null, HeadDim, (inputs, _, options) =>
        {
            KvCache[] layers = Caches(element, Layers, 65536);
            float[] query = inputs.Query.AsSpan(0, Heads * HeadDim).ToArray();
            var output = new float[query.Length];
            int token = 0;
            return () =>
            {
                int offset = token++ % Window * KvHeads * HeadDim;
                foreach (KvCache cache in layers)
                {
                    cache.Append(inputs.Key.AsSpan(offset, KvHeads * HeadDim), inputs.Value.AsSpan(offset, KvHeads * HeadDim));
                    Window4096HeadDim128.Decode(query, cache, output, options);
                }
            };
        }, PairsPerCall: (long)Layers * Heads * Window);

    /// <summary>One layer with a 256-key window (1 MiB of fp32 keys and values): the cache stays in L2, so this is decode's arithmetic speed.</summary>
    private static StandardCase InCache(string name, CacheElement element) =>
        new(name, 256, Window256HeadDim128.Pattern, NotForward, null, HeadDim, (inputs, _, options) =>
        {
            var cache = Window256HeadDim128.CreateCache(KvHeads, element);
            cache.Append(inputs.Key.AsSpan(0, 256 * KvHeads * HeadDim), inputs.Value.AsSpan(0, 256 * KvHeads * HeadDim));
            float[] query = inputs.Query.AsSpan(0, Heads * HeadDim).ToArray();
            var output = new float[query.Length];
            return () =>
            {
                for (int repeat = 0; repeat < 64; repeat++)
                {
                    Window256HeadDim128.Decode(query, cache, output, options);
                }
            };
        }, PairsPerCall: 64L * Heads * 256);

    private static StandardCase BatchedStreams(string name, CacheElement element) =>
        new(name, Window, Window4096HeadDim128.Pattern, NotForward, null, HeadDim, (inputs, _, options) =>
        {
            KvCache[] streams = Caches(element, Streams, 8192);
            float[] queries = Enumerable.Range(0, Streams).SelectMany(_ => inputs.Query.AsSpan(0, Heads * HeadDim).ToArray()).ToArray();
            var outputs = new float[queries.Length];
            return () => Window4096HeadDim128.Decode(queries, streams, outputs, options);
        }, PairsPerCall: (long)Streams * Heads * Window);

    /// <summary>The decode cases' inputs: a window of keys and values enough for <see cref="CaseInputs"/>'s shape.</summary>
    public static AttentionShape InputShape => new(Heads, KvHeads, Window);

    private static KvCache[] Caches(CacheElement element, int count, long position)
    {
        lock (s_caches)
        {
            if (!s_caches.TryGetValue((element, count, position), out KvCache[]? caches))
            {
                var inputs = new CaseInputs(InputShape, HeadDim, seed: 7);
                caches = Enumerable.Range(0, count).Select(_ => Window4096HeadDim128.CreateCache(KvHeads, element)).ToArray();
                foreach (KvCache cache in caches)
                {
                    cache.Clear();
                    while (cache.Count < position)
                    {
                        int tokens = (int)Math.Min(Window, position - cache.Count);
                        cache.Append(inputs.Key.AsSpan(0, tokens * KvHeads * HeadDim), inputs.Value.AsSpan(0, tokens * KvHeads * HeadDim));
                    }
                }

                s_caches[(element, count, position)] = caches;
            }

            return caches;
        }
    }

    private static void NotForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options) =>
        throw new InvalidOperationException("A decode case runs through its Prepare step.");
}
