using System.ComponentModel;

namespace SparseAttention.Cpu;

/// <summary>
/// Where one tensor's rows lie, in floats from its first element: row r of head h of sequence b starts at
/// b * <see cref="Batch"/> + h * <see cref="Head"/> + r * <see cref="Row"/>, and its HeadDim floats are contiguous.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly record struct RowStrides(long Batch, long Head, long Row)
{
    /// <summary>The dense row-major [Batch, heads, seqLen, headDim] layout.</summary>
    public static RowStrides Dense(int heads, int seqLen, int headDim) => new((long)heads * seqLen * headDim, (long)seqLen * headDim, headDim);

    /// <summary>Where row <paramref name="row"/> of head <paramref name="head"/> (sequence 0) starts.</summary>
    public long Of(int head, long row) => head * Head + row * Row;
}

/// <summary>
/// The strides of a call's query, key, value and output. The span kernels' own layout is dense [Batch, Heads, SeqLen,
/// HeadDim]; a tensor view (a [B, S, H, D] projection output seen as [B, H, S, D]) has other strides, which the tiled
/// kernels read through in place: queries and values by their row strides, keys while they are packed into panels, output
/// written row by row. Only the row kernel (scalar instruction set, and pattern components that run per row) needs key
/// and value rows dense; for those calls they are copied first (<see cref="CpuAttention"/>).
/// </summary>
/// <remarks>The default value means "dense for the call's shape": a span call passes nothing.</remarks>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly struct AttentionLayout
{
    /// <summary>A layout of explicit strides.</summary>
    public AttentionLayout(RowStrides query, RowStrides key, RowStrides value, RowStrides output)
    {
        Query = query;
        Key = key;
        Value = value;
        Output = output;
        IsExplicit = true;
    }

    /// <summary>The query tensor's strides.</summary>
    public RowStrides Query { get; }

    /// <summary>The key tensor's strides.</summary>
    public RowStrides Key { get; }

    /// <summary>The value tensor's strides.</summary>
    public RowStrides Value { get; }

    /// <summary>The output tensor's strides.</summary>
    public RowStrides Output { get; }

    /// <summary>False for the default value, which stands for the dense layout.</summary>
    public bool IsExplicit { get; }

    /// <summary>The span kernels' dense layout for <paramref name="shape"/>.</summary>
    public static AttentionLayout Dense(AttentionShape shape, int headDim)
    {
        RowStrides queries = RowStrides.Dense(shape.Heads, shape.SeqLen, headDim), keys = RowStrides.Dense(shape.KvHeads, shape.SeqLen, headDim);
        return new AttentionLayout(queries, keys, keys, queries);
    }

    /// <summary>This layout, or the dense one for <paramref name="shape"/> when this is the default value.</summary>
    public AttentionLayout OrDense(AttentionShape shape, int headDim) => IsExplicit ? this : Dense(shape, headDim);

    /// <summary>Whether key and value rows are <paramref name="headDim"/> floats apart, as the row kernel reads them.</summary>
    public bool KeyValueRowsDense(int headDim) => Key.Row == headDim && Value.Row == headDim;

    /// <summary>This layout with key and value replaced (after they were copied to dense buffers).</summary>
    public AttentionLayout WithKeyValue(RowStrides keyValue) => new(Query, keyValue, keyValue, Output);
}
