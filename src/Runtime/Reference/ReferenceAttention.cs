using System;

namespace SparseAttention;

/// <summary>
/// The slow, obviously correct attention everything is tested against: for every (head, query) it tests
/// every key with <see cref="AttentionPattern.IsVisible(int, int, int, int)"/>, and accumulates in double precision. Keys a query
/// cannot see are never read, so NaN or Inf stored there cannot reach its output. A query that sees no key
/// gets a row of zeros. The NaN/Inf policy (docs/design.md) is written out here as the rule every kernel follows:
/// a visible score that is NaN, infinite or beyond fp32's range (in the kernels' base-2 units), or a visible value
/// holding NaN or ±inf, makes the whole row NaN.
/// </summary>
public static class ReferenceAttention
{
    /// <summary>
    /// Computes attention with the same arguments and layout as a generated <c>Forward</c>. HeadDim is
    /// inferred from the query length (<c>query.Length / (Heads * SeqLen)</c>).
    /// </summary>
    public static void Forward(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions? options = null) =>
        Forward(pattern, ScoreModifiers.None, query, key, value, ReadOnlySpan<float>.Empty, output, Span<float>.Empty, shape, options, writeLogSumExp: false);

    /// <summary>
    /// As the plain overload, with a declaration's score modifiers (a generated kernel's <c>Scores</c>) applied to each
    /// visible score in the documented order: softcap, ALiBi (slopes from <paramref name="options"/> or the defaults),
    /// the score mod; a score that ends at -inf is masked.
    /// </summary>
    public static void Forward(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions? options = null) =>
        Forward(pattern, scores, query, key, value, ReadOnlySpan<float>.Empty, output, Span<float>.Empty, shape, options, writeLogSumExp: false);

    /// <summary>
    /// Everything a generated kernel can do: score modifiers, learned sinks (<paramref name="sinkLogits"/>, one logit per
    /// query head, empty for none: the sink joins each row's denominator with no value) and each row's log-sum-exp
    /// (<paramref name="logSumExp"/>, [Heads, SeqLen], empty to skip it; the sink included).
    /// </summary>
    public static void Forward(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> sinkLogits, Span<float> output, Span<float> logSumExp, AttentionShape shape, AttentionOptions? options = null)
    {
        if (!sinkLogits.IsEmpty)
        {
            AttentionArguments.ValidateSinkLogits(sinkLogits, shape.Heads);
        }

        Forward(pattern, scores, query, key, value, sinkLogits, output, logSumExp, shape, options, writeLogSumExp: !logSumExp.IsEmpty);
    }

    /// <summary>
    /// As <see cref="Forward(AttentionPattern, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, AttentionShape, AttentionOptions?)"/>,
    /// also writing each row's log-sum-exp to <paramref name="logSumExp"/> ([Heads, SeqLen]): the natural log of its softmax
    /// denominator Σⱼ e^(sⱼ) over the visible keys (the scale applied), −∞ for a row that sees no key, NaN for a NaN row.
    /// It is what <see cref="AttentionMerge"/> combines partial results with.
    /// </summary>
    /// <exception cref="ArgumentException">A span's length does not match <paramref name="shape"/>.</exception>
    public static void Forward(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, Span<float> logSumExp, AttentionShape shape, AttentionOptions? options = null) =>
        Forward(pattern, ScoreModifiers.None, query, key, value, ReadOnlySpan<float>.Empty, output, logSumExp, shape, options, writeLogSumExp: true);

    private static void Forward(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> sinkLogits, Span<float> output, Span<float> logSumExp, AttentionShape shape, AttentionOptions? options, bool writeLogSumExp)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(scores);
        int headDim = InferHeadDim(query, shape);
        AttentionArguments.Validate(headDim, query, key, value, output, shape);
        if (writeLogSumExp)
        {
            AttentionArguments.ValidateLogSumExp(logSumExp, query, key, value, output, shape);
        }

        if (shape.Batch > 1)
        {
            // Each sequence of the batch on its own, as the kernels run it.
            for (int b = 0; b < shape.Batch; b++)
            {
                int queryFloats = shape.Heads * shape.SeqLen * headDim, keyFloats = shape.KvHeads * shape.SeqLen * headDim, rows = shape.Heads * shape.SeqLen;
                Forward(
                    pattern, scores, query.Slice(b * queryFloats, queryFloats), key.Slice(b * keyFloats, keyFloats), value.Slice(b * keyFloats, keyFloats), sinkLogits,
                    output.Slice(b * queryFloats, queryFloats), writeLogSumExp ? logSumExp.Slice(b * rows, rows) : Span<float>.Empty, shape with { Batch = 1 }, options, writeLogSumExp);
            }

            return;
        }

        var row = new double[headDim];
        for (int head = 0; head < shape.Heads; head++)
        {
            for (int position = 0; position < shape.SeqLen; position++)
            {
                double? sink = sinkLogits.IsEmpty ? null : sinkLogits[head];
                double rowLogSumExp = ComputeRow(pattern, scores, query, key, value, shape, head, position, row, options, validate: false, sink);
                if (writeLogSumExp)
                {
                    logSumExp[head * shape.SeqLen + position] = (float)rowLogSumExp;
                }

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
    public static void ComputeRow(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, AttentionShape shape, int head, int position, Span<double> destination, AttentionOptions? options = null) =>
        ComputeRow(pattern, ScoreModifiers.None, query, key, value, shape, head, position, destination, options, validate: true, sinkLogit: null);

    /// <summary>One row with a declaration's score modifiers (see the matching <c>Forward</c> overload).</summary>
    public static void ComputeRow(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, AttentionShape shape, int head, int position, Span<double> destination, AttentionOptions? options = null) =>
        ComputeRow(pattern, scores, query, key, value, shape, head, position, destination, options, validate: true, sinkLogit: null);

    /// <summary>
    /// One row, as the public overloads; returns the row's log-sum-exp (−∞ with no visible key, NaN for a NaN row). The
    /// NaN/Inf policy looks at what the structure makes visible (raw scores and values, before any modifier or mask,
    /// as the kernels do); the softmax runs over the keys the mask keeps, with their modified scores.
    /// </summary>
    private static double ComputeRow(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, AttentionShape shape, int head, int position, Span<double> destination, AttentionOptions? options, bool validate, double? sinkLogit)
    {
        int headDim = InferHeadDim(query, shape);
        if (validate)
        {
            ArgumentNullException.ThrowIfNull(pattern);
            AttentionArguments.ValidateShape(shape);
            if (destination.Length < headDim)
            {
                throw new ArgumentException($"destination needs HeadDim = {headDim} entries but holds {destination.Length}.", nameof(destination));
            }
        }

        options ??= AttentionOptions.Default;
        double scale = options.ResolveScale(headDim);
        double alibiSlope = scores.Alibi ? AlibiSlopes.Resolve(options, shape.Heads)[head] : 0;
        int kvHead = shape.KvHeadOf(head);
        ReadOnlySpan<float> q = query.Slice((head * shape.SeqLen + position) * headDim, headDim);
        Span<double> row = destination.Slice(0, headDim);

        // Pass 1: the largest score, so the exponentials cannot overflow; and the NaN/Inf policy's checks on what
        // this row sees: a score that is not a finite fp32 number, or a value with NaN or ±inf, makes the row NaN.
        double max = double.NegativeInfinity;
        bool sawKey = false;
        for (int j = 0; j < shape.SeqLen; j++)
        {
            if (!pattern.InStructure(position, j, head, shape.SeqLen))
            {
                continue;
            }

            int offset = (kvHead * shape.SeqLen + j) * headDim;
            double score = Score(q, key.Slice(offset, headDim), scale);
            if (!IsFiniteScore(score) || !IsFinite(value.Slice(offset, headDim)))
            {
                row.Fill(double.NaN);
                return double.NaN;
            }

            if (!Kept(pattern, position, j, head) || (score = scores.Apply(score, position, j, head, alibiSlope)) == double.NegativeInfinity)
            {
                continue; // Masked: by the mask, or by a score mod that returned -inf.
            }

            if (double.IsNaN(score) || score == double.PositiveInfinity)
            {
                // A modifier's NaN or +inf reaches the row through the max, as in the kernels.
                row.Fill(double.NaN);
                return double.NaN;
            }

            max = Math.Max(max, score);
            sawKey = true;
        }

        row.Clear();
        if (!sawKey)
        {
            return double.NegativeInfinity; // No visible key: a row of zeros.
        }

        // Pass 2: softmax-weighted sum of the visible values.
        double sum = 0;
        for (int j = 0; j < shape.SeqLen; j++)
        {
            if (!pattern.IsVisible(position, j, head, shape.SeqLen))
            {
                continue;
            }

            int offset = (kvHead * shape.SeqLen + j) * headDim;
            double weight = Math.Exp(scores.Apply(Score(q, key.Slice(offset, headDim), scale), position, j, head, alibiSlope) - max);
            sum += weight;
            ReadOnlySpan<float> v = value.Slice(offset, headDim);
            for (int d = 0; d < headDim; d++)
            {
                row[d] += weight * v[d];
            }
        }

        // A learned sink joins the denominator with no value: e^(sink - max), in double (a sink far above every score
        // sends the row to 0, not to an overflow).
        if (sinkLogit is double sink)
        {
            sum += Math.Exp(sink - max);
        }

        for (int d = 0; d < headDim; d++)
        {
            row[d] /= sum;
        }

        return max + Math.Log(sum);
    }

    private static bool Kept(AttentionPattern pattern, int query, int key, int head) => pattern.Mask is null || pattern.Mask(query, key, head);

    /// <summary>
    /// Whether a score is one the kernels hold as a finite fp32 number. They run the softmax in base 2, so what they hold
    /// is score x log2(e): beyond float.MaxValue that overflows to ±inf, and the row is NaN on every path.
    /// </summary>
    private static bool IsFiniteScore(double score) => double.IsFinite(score) && Math.Abs(score * Cpu.VectorMath.Log2E) <= float.MaxValue;

    private static bool IsFinite(ReadOnlySpan<float> vector)
    {
        foreach (float element in vector)
        {
            if (!float.IsFinite(element))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The largest |actual - reference| over the given (head, position) rows of an output laid out like
    /// <paramref name="query"/>: a check of a large call that costs O(n) per row instead of O(n²) for all rows.
    /// </summary>
    public static double MaxAbsoluteError(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> actual, AttentionShape shape, ReadOnlySpan<(int Head, int Position)> rows, AttentionOptions? options = null) =>
        MaxAbsoluteError(pattern, ScoreModifiers.None, query, key, value, actual, shape, rows, options);

    /// <summary>As the plain overload, for a kernel with score modifiers (its generated <c>Scores</c>).</summary>
    public static double MaxAbsoluteError(AttentionPattern pattern, ScoreModifiers scores, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> actual, AttentionShape shape, ReadOnlySpan<(int Head, int Position)> rows, AttentionOptions? options = null)
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
            ComputeRow(pattern, scores, query, key, value, shape, head, position, expected, options);
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
        long rows = (long)shape.Batch * shape.Heads * shape.SeqLen;
        if (query.Length == 0 || query.Length % rows != 0)
        {
            throw new ArgumentException($"query must hold [Batch, Heads, SeqLen, HeadDim] = [{shape.Batch}, {shape.Heads}, {shape.SeqLen}, HeadDim] floats for some HeadDim >= 1, but it holds {query.Length}.", nameof(query));
        }

        return (int)(query.Length / rows);
    }
}
