using System;

namespace SparseAttention;

/// <summary>
/// Checks the arguments of an attention call before any kernel touches memory. Every generated
/// <c>Forward</c> and <see cref="ReferenceAttention"/> call it, so a wrong call fails the same way
/// everywhere: an <see cref="ArgumentException"/> naming the parameter, with expected and actual sizes.
/// </summary>
public static class AttentionArguments
{
    /// <summary>Throws when the spans do not match <paramref name="shape"/> and <paramref name="headDim"/>.</summary>
    public static void Validate(int headDim, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> output, AttentionShape shape)
    {
        ValidateShape(shape);
        long queryLength = (long)shape.Heads * shape.SeqLen * headDim;
        long keyLength = (long)shape.KvHeads * shape.SeqLen * headDim;
        CheckLength(nameof(query), query.Length, queryLength, "[Heads, SeqLen, HeadDim]", shape.Heads, shape.SeqLen, headDim);
        CheckLength(nameof(key), key.Length, keyLength, "[KvHeads, SeqLen, HeadDim]", shape.KvHeads, shape.SeqLen, headDim);
        CheckLength(nameof(value), value.Length, keyLength, "[KvHeads, SeqLen, HeadDim]", shape.KvHeads, shape.SeqLen, headDim);
        CheckLength(nameof(output), output.Length, queryLength, "[Heads, SeqLen, HeadDim]", shape.Heads, shape.SeqLen, headDim);
        if (output.Overlaps(query) || output.Overlaps(key) || output.Overlaps(value))
        {
            throw new ArgumentException("output must not share memory with query, key or value: the kernel writes output while it still reads them.", nameof(output));
        }
    }

    /// <summary>Throws when the shape itself is impossible.</summary>
    public static void ValidateShape(AttentionShape shape)
    {
        if (shape.Heads < 1 || shape.KvHeads < 1 || shape.SeqLen < 1)
        {
            throw new ArgumentException($"Heads, KvHeads and SeqLen must all be at least 1; got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}, SeqLen = {shape.SeqLen}.", nameof(shape));
        }

        if (shape.Heads % shape.KvHeads != 0)
        {
            throw new ArgumentException($"Heads must be a multiple of KvHeads (grouped-query attention shares each KV head among Heads / KvHeads query heads); got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}.", nameof(shape));
        }
    }

    private static void CheckLength(string parameter, int actual, long expected, string layout, int rows, int seqLen, int headDim)
    {
        if (expected > int.MaxValue)
        {
            throw new ArgumentException($"{parameter} would need {expected} floats ({layout} = [{rows}, {seqLen}, {headDim}]), more than one span can hold.", "shape");
        }

        if (actual != expected)
        {
            throw new ArgumentException($"{parameter} must hold {layout} = [{rows}, {seqLen}, {headDim}] = {expected} floats, but it holds {actual}.", parameter);
        }
    }
}
