using System;

namespace SparseAttention;

/// <summary>
/// Checks the arguments of a generated <c>Decode</c> or <c>Prefill</c> before anything is read or written, so a wrong
/// call throws and leaves the cache as it was: <see cref="ArgumentException"/> naming the parameter and the size it
/// needs, <see cref="InvalidOperationException"/> for a cache in the wrong state, <see cref="NotSupportedException"/>
/// for a pattern a rolling cache cannot serve.
/// </summary>
public static class DecodeArguments
{
    /// <summary>Throws unless <paramref name="query"/> and <paramref name="output"/> are <c>[Heads, HeadDim]</c> for the newest token in <paramref name="cache"/>.</summary>
    public static void ValidateDecode(AttentionPattern pattern, int headDim, KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> output)
    {
        ValidateCache(pattern, headDim, cache);
        if (output.Overlaps(query))
        {
            throw new ArgumentException("output must not share memory with query.", nameof(output));
        }

        ValidateDecodeLengths(cache.KvHeads, headDim, cache.Count, query.Length, output.Length);
    }

    /// <summary>
    /// Throws unless <paramref name="query"/> and <paramref name="output"/> are <c>[Heads, HeadDim]</c> views on the
    /// accelerator of <paramref name="cache"/> for its newest token.
    /// </summary>
    public static void ValidateDecode(AttentionPattern pattern, int headDim, DeviceKvCache cache, ILGPU.ArrayView<float> query, ILGPU.ArrayView<float> output)
    {
        ValidateDeviceCache(pattern, headDim, cache);
        ILGPU.Runtime.Accelerator accelerator = cache.Accelerator;
        AttentionArguments.CheckOnAccelerator(nameof(query), query, accelerator);
        AttentionArguments.CheckOnAccelerator(nameof(output), output, accelerator);
        ValidateDecodeLengths(cache.KvHeads, headDim, cache.Count, query.Length, output.Length);
    }

    /// <summary>Throws unless <paramref name="query"/> and <paramref name="output"/> are <c>[Heads, HeadDim]</c> for the newest token in <paramref name="cache"/>.</summary>
    public static void ValidateDecode(AttentionPattern pattern, int headDim, DeviceKvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> output)
    {
        ValidateDeviceCache(pattern, headDim, cache);
        if (output.Overlaps(query))
        {
            throw new ArgumentException("output must not share memory with query.", nameof(output));
        }

        ValidateDecodeLengths(cache.KvHeads, headDim, cache.Count, query.Length, output.Length);
    }

    private static void ValidateDeviceCache(AttentionPattern pattern, int headDim, DeviceKvCache cache)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(cache);
        if (!ReferenceEquals(cache.Pattern, pattern) || cache.HeadDim != headDim)
        {
            throw new ArgumentException($"cache was created for another kernel (pattern: {cache.Pattern}; HeadDim {cache.HeadDim}); create one with this kernel's CreateCache(device, kvHeads).", nameof(cache));
        }
    }

    private static void ValidateDecodeLengths(int kvHeads, int headDim, long count, long query, long output)
    {
        int tokenFloats = kvHeads * headDim;
        if (query == 0 || query % tokenFloats != 0)
        {
            throw new ArgumentException($"query must hold [Heads, HeadDim] with Heads a multiple of the cache's KvHeads = {kvHeads}: a positive multiple of {kvHeads} x {headDim} = {tokenFloats} floats; it holds {query}.", nameof(query));
        }

        if (output != query)
        {
            throw new ArgumentException($"output must hold [Heads, HeadDim] = {query} floats, as query does; it holds {output}.", nameof(output));
        }

        if (count == 0)
        {
            throw new InvalidOperationException("Decode computes attention for the newest token in the cache, and the cache is empty: Append the token's key and value first (or run the prompt through Prefill, with a KvCache).");
        }
    }

    /// <summary>Throws unless the prompt tensors match <paramref name="shape"/> and <paramref name="cache"/> can take <c>shape.SeqLen</c> more tokens.</summary>
    public static void ValidatePrefill(AttentionPattern pattern, int headDim, KvCache cache, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> output, AttentionShape shape)
    {
        ValidateCache(pattern, headDim, cache);
        if (shape.Batch != 1)
        {
            throw new ArgumentException($"Prefill continues one stream, so shape.Batch must be 1; got {shape.Batch} (use one cache per stream).", nameof(shape));
        }

        AttentionArguments.Validate(headDim, query, key, value, output, shape);
        if (shape.KvHeads != cache.KvHeads)
        {
            throw new ArgumentException($"shape.KvHeads must be the cache's KvHeads = {cache.KvHeads}; got {shape.KvHeads}.", nameof(shape));
        }

        cache.CheckRoomFor(shape.SeqLen);
    }

    /// <summary>
    /// Throws unless <paramref name="cache"/> was made for this kernel (<paramref name="pattern"/>, <paramref name="headDim"/>),
    /// naming cache, or for stream <paramref name="stream"/> of a batch (0 and up) caches and caches[stream] in the message.
    /// </summary>
    private static void ValidateCache(AttentionPattern pattern, int headDim, KvCache cache, int stream = -1)
    {
        string parameter = stream < 0 ? "cache" : "caches";
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(cache, parameter);
        string? problem = pattern.FindStreamingProblem(headDim);
        if (problem != null)
        {
            throw new NotSupportedException("This kernel cannot decode with a rolling KV cache: " + problem + ".");
        }

        if (!ReferenceEquals(cache.Pattern, pattern) || cache.HeadDim != headDim)
        {
            throw new ArgumentException($"{(stream < 0 ? "cache" : $"caches[{stream}]")} was created for another kernel (pattern: {cache.Pattern}; HeadDim {cache.HeadDim}); create one with this kernel's CreateCache(kvHeads).", parameter);
        }
    }

    /// <summary>
    /// Checks a batched decode: one cache per stream, query and output [streams, Heads, HeadDim] alike. Returns the floats
    /// of one stream's rows (Heads x HeadDim); each stream is then checked as a single decode.
    /// </summary>
    /// <exception cref="ArgumentException">No cache, a null cache or one of another kernel, or a length that is not caches.Length x Heads x HeadDim (Heads a multiple of every cache's KvHeads).</exception>
    /// <exception cref="InvalidOperationException">A cache is empty.</exception>
    public static int ValidateStreams(AttentionPattern pattern, int headDim, ReadOnlySpan<float> query, ReadOnlySpan<KvCache> caches, ReadOnlySpan<float> output)
    {
        if (caches.IsEmpty)
        {
            throw new ArgumentException("caches must hold one cache per stream; it is empty.", nameof(caches));
        }

        for (int stream = 0; stream < caches.Length; stream++)
        {
            if (caches[stream] is null)
            {
                throw new ArgumentException($"caches[{stream}] is null; every stream needs its cache.", nameof(caches));
            }
        }

        if (query.IsEmpty || query.Length % ((long)caches.Length * headDim) != 0)
        {
            throw new ArgumentException($"query must hold [streams, Heads, HeadDim] = [{caches.Length}, Heads, {headDim}] floats for some Heads >= 1; it holds {query.Length}.", nameof(query));
        }

        if (output.Length != query.Length)
        {
            throw new ArgumentException($"output must hold as many floats as query ([streams, Heads, HeadDim] = {query.Length}); it holds {output.Length}.", nameof(output));
        }

        if (output.Overlaps(query))
        {
            throw new ArgumentException("output must not share memory with query.", nameof(output));
        }

        int rowFloats = query.Length / caches.Length;
        for (int stream = 0; stream < caches.Length; stream++)
        {
            KvCache cache = caches[stream];
            ValidateCache(pattern, headDim, cache, stream);
            if (rowFloats % (cache.KvHeads * headDim) != 0)
            {
                throw new ArgumentException($"query must hold [streams, Heads, HeadDim] with Heads a multiple of every cache's KvHeads; caches[{stream}] has KvHeads = {cache.KvHeads}, and Heads = {rowFloats / headDim}.", nameof(query));
            }

            if (cache.Count == 0)
            {
                throw new InvalidOperationException($"caches[{stream}] is empty: Decode computes attention for each stream's newest token, so Append it first (or run the stream's prompt through Prefill).");
            }
        }

        return rowFloats;
    }
}
