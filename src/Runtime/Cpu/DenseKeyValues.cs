using System;
using System.Buffers;

namespace SparseAttention.Cpu;

/// <summary>
/// Keys and values of a strided call copied to dense [Batch, KvHeads, SeqLen, HeadDim] rows, for the calls whose row
/// kernel reads them (it takes a KV head's rows HeadDim apart). Pooled buffers, returned on <see cref="Dispose"/>.
/// </summary>
internal readonly ref struct DenseKeyValues
{
    private readonly float[] _keys, _values;
    private readonly int _length;

    private DenseKeyValues(float[] keys, float[] values, int length, RowStrides strides)
    {
        _keys = keys;
        _values = values;
        _length = length;
        Strides = strides;
    }

    public ReadOnlySpan<float> Keys => _keys.AsSpan(0, _length);

    public ReadOnlySpan<float> Values => _values.AsSpan(0, _length);

    /// <summary>The copies' (dense) strides.</summary>
    public RowStrides Strides { get; }

    public static DenseKeyValues Copy(ReadOnlySpan<float> key, ReadOnlySpan<float> value, in AttentionLayout layout, AttentionShape shape, int headDim)
    {
        int length = checked(shape.Batch * shape.KvHeads * shape.SeqLen * headDim);
        var dense = RowStrides.Dense(shape.KvHeads, shape.SeqLen, headDim);
        float[] keys = ArrayPool<float>.Shared.Rent(length), values = ArrayPool<float>.Shared.Rent(length);
        CopyRows(key, layout.Key, keys, dense, shape, headDim);
        CopyRows(value, layout.Value, values, dense, shape, headDim);
        return new DenseKeyValues(keys, values, length, dense);
    }

    public void Dispose()
    {
        ArrayPool<float>.Shared.Return(_keys);
        ArrayPool<float>.Shared.Return(_values);
    }

    private static unsafe void CopyRows(ReadOnlySpan<float> source, RowStrides from, float[] destination, RowStrides to, AttentionShape shape, int headDim)
    {
        fixed (float* sourceAt = source, destinationAt = destination)
        {
            for (int b = 0; b < shape.Batch; b++)
            {
                for (int head = 0; head < shape.KvHeads; head++)
                {
                    CopyRows(sourceAt + b * from.Batch, from, destinationAt + b * to.Batch, to, head, 0, shape.SeqLen, headDim);
                }
            }
        }
    }

    /// <summary>
    /// Rows <paramref name="firstRow"/> .. <paramref name="endRow"/> - 1 of one head, from one layout to another (the pack
    /// phase's dense copies use it too, a chunk of rows per work item).
    /// </summary>
    internal static unsafe void CopyRows(float* source, RowStrides from, float* destination, RowStrides to, int head, int firstRow, int endRow, int headDim)
    {
        for (int row = firstRow; row < endRow; row++)
        {
            new ReadOnlySpan<float>(source + from.Of(head, row), headDim).CopyTo(new Span<float>(destination + to.Of(head, row), headDim));
        }
    }
}
