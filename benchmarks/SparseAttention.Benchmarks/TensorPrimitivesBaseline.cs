using System.Numerics.Tensors;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// What a careful .NET developer writes by hand with System.Numerics.Tensors: for each (head, query), the
/// visible keys only (so it is sparse too), a TensorPrimitives.Dot per key, TensorPrimitives.SoftMax over the
/// scores, and a TensorPrimitives.MultiplyAdd per value row; rows spread over cores with Parallel.For.
/// </summary>
public static class TensorPrimitivesBaseline
{
    public static void Forward(AttentionPattern pattern, float[] query, float[] key, float[] value, float[] output, AttentionShape shape, int headDim)
    {
        float scale = 1f / MathF.Sqrt(headDim);
        int seqLen = shape.SeqLen;
        Parallel.For(0, shape.Heads * seqLen, () => (new KeySegment[pattern.MaxSegmentsPerQuery], new float[seqLen], new float[seqLen]), (index, _, buffers) =>
        {
            (KeySegment[] segments, float[] scores, float[] probabilities) = buffers;
            int head = index / seqLen, row = index % seqLen;
            int kvBase = shape.KvHeadOf(head) * seqLen * headDim;
            ReadOnlySpan<float> q = query.AsSpan((head * seqLen + row) * headDim, headDim);
            Span<float> o = output.AsSpan((head * seqLen + row) * headDim, headDim);
            int segmentCount = pattern.GetKeySegments(row, head, seqLen, segments);
            int count = 0;
            for (int s = 0; s < segmentCount; s++)
            {
                for (int c = 0, position = segments[s].Start; c < segments[s].Count; c++, position += segments[s].Step)
                {
                    scores[count++] = TensorPrimitives.Dot(q, key.AsSpan(kvBase + position * headDim, headDim)) * scale;
                }
            }

            o.Clear();
            if (count == 0)
            {
                return buffers;
            }

            TensorPrimitives.SoftMax(scores.AsSpan(0, count), probabilities.AsSpan(0, count));
            count = 0;
            for (int s = 0; s < segmentCount; s++)
            {
                for (int c = 0, position = segments[s].Start; c < segments[s].Count; c++, position += segments[s].Step)
                {
                    TensorPrimitives.MultiplyAdd(value.AsSpan(kvBase + position * headDim, headDim), probabilities[count++], o, o);
                }
            }

            return buffers;
        }, _ => { });
    }
}
