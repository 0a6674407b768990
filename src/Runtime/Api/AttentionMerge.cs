using System;

namespace SparseAttention;

/// <summary>
/// Combines partial attention results over disjoint sets of keys into the result over their union: what split-KV
/// decoding, cascade (shared-prefix) attention and ring attention across devices need. A partial result is an output
/// <c>[Heads, Queries, HeadDim]</c> and, per row, its log-sum-exp <c>[Heads, Queries]</c>: the natural log of the row's
/// softmax denominator Σⱼ e^(sⱼ) over the keys it saw, −∞ for a row that saw none (its output zeros). Merging the
/// parts of any partition of a row's keys, in any order, gives that row's attention over all of them (docs/design.md
/// §7, "Merging partial results").
/// </summary>
public static class AttentionMerge
{
    /// <summary>
    /// Merges (<paramref name="otherOutput"/>, <paramref name="otherLogSumExp"/>) into (<paramref name="output"/>,
    /// <paramref name="logSumExp"/>), in place.
    /// </summary>
    /// <exception cref="ArgumentException">A length does not match, or an input overlaps the destination other than exactly.</exception>
    public static void Merge(Span<float> output, Span<float> logSumExp, ReadOnlySpan<float> otherOutput, ReadOnlySpan<float> otherLogSumExp, int headDim)
    {
        Validate(output, logSumExp, otherOutput, otherLogSumExp, output, logSumExp, headDim, (nameof(output), nameof(logSumExp), nameof(otherOutput), nameof(otherLogSumExp)));
        MergeRows(output, logSumExp, otherOutput, otherLogSumExp, output, logSumExp, headDim);
    }

    /// <summary>
    /// Writes the merge of (<paramref name="outputA"/>, <paramref name="logSumExpA"/>) and (<paramref name="outputB"/>,
    /// <paramref name="logSumExpB"/>) to (<paramref name="output"/>, <paramref name="logSumExp"/>). The destination may be
    /// either input itself (the same memory), not a shifted part of one.
    /// </summary>
    /// <exception cref="ArgumentException">A length does not match, or an input overlaps the destination other than exactly.</exception>
    public static void Merge(ReadOnlySpan<float> outputA, ReadOnlySpan<float> logSumExpA, ReadOnlySpan<float> outputB, ReadOnlySpan<float> logSumExpB, Span<float> output, Span<float> logSumExp, int headDim)
    {
        Validate(outputA, logSumExpA, outputB, logSumExpB, output, logSumExp, headDim, (nameof(outputA), nameof(logSumExpA), nameof(outputB), nameof(logSumExpB)));
        MergeRows(outputA, logSumExpA, outputB, logSumExpB, output, logSumExp, headDim);
    }

    private static void MergeRows(ReadOnlySpan<float> outputA, ReadOnlySpan<float> logSumExpA, ReadOnlySpan<float> outputB, ReadOnlySpan<float> logSumExpB, Span<float> output, Span<float> logSumExp, int headDim)
    {
        for (int row = 0; row < logSumExp.Length; row++)
        {
            double a = logSumExpA[row], b = logSumExpB[row];
            ReadOnlySpan<float> rowA = outputA.Slice(row * headDim, headDim), rowB = outputB.Slice(row * headDim, headDim);
            Span<float> merged = output.Slice(row * headDim, headDim);
            if (double.IsNaN(a) || double.IsNaN(b) || double.IsPositiveInfinity(a) || double.IsPositiveInfinity(b))
            {
                // A part that is NaN (a non-finite visible score or value, docs/design.md §4) or whose denominator
                // overflowed makes the whole row NaN, as one call over all the keys would.
                merged.Fill(float.NaN);
                logSumExp[row] = float.NaN;
                continue;
            }

            if (double.IsNegativeInfinity(a) && double.IsNegativeInfinity(b))
            {
                merged.Clear();
                logSumExp[row] = float.NegativeInfinity;
                continue;
            }

            // Weights relative to the larger part, in double: e^(a - m) and e^(b - m), one of them 1.
            double max = Math.Max(a, b);
            double weightA = Math.Exp(a - max), weightB = Math.Exp(b - max), total = weightA + weightB;
            float shareA = (float)(weightA / total), shareB = (float)(weightB / total);
            for (int d = 0; d < headDim; d++)
            {
                // A part with no keys has weight 0; skipping its term keeps NaN it may not hold out of the sum.
                float sum = shareA != 0 ? shareA * rowA[d] : 0f;
                merged[d] = shareB != 0 ? sum + shareB * rowB[d] : sum;
            }

            logSumExp[row] = (float)(max + Math.Log(total));
        }
    }

    private static void Validate(ReadOnlySpan<float> outputA, ReadOnlySpan<float> logSumExpA, ReadOnlySpan<float> outputB, ReadOnlySpan<float> logSumExpB, Span<float> output, Span<float> logSumExp, int headDim, (string OutputA, string LogSumExpA, string OutputB, string LogSumExpB) names)
    {
        if (headDim < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "headDim must be at least 1.");
        }

        // The log-sum-exp of the destination fixes the row count; everything else is checked against it.
        long rows = logSumExp.Length, outputLength = rows * headDim;
        CheckLength(nameof(output), output.Length, outputLength, rows, headDim);
        CheckLength(names.OutputA, outputA.Length, outputLength, rows, headDim);
        CheckLength(names.OutputB, outputB.Length, outputLength, rows, headDim);
        CheckRows(names.LogSumExpA, logSumExpA.Length, rows);
        CheckRows(names.LogSumExpB, logSumExpB.Length, rows);
        CheckOverlap(names.OutputA, outputA, output);
        CheckOverlap(names.OutputB, outputB, output);
        CheckOverlap(names.LogSumExpA, logSumExpA, logSumExp);
        CheckOverlap(names.LogSumExpB, logSumExpB, logSumExp);
        CheckOverlap(names.OutputA, outputA, logSumExp);
        CheckOverlap(names.OutputB, outputB, logSumExp);
        CheckOverlap(names.LogSumExpA, logSumExpA, output);
        CheckOverlap(names.LogSumExpB, logSumExpB, output);
    }

    private static void CheckLength(string name, int actual, long expected, long rows, int headDim)
    {
        if (actual != expected)
        {
            throw new ArgumentException(name + " must hold [rows, HeadDim] = " + rows + " x " + headDim + " = " + expected + " floats (rows = logSumExp.Length); got " + actual + ".", name);
        }
    }

    private static void CheckRows(string name, int actual, long rows)
    {
        if (actual != rows)
        {
            throw new ArgumentException(name + " must hold one float per row, " + rows + " (logSumExp.Length); got " + actual + ".", name);
        }
    }

    private static void CheckOverlap(string name, ReadOnlySpan<float> input, ReadOnlySpan<float> destination)
    {
        if (input.Overlaps(destination, out int offset) && (offset != 0 || input.Length != destination.Length))
        {
            throw new ArgumentException(name + " overlaps the destination shifted: a merge may write over an input only when it is exactly the same memory.", name);
        }
    }
}
