using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Decode;

/// <summary>
/// One random stream for a kernel: the whole sequence's inputs in <c>Forward</c>'s layout, the reference output on the
/// whole sequence, and the per-token slices a decoder feeds (keys and values <c>[KvHeads, HeadDim]</c> per token, queries
/// <c>[Heads, HeadDim]</c>).
/// </summary>
internal sealed record StreamCase(KernelUnderTest Kernel, AttentionCheck.Inputs Inputs, float[] Expected, int Window)
{
    public AttentionShape Shape => Inputs.Shape;

    public int Length => Inputs.Shape.SeqLen;

    private int HeadDim => Kernel.HeadDim;

    /// <summary>
    /// A stream of 10 x W tokens, W being how far the window reaches plus the token itself, and long enough to pass
    /// the last global token by two windows, so global rows and pinned columns are exercised.
    /// </summary>
    /// <param name="round">Applied to every input (e.g. rounding to Half for a narrow cache), before the reference is computed.</param>
    public static StreamCase Create(KernelUnderTest kernel, Random random, int? length = null, (int Heads, int KvHeads)? heads = null, Func<float, float>? round = null)
    {
        AttentionPattern pattern = kernel.Pattern;
        int window = pattern.HasWindow ? pattern.WindowLeft * pattern.MaxDilation + 1 : 1;
        int lastGlobal = pattern.GlobalTokens.Count > 0 ? pattern.GlobalTokens[^1] : -1;
        int seqLen = length ?? Math.Max(10 * window, lastGlobal + 2 * window + 1);
        AttentionShape shape = heads is { } fixedHeads ? new AttentionShape(fixedHeads.Heads, fixedHeads.KvHeads, seqLen) : AttentionCheck.RandomShape(random, seqLen);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        if (round is not null)
        {
            inputs = inputs with { Query = inputs.Query.Select(round).ToArray(), Key = inputs.Key.Select(round).ToArray(), Value = inputs.Value.Select(round).ToArray() };
        }

        return new StreamCase(kernel, inputs, AttentionCheck.Reference(kernel, inputs), window);
    }

    public float[] TokenKeys(int position) => ChunkKeys(position, 1);

    public float[] TokenValues(int position) => ChunkValues(position, 1);

    /// <summary>Keys of <paramref name="count"/> tokens from <paramref name="first"/>, token by token: <c>[count, KvHeads, HeadDim]</c>.</summary>
    public float[] ChunkKeys(int first, int count) => TokenMajor(Inputs.Key, Shape.KvHeads, first, count);

    public float[] ChunkValues(int first, int count) => TokenMajor(Inputs.Value, Shape.KvHeads, first, count);

    /// <summary>The query of one token for every head: <c>[Heads, HeadDim]</c>.</summary>
    public float[] TokenQuery(int position) => TokenMajor(Inputs.Query, Shape.Heads, position, 1);

    /// <summary>The reference output of one token for every head: <c>[Heads, HeadDim]</c>.</summary>
    public float[] ExpectedRow(int position) => TokenMajor(Expected, Shape.Heads, position, 1);

    /// <summary>Decodes the newest token in <paramref name="cache"/> with its query from this stream.</summary>
    public float[] DecodeNewest(KvCache cache, AttentionOptions options)
    {
        float[] query = TokenQuery((int)cache.Count - 1);
        var output = new float[query.Length];
        Array.Fill(output, float.NaN);
        Kernel.Streaming!.Decode(query, cache, output, options);
        return output;
    }

    /// <summary>Prefills tokens <paramref name="first"/> .. first + count - 1 and returns their output, <c>[Heads, count, HeadDim]</c>.</summary>
    public float[] Prefill(KvCache cache, int first, int count, AttentionOptions options)
    {
        var shape = Shape with { SeqLen = count };
        float[] query = Slice(Inputs.Query, Shape.Heads, first, count);
        var output = new float[query.Length];
        Array.Fill(output, float.NaN);
        Kernel.Streaming!.Prefill(query, Slice(Inputs.Key, Shape.KvHeads, first, count), Slice(Inputs.Value, Shape.KvHeads, first, count), output, shape, cache, options);
        return output;
    }

    /// <summary>
    /// The first half of the stream as one prompt through <c>Prefill</c> (in chunks of the ring when longer), then every
    /// later token appended and decoded alone, each checked against the reference.
    /// </summary>
    public void AssertPrefillHalfThenDecode(AttentionOptions options, string context, CacheElement element = CacheElement.Single)
    {
        KvCache cache = element == CacheElement.Single ? Kernel.Streaming!.CreateCache(Shape.KvHeads) : new KvCache(Kernel.Pattern, Shape.KvHeads, HeadDim, element);
        int prompt = Length / 2;
        AssertRows(Prefill(cache, 0, prompt, options), 0, prompt, $"{context} prefill");
        for (int position = prompt; position < Length; position++)
        {
            cache.Append(TokenKeys(position), TokenValues(position));
            AssertRow(DecodeNewest(cache, options), position, $"{context} decode");
        }
    }

    public void AssertRow(float[] actual, int position, string context) =>
        AttentionCheck.AssertClose(ExpectedRow(position), actual, Shape with { SeqLen = 1 }, HeadDim, $"{Kernel.Name} {Shape} {context}, position {position}");

    /// <summary>Checks a prefill output (<c>[Heads, count, HeadDim]</c>) against the reference rows first .. first + count - 1.</summary>
    public void AssertRows(float[] actual, int first, int count, string context) =>
        AttentionCheck.AssertClose(Slice(Expected, Shape.Heads, first, count), actual, Shape with { SeqLen = count }, HeadDim, $"{Kernel.Name} {Shape} {context}, rows from {first}");

    /// <summary>Rows first .. first + count - 1 of a <c>[heads, SeqLen, HeadDim]</c> tensor, in the same layout.</summary>
    private float[] Slice(float[] tensor, int heads, int first, int count)
    {
        var slice = new float[heads * count * HeadDim];
        for (int head = 0; head < heads; head++)
        {
            tensor.AsSpan((head * Length + first) * HeadDim, count * HeadDim).CopyTo(slice.AsSpan(head * count * HeadDim));
        }

        return slice;
    }

    /// <summary>Rows first .. first + count - 1 of a <c>[heads, SeqLen, HeadDim]</c> tensor as <c>[count, heads, HeadDim]</c>.</summary>
    private float[] TokenMajor(float[] tensor, int heads, int first, int count) => TokenMajor(tensor, heads, Length, HeadDim, first, count);

    /// <summary>
    /// Rows first .. first + count - 1 of a <c>[heads, length, headDim]</c> tensor as <c>[count, heads, headDim]</c>: what
    /// a decoder appends (keys, values) or decodes (queries) for those tokens.
    /// </summary>
    public static float[] TokenMajor(float[] tensor, int heads, int length, int headDim, int first, int count)
    {
        var tokens = new float[count * heads * headDim];
        for (int token = 0; token < count; token++)
        {
            for (int head = 0; head < heads; head++)
            {
                tensor.AsSpan((head * length + first + token) * headDim, headDim).CopyTo(tokens.AsSpan((token * heads + head) * headDim));
            }
        }

        return tokens;
    }
}
