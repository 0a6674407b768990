using System;
using System.Buffers;
using System.ComponentModel;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using SparseAttention.Cpu;

namespace SparseAttention.Tensors;

/// <summary>
/// The tensor and packed-sequence entry points behind the generated overloads: <c>Forward&lt;T&gt;</c> over
/// <see cref="ReadOnlyTensorSpan{T}"/>s of any strides (last dimension contiguous) in float, <see cref="Half"/> or
/// <see cref="BFloat16"/>, and <c>Forward</c> over sequences packed one after another (FlashAttention's
/// <c>cu_seqlens</c>). Both end in a declaration's fp32 span kernel: a dense fp32 [Batch, Heads, SeqLen, HeadDim] call is
/// passed straight through; anything else is read one sequence at a time into fp32 [Heads, SeqLen, HeadDim] buffers
/// (each element converted once, where it is loaded) and the output written back through its strides in its type.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TensorAttention
{
    /// <summary>
    /// A declaration's fp32 kernel over spans laid out as <paramref name="layout"/> says (its default: the dense
    /// [Batch, Heads, SeqLen, HeadDim] layout of <paramref name="shape"/>); sinks empty for a declaration without learned
    /// sinks. The caller has checked the spans against the shape and layout.
    /// </summary>
    public delegate void SpanForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> sinkLogits, Span<float> output, AttentionShape shape, AttentionLayout layout, AttentionOptions options);

    /// <summary>
    /// Attention over tensors of logical shape [Batch, Heads, SeqLen, HeadDim] (rank 4) or [Heads, SeqLen, HeadDim] (rank
    /// 3); keys and values with KvHeads. Any strides whose last dimension is contiguous: a [B, S, H, D] buffer is passed as
    /// a strided view of it.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor's rank, a dimension or a stride is wrong (named), the element type is not one attention takes, or output shares memory with an input or with itself.</exception>
    public static void Forward<T>(int headDim, SpanForward forward, ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, ReadOnlySpan<float> sinkLogits, TensorSpan<T> output, AttentionOptions options)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentNullException.ThrowIfNull(options);
        if (!ElementConversion.IsSupported<T>())
        {
            throw ElementConversion.Unsupported<T>(nameof(query));
        }

        TensorLayout q = TensorLayout.Of(query.Lengths, query.Strides, nameof(query), headDim);
        TensorLayout k = TensorLayout.Of(key.Lengths, key.Strides, nameof(key), headDim);
        TensorLayout v = TensorLayout.Of(value.Lengths, value.Strides, nameof(value), headDim);
        TensorLayout o = TensorLayout.Of(output.Lengths, output.Strides, nameof(output), headDim);
        TensorLayout.CheckSameRank(q, k, v, o);
        TensorLayout.CheckMatch(q, o, nameof(output), "Heads");
        TensorLayout.CheckSequences(q, k);
        TensorLayout.CheckMatch(k, v, nameof(value), "KvHeads");
        o.CheckNoSelfOverlap();
        var shape = new AttentionShape(q.Heads, k.Heads, q.SeqLen) { Batch = q.Batch };
        AttentionArguments.ValidateShape(shape);

        ReadOnlyTensorSpan<T> written = output;
        if (Overlaps(written, o, query, q) || Overlaps(written, o, key, k) || Overlaps(written, o, value, v))
        {
            throw new ArgumentException("output must not share memory with query, key or value: the kernel writes output while it still reads them.", nameof(output));
        }

        if (typeof(T) == typeof(float) && q.KernelsReadInPlace && k.KernelsReadInPlace && v.KernelsReadInPlace && o.KernelsReadInPlace)
        {
            // fp32 whose strides the kernels take: read and written in place, whatever the strides.
            var layout = new AttentionLayout(q.Strides, k.Strides, v.Strides, o.Strides);
            forward(
                MemoryMarshal.Cast<T, float>(Reach(query, q)), MemoryMarshal.Cast<T, float>(Reach(key, k)), MemoryMarshal.Cast<T, float>(Reach(value, v)), sinkLogits,
                MemoryMarshal.Cast<T, float>(MemoryMarshal.CreateSpan(ref TensorMarshal.GetReference(output), o.Extent)), shape, layout, options);
            return;
        }

        Staged(forward, query, key, value, sinkLogits, output, q, k, v, o, shape, options);
    }

    /// <summary>
    /// A call the kernels cannot read in place (Half or BFloat16, or strides out of their range): one sequence at a time,
    /// widened into fp32 [Heads, SeqLen, HeadDim] buffers, run, and narrowed back through the output's strides. A method of
    /// its own so that its pinning and buffers cost nothing on the in-place path.
    /// </summary>
    private static unsafe void Staged<T>(SpanForward forward, ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, ReadOnlySpan<float> sinkLogits, TensorSpan<T> output, TensorLayout q, TensorLayout k, TensorLayout v, TensorLayout o, AttentionShape shape, AttentionOptions options)
        where T : unmanaged
    {
        int headDim = q.HeadDim, queryFloats = checked(q.Heads * q.SeqLen * headDim), keyFloats = checked(k.Heads * k.SeqLen * headDim);
        float[] queryBuffer = ArrayPool<float>.Shared.Rent(queryFloats), keyBuffer = ArrayPool<float>.Shared.Rent(keyFloats);
        float[] valueBuffer = ArrayPool<float>.Shared.Rent(keyFloats), outputBuffer = ArrayPool<float>.Shared.Rent(queryFloats);
        try
        {
            AttentionShape one = shape with { Batch = 1 };
            int threads = options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;
            TensorStaging<T> staging = TensorStaging<T>.ForThisThread();
            fixed (T* queryOrigin = &Unsafe.AsRef(in TensorMarshal.GetReference(query)), keyOrigin = &Unsafe.AsRef(in TensorMarshal.GetReference(key)))
            fixed (T* valueOrigin = &Unsafe.AsRef(in TensorMarshal.GetReference(value)), outputOrigin = &TensorMarshal.GetReference(output))
            fixed (float* queryFloatsAt = queryBuffer, keyFloatsAt = keyBuffer, valueFloatsAt = valueBuffer, outputFloatsAt = outputBuffer)
            {
                staging.Prepare(q, queryOrigin, queryFloatsAt, k, keyOrigin, keyFloatsAt, v, valueOrigin, valueFloatsAt, o, outputOrigin, outputFloatsAt);
                for (int b = 0; b < q.Batch; b++)
                {
                    staging.ReadInputs(b, threads);
                    forward(queryBuffer.AsSpan(0, queryFloats), keyBuffer.AsSpan(0, keyFloats), valueBuffer.AsSpan(0, keyFloats), sinkLogits, outputBuffer.AsSpan(0, queryFloats), one, default, options);
                    staging.WriteOutput(b, threads);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(valueBuffer);
            ArrayPool<float>.Shared.Return(outputBuffer);
        }
    }

    /// <summary>
    /// Attention over sequences packed one after another (FlashAttention's varlen layout): query and output
    /// [Heads, totalRows, HeadDim], key and value [KvHeads, totalRows, HeadDim] with totalRows = <paramref name="shape"/>.SeqLen;
    /// sequence i is rows [sequenceStarts[i], sequenceStarts[i + 1]), its own pattern instance with positions from 0, and no
    /// query sees a key of another sequence. An empty sequence is allowed (its rows do not exist).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="sequenceStarts"/> is shorter than 2, does not start at 0, is not ascending, or does not end at the total rows; or a span's length is wrong.</exception>
    public static void ForwardPacked(int headDim, SpanForward forward, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> sinkLogits, Span<float> output, AttentionShape shape, ReadOnlySpan<int> sequenceStarts, AttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentNullException.ThrowIfNull(options);
        AttentionArguments.Validate(headDim, query, key, value, output, shape);
        ValidatePacked(shape, sequenceStarts);
        int maxRows = 0;
        for (int i = 0; i + 1 < sequenceStarts.Length; i++)
        {
            maxRows = Math.Max(maxRows, sequenceStarts[i + 1] - sequenceStarts[i]);
        }

        float[] queryBuffer = ArrayPool<float>.Shared.Rent(shape.Heads * maxRows * headDim), keyBuffer = ArrayPool<float>.Shared.Rent(shape.KvHeads * maxRows * headDim);
        float[] valueBuffer = ArrayPool<float>.Shared.Rent(shape.KvHeads * maxRows * headDim), outputBuffer = ArrayPool<float>.Shared.Rent(shape.Heads * maxRows * headDim);
        try
        {
            for (int i = 0; i + 1 < sequenceStarts.Length; i++)
            {
                int first = sequenceStarts[i], rows = sequenceStarts[i + 1] - first;
                if (rows == 0)
                {
                    continue;
                }

                // One sequence's rows of every head, side by side: the [Heads, rows, HeadDim] layout of a call of its own.
                int queryFloats = shape.Heads * rows * headDim, keyFloats = shape.KvHeads * rows * headDim;
                CopyRows(query, shape.Heads, shape.SeqLen, first, rows, headDim, queryBuffer);
                CopyRows(key, shape.KvHeads, shape.SeqLen, first, rows, headDim, keyBuffer);
                CopyRows(value, shape.KvHeads, shape.SeqLen, first, rows, headDim, valueBuffer);
                forward(queryBuffer.AsSpan(0, queryFloats), keyBuffer.AsSpan(0, keyFloats), valueBuffer.AsSpan(0, keyFloats), sinkLogits, outputBuffer.AsSpan(0, queryFloats), shape with { SeqLen = rows }, default, options);
                for (int head = 0; head < shape.Heads; head++)
                {
                    outputBuffer.AsSpan(head * rows * headDim, rows * headDim).CopyTo(output.Slice((head * shape.SeqLen + first) * headDim, rows * headDim));
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queryBuffer);
            ArrayPool<float>.Shared.Return(keyBuffer);
            ArrayPool<float>.Shared.Return(valueBuffer);
            ArrayPool<float>.Shared.Return(outputBuffer);
        }

        static void CopyRows(ReadOnlySpan<float> source, int heads, int totalRows, int first, int rows, int headDim, float[] destination)
        {
            for (int head = 0; head < heads; head++)
            {
                source.Slice((head * totalRows + first) * headDim, rows * headDim).CopyTo(destination.AsSpan(head * rows * headDim, rows * headDim));
            }
        }
    }

    /// <summary>Checks a packed call: one batch (the sequences are the batch) and FlashAttention-style sequence starts.</summary>
    /// <exception cref="ArgumentException">Batch is not 1 (named <c>shape</c>), or the starts are wrong (named <c>sequenceStarts</c>).</exception>
    public static void ValidatePacked(AttentionShape shape, ReadOnlySpan<int> sequenceStarts)
    {
        if (shape.Batch != 1)
        {
            throw new ArgumentException($"Packed sequences are their own batch: shape.Batch must be 1; got {shape.Batch}.", nameof(shape));
        }

        ValidateSequenceStarts(sequenceStarts, shape.SeqLen);
    }

    /// <summary>Checks FlashAttention-style sequence starts: at least two, the first 0, ascending, the last the total rows.</summary>
    /// <exception cref="ArgumentException">Named <c>sequenceStarts</c>, saying which rule fails and where.</exception>
    public static void ValidateSequenceStarts(ReadOnlySpan<int> sequenceStarts, int totalRows)
    {
        if (sequenceStarts.Length < 2)
        {
            throw new ArgumentException($"sequenceStarts must hold count + 1 offsets (at least 2: 0 and the total rows {totalRows}); it holds {sequenceStarts.Length}.", nameof(sequenceStarts));
        }

        if (sequenceStarts[0] != 0)
        {
            throw new ArgumentException($"sequenceStarts must start at 0; it starts at {sequenceStarts[0]}.", nameof(sequenceStarts));
        }

        for (int i = 1; i < sequenceStarts.Length; i++)
        {
            if (sequenceStarts[i] < sequenceStarts[i - 1])
            {
                throw new ArgumentException($"sequenceStarts must be ascending; sequenceStarts[{i}] = {sequenceStarts[i]} is below sequenceStarts[{i - 1}] = {sequenceStarts[i - 1]}.", nameof(sequenceStarts));
            }
        }

        if (sequenceStarts[^1] != totalRows)
        {
            throw new ArgumentException($"sequenceStarts must end at the total rows, shape.SeqLen = {totalRows}; it ends at {sequenceStarts[^1]}.", nameof(sequenceStarts));
        }
    }

    /// <summary>The memory from a tensor's first element to its last.</summary>
    private static ReadOnlySpan<T> Reach<T>(ReadOnlyTensorSpan<T> tensor, TensorLayout layout) =>
        MemoryMarshal.CreateReadOnlySpan(in TensorMarshal.GetReference(tensor), layout.Extent);

    /// <summary>Whether two tensors' address ranges (first to last element) intersect; measured between the two references, so no pinning is needed.</summary>
    private static bool Overlaps<T>(ReadOnlyTensorSpan<T> a, TensorLayout aLayout, ReadOnlyTensorSpan<T> b, TensorLayout bLayout)
    {
        long offset = Unsafe.ByteOffset(ref Unsafe.AsRef(in TensorMarshal.GetReference(a)), ref Unsafe.AsRef(in TensorMarshal.GetReference(b)));
        long aBytes = aLayout.Reach * Unsafe.SizeOf<T>(), bBytes = bLayout.Reach * Unsafe.SizeOf<T>();
        return offset < aBytes && -offset < bBytes;
    }
}
