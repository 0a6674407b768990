using System;

namespace SparseAttention;

/// <summary>
/// The slow, obviously correct attention everything is tested against: for every (head, query) it tests
/// every key with <see cref="AttentionPattern.IsVisible"/>, and accumulates in double precision. Keys a query
/// cannot see are never read, so NaN or Inf stored there cannot reach its output. A query that sees no key
/// gets a row of zeros.
/// </summary>
public static class ReferenceAttention
{
    /// <summary>
    /// Computes attention with the same arguments and layout as a generated <c>Forward</c>. HeadDim is
    /// inferred from the query length (<c>query.Length / (Heads * SeqLen)</c>).
    /// </summary>
    public static void Forward(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        int headDim = InferHeadDim(query, shape);
        AttentionArguments.Validate(headDim, query, key, value, output, shape);
        var row = new double[headDim];
        for (int head = 0; head < shape.Heads; head++)
        {
            for (int position = 0; position < shape.SeqLen; position++)
            {
                ComputeRow(pattern, query, key, value, shape, head, position, row, options);
                Span<float> destination = output.Slice((head * shape.SeqLen + position) * headDim, headDim);
                for (int d = 0; d < headDim; d++)
                {
                    destination[d] = (float)row[d];
                }
            }
        }
    }

    /// <summary>
    /// Computes one output row (query head <paramref name="head"/>, position <paramref name="position"/>) into
    /// <paramref name="destination"/>, which needs HeadDim entries. Lets a caller check a sample of rows of a
    /// large call without paying for all n² pairs.
    /// </summary>
    public static void ComputeRow(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, AttentionShape shape, int head, int position, Span<double> destination, AttentionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        AttentionArguments.ValidateShape(shape);
        int headDim = InferHeadDim(query, shape);
        if (destination.Length < headDim)
        {
            throw new ArgumentException($"destination needs HeadDim = {headDim} entries but holds {destination.Length}.", nameof(destination));
        }

        double scale = (options ?? AttentionOptions.Default).ResolveScale(headDim);
        int kvHead = shape.KvHeadOf(head);
        ReadOnlySpan<float> q = query.Slice((head * shape.SeqLen + position) * headDim, headDim);

        // Pass 1: the largest score, so the exponentials cannot overflow.
        double max = double.NegativeInfinity;
        for (int j = 0; j < shape.SeqLen; j++)
        {
            if (pattern.IsVisible(position, j, head))
            {
                max = Math.Max(max, Score(q, key.Slice((kvHead * shape.SeqLen + j) * headDim, headDim), scale));
            }
        }

        destination.Slice(0, headDim).Clear();
        if (double.IsNegativeInfinity(max))
        {
            return; // No visible key: a row of zeros.
        }

        // Pass 2: softmax-weighted sum of the visible values.
        double sum = 0;
        for (int j = 0; j < shape.SeqLen; j++)
        {
            if (!pattern.IsVisible(position, j, head))
            {
                continue;
            }

            int offset = (kvHead * shape.SeqLen + j) * headDim;
            double weight = Math.Exp(Score(q, key.Slice(offset, headDim), scale) - max);
            sum += weight;
            ReadOnlySpan<float> v = value.Slice(offset, headDim);
            for (int d = 0; d < headDim; d++)
            {
                destination[d] += weight * v[d];
            }
        }

        for (int d = 0; d < headDim; d++)
        {
            destination[d] /= sum;
        }
    }

    /// <summary>
    /// The largest |actual - reference| over the given (head, position) rows of an output laid out like
    /// <paramref name="query"/>: a check of a large call that costs O(n) per row instead of O(n²) for all rows.
    /// </summary>
    public static double MaxAbsoluteError(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> actual, AttentionShape shape, ReadOnlySpan<(int Head, int Position)> rows, AttentionOptions? options = null)
    {
        int headDim = InferHeadDim(query, shape);
        if (actual.Length != query.Length)
        {
            throw new ArgumentException($"actual must be laid out like query, [Heads, SeqLen, HeadDim] = {query.Length} floats, but it holds {actual.Length}.", nameof(actual));
        }

        var expected = new double[headDim];
        double worst = 0;
        foreach ((int head, int position) in rows)
        {
            ComputeRow(pattern, query, key, value, shape, head, position, expected, options);
            ReadOnlySpan<float> row = actual.Slice((head * shape.SeqLen + position) * headDim, headDim);
            for (int d = 0; d < headDim; d++)
            {
                worst = Math.Max(worst, Math.Abs(expected[d] - row[d]));
            }
        }

        return worst;
    }

    private static double Score(ReadOnlySpan<float> q, ReadOnlySpan<float> k, double scale)
    {
        double dot = 0;
        for (int d = 0; d < q.Length; d++)
        {
            dot += (double)q[d] * k[d];
        }

        return dot * scale;
    }

    private static int InferHeadDim(ReadOnlySpan<float> query, AttentionShape shape)
    {
        AttentionArguments.ValidateShape(shape);
        long rows = (long)shape.Heads * shape.SeqLen;
        if (query.Length == 0 || query.Length % rows != 0)
        {
            throw new ArgumentException($"query must hold [Heads, SeqLen, HeadDim] = [{shape.Heads}, {shape.SeqLen}, HeadDim] floats for some HeadDim >= 1, but it holds {query.Length}.", nameof(query));
        }

        return (int)(query.Length / rows);
    }
}
