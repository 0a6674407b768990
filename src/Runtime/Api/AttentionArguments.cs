using System;
using ILGPU;
using ILGPU.Runtime;

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
        ValidateLengths(headDim, query.Length, key.Length, value.Length, output.Length, shape, maxLength: int.MaxValue, "one span");
        if (output.Overlaps(query) || output.Overlaps(key) || output.Overlaps(value))
        {
            throw OutputOverlaps();
        }
    }

    /// <summary>
    /// Throws when the device views do not match <paramref name="shape"/> and <paramref name="headDim"/>, are not
    /// allocated on <paramref name="accelerator"/>, or when <paramref name="output"/> shares memory with an input.
    /// </summary>
    public static void Validate<T>(int headDim, Accelerator accelerator, ArrayView<T> query, ArrayView<T> key, ArrayView<T> value, ArrayView<T> output, AttentionShape shape)
        where T : unmanaged
    {
        CheckUsable(accelerator);
        CheckOnAccelerator(nameof(query), query, accelerator);
        CheckOnAccelerator(nameof(key), key, accelerator);
        CheckOnAccelerator(nameof(value), value, accelerator);
        CheckOnAccelerator(nameof(output), output, accelerator);
        ValidateLengths(headDim, query.Length, key.Length, value.Length, output.Length, shape, maxLength: long.MaxValue, "one view");
        if (Overlaps(output, query) || Overlaps(output, key) || Overlaps(output, value))
        {
            throw OutputOverlaps();
        }
    }

    /// <summary>
    /// Checks a device log-sum-exp view: on <paramref name="accelerator"/>, [Heads, SeqLen] floats, sharing no memory with
    /// the other views (call after <see cref="Validate{T}(int, Accelerator, ArrayView{T}, ArrayView{T}, ArrayView{T}, ArrayView{T}, AttentionShape)"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The view is invalid, elsewhere, of the wrong length, or overlaps another.</exception>
    public static void ValidateLogSumExp(Accelerator accelerator, ArrayView<float> logSumExp, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape)
    {
        CheckOnAccelerator(nameof(logSumExp), logSumExp, accelerator);
        long rows = (long)shape.Batch * shape.Heads * shape.SeqLen;
        if (logSumExp.Length != rows)
        {
            throw new ArgumentException(shape.Batch == 1
                ? $"logSumExp must hold [Heads, SeqLen] = {shape.Heads} x {shape.SeqLen} = {rows} floats; it holds {logSumExp.Length}."
                : $"logSumExp must hold [Batch, Heads, SeqLen] = {shape.Batch} x {shape.Heads} x {shape.SeqLen} = {rows} floats; it holds {logSumExp.Length}.", nameof(logSumExp));
        }

        if (Overlaps(logSumExp, output) || Overlaps(logSumExp, query) || Overlaps(logSumExp, key) || Overlaps(logSumExp, value))
        {
            throw new ArgumentException("logSumExp must not share memory with query, key, value or output.", nameof(logSumExp));
        }
    }

    private static void ValidateLengths(int headDim, long query, long key, long value, long output, AttentionShape shape, long maxLength, string container)
    {
        ValidateShape(shape);
        // In 128 bits: four ints multiply to at most 2^124, so the sizes below are exact, never wrapped.
        Int128 queryLength = (Int128)shape.Batch * shape.Heads * shape.SeqLen * headDim;
        Int128 keyLength = (Int128)shape.Batch * shape.KvHeads * shape.SeqLen * headDim;
        // The layouts are literals and the sizes are formatted only when a check fails: a valid call allocates nothing.
        bool batched = shape.Batch != 1;
        string queryLayout = batched ? "[Batch, Heads, SeqLen, HeadDim]" : "[Heads, SeqLen, HeadDim]", keyLayout = batched ? "[Batch, KvHeads, SeqLen, HeadDim]" : "[KvHeads, SeqLen, HeadDim]";
        CheckLength(nameof(query), query, queryLength, queryLayout, shape.Batch, shape.Heads, shape.SeqLen, headDim, maxLength, container);
        CheckLength(nameof(key), key, keyLength, keyLayout, shape.Batch, shape.KvHeads, shape.SeqLen, headDim, maxLength, container);
        CheckLength(nameof(value), value, keyLength, keyLayout, shape.Batch, shape.KvHeads, shape.SeqLen, headDim, maxLength, container);
        CheckLength(nameof(output), output, queryLength, queryLayout, shape.Batch, shape.Heads, shape.SeqLen, headDim, maxLength, container);
    }

    /// <summary>
    /// Checks a partial call: the slice's ranges lie inside the sequence, and each span holds exactly its part
    /// (query and output [Heads, QueryCount, HeadDim], key and value [KvHeads, KeyCount, HeadDim], log-sum-exp
    /// [Heads, QueryCount]) and shares no memory with another.
    /// </summary>
    /// <exception cref="ArgumentException">A range or a length is wrong; the message names it and the expected size.</exception>
    public static void Validate(int headDim, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> output, Span<float> logSumExp, AttentionSlice slice)
    {
        ValidateSliceLengths(headDim, query.Length, key.Length, value.Length, output.Length, slice, int.MaxValue, "one span");
        if (output.Overlaps(query) || output.Overlaps(key) || output.Overlaps(value))
        {
            throw OutputOverlaps();
        }

        ValidateLogSumExp(logSumExp, query, key, value, output, new AttentionShape(slice.Heads, slice.KvHeads, slice.QueryCount));
    }

    /// <summary>As the span check of a partial call, for device views, which must also live on <paramref name="accelerator"/>.</summary>
    /// <exception cref="ArgumentException">A range or a length is wrong, a view lives elsewhere, or two share memory.</exception>
    public static void Validate(int headDim, Accelerator accelerator, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, ArrayView<float> logSumExp, AttentionSlice slice)
    {
        CheckUsable(accelerator);
        CheckOnAccelerator(nameof(query), query, accelerator);
        CheckOnAccelerator(nameof(key), key, accelerator);
        CheckOnAccelerator(nameof(value), value, accelerator);
        CheckOnAccelerator(nameof(output), output, accelerator);
        ValidateSliceLengths(headDim, query.Length, key.Length, value.Length, output.Length, slice, long.MaxValue, "one view");
        if (Overlaps(output, query) || Overlaps(output, key) || Overlaps(output, value))
        {
            throw OutputOverlaps();
        }

        ValidateLogSumExp(accelerator, logSumExp, query, key, value, output, new AttentionShape(slice.Heads, slice.KvHeads, slice.QueryCount));
    }

    private static void ValidateSliceLengths(int headDim, long query, long key, long value, long output, AttentionSlice slice, long maxLength, string container)
    {
        ValidateShape(slice.Sequence);
        CheckRange("query", slice.QueryStart, slice.QueryCount, slice.SeqLen);
        CheckRange("key", slice.KeyStart, slice.KeyCount, slice.SeqLen);
        Int128 queryLength = (Int128)slice.Heads * slice.QueryCount * headDim;
        Int128 keyLength = (Int128)slice.KvHeads * slice.KeyCount * headDim;
        CheckLength(nameof(query), query, queryLength, "[Heads, QueryCount, HeadDim]", 1, slice.Heads, slice.QueryCount, headDim, maxLength, container);
        CheckLength(nameof(key), key, keyLength, "[KvHeads, KeyCount, HeadDim]", 1, slice.KvHeads, slice.KeyCount, headDim, maxLength, container);
        CheckLength(nameof(value), value, keyLength, "[KvHeads, KeyCount, HeadDim]", 1, slice.KvHeads, slice.KeyCount, headDim, maxLength, container);
        CheckLength(nameof(output), output, queryLength, "[Heads, QueryCount, HeadDim]", 1, slice.Heads, slice.QueryCount, headDim, maxLength, container);

        static void CheckRange(string what, int start, int count, int seqLen)
        {
            if (start < 0 || count < 1 || (long)start + count > seqLen)
            {
                throw new ArgumentException($"The slice's {what} range [{what}Start, {what}Start + {what}Count) = [{start}, {(long)start + count}) must be non-empty and inside the sequence [0, {seqLen}).", "slice");
            }
        }
    }

    /// <summary>
    /// Checks a learned-sink call's <paramref name="sinkLogits"/>: one logit per query head, each finite or -infinity (no
    /// sink for that head).
    /// </summary>
    /// <exception cref="ArgumentException">The length is not <paramref name="heads"/>, or a logit is NaN or +infinity.</exception>
    public static void ValidateSinkLogits(ReadOnlySpan<float> sinkLogits, int heads)
    {
        if (sinkLogits.Length != heads)
        {
            throw new ArgumentException($"sinkLogits must hold one learned sink logit per query head: Heads = {heads} floats; it holds {sinkLogits.Length}.", nameof(sinkLogits));
        }

        for (int head = 0; head < heads; head++)
        {
            if (float.IsNaN(sinkLogits[head]) || float.IsPositiveInfinity(sinkLogits[head]))
            {
                throw new ArgumentException($"sinkLogits[{head}] is {sinkLogits[head]}; a sink logit must be a finite number (or -infinity for no sink).", nameof(sinkLogits));
            }
        }
    }

    /// <summary>Checks that <paramref name="logSumExp"/> holds [Heads, SeqLen] floats and shares no memory with the other tensors.</summary>
    /// <exception cref="ArgumentException">The length is wrong, or it overlaps the output or an input.</exception>
    public static void ValidateLogSumExp(Span<float> logSumExp, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> output, AttentionShape shape)
    {
        long rows = (long)shape.Batch * shape.Heads * shape.SeqLen;
        if (logSumExp.Length != rows)
        {
            throw new ArgumentException(shape.Batch == 1
                ? $"logSumExp must hold [Heads, SeqLen] = {shape.Heads} x {shape.SeqLen} = {rows} floats; it holds {logSumExp.Length}."
                : $"logSumExp must hold [Batch, Heads, SeqLen] = {shape.Batch} x {shape.Heads} x {shape.SeqLen} = {rows} floats; it holds {logSumExp.Length}.", nameof(logSumExp));
        }

        ReadOnlySpan<float> written = logSumExp;
        if (written.Overlaps(output) || written.Overlaps(query) || written.Overlaps(key) || written.Overlaps(value))
        {
            throw new ArgumentException("logSumExp must not share memory with query, key, value or output.", nameof(logSumExp));
        }
    }

    private static ArgumentException OutputOverlaps() =>
        new("output must not share memory with query, key or value: the kernel writes output while it still reads them.", "output");

    /// <summary>Throws unless <paramref name="accelerator"/> can still run kernels: not null, not disposed.</summary>
    public static void CheckUsable(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (accelerator.IsDisposed)
        {
            throw new ArgumentException("accelerator has been disposed; create a new one (or keep its AttentionDevice alive while you use it).", nameof(accelerator));
        }
    }

    internal static void CheckOnAccelerator<T>(string parameter, ArrayView<T> view, Accelerator accelerator)
        where T : unmanaged
    {
        if (!view.IsValid)
        {
            throw new ArgumentException($"{parameter} is not a valid view (a default ArrayView, with no buffer behind it).", parameter);
        }

        // A view keeps its buffer object after the buffer is disposed, and a kernel launched on it reads freed memory
        // (on ILGPU's CPU accelerator it kills the process from a worker thread), so this is checked before every launch.
        if (BufferOf(view).IsDisposed)
        {
            throw new ArgumentException($"{parameter} is a view of a disposed buffer; keep the MemoryBuffer alive (undisposed) until the kernel has run and you have read the output.", parameter);
        }

        if (!ReferenceEquals(view.GetAccelerator(), accelerator))
        {
            throw new ArgumentException($"{parameter} lives on {view.GetAccelerator().Name}, not on the accelerator the kernel runs on ({accelerator.Name}); allocate it with that accelerator.", parameter);
        }
    }

    /// <summary>Two views overlap when they are windows of one buffer whose element ranges intersect.</summary>
    private static bool Overlaps<T>(ArrayView<T> first, ArrayView<T> second)
        where T : unmanaged =>
        ReferenceEquals(BufferOf(first), BufferOf(second))
        && first.Length > 0 && second.Length > 0
        && IndexOf(first) < IndexOf(second) + second.Length
        && IndexOf(second) < IndexOf(first) + first.Length;

    // ArrayView<T> implements Buffer and Index explicitly; a constrained call reads them without boxing.
    private static MemoryBuffer BufferOf<TView>(TView view) where TView : IArrayView => view.Buffer;

    private static long IndexOf<TView>(TView view) where TView : IContiguousArrayView => view.Index;

    /// <summary>Throws when the shape itself is impossible.</summary>
    public static void ValidateShape(AttentionShape shape)
    {
        if (shape.Batch < 1)
        {
            throw new ArgumentException($"Batch must be at least 1; got {shape.Batch}.", nameof(shape));
        }

        if (shape.Heads < 1 || shape.KvHeads < 1 || shape.SeqLen < 1)
        {
            throw new ArgumentException($"Heads, KvHeads and SeqLen must all be at least 1; got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}, SeqLen = {shape.SeqLen}.", nameof(shape));
        }

        if (shape.Heads % shape.KvHeads != 0)
        {
            throw new ArgumentException($"Heads must be a multiple of KvHeads (grouped-query attention shares each KV head among Heads / KvHeads query heads); got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}.", nameof(shape));
        }
    }

    private static void CheckLength(string parameter, long actual, Int128 expected, string layout, int batch, int rows, int seqLen, int headDim, long maxLength, string container)
    {
        string sizes = expected > maxLength || actual != expected ? (batch == 1 ? $"[{rows}, {seqLen}, {headDim}]" : $"[{batch}, {rows}, {seqLen}, {headDim}]") : "";
        if (expected > maxLength)
        {
            throw new ArgumentException($"{parameter} would need {expected} floats ({layout} = {sizes}), more than {container} can hold ({maxLength}).", "shape");
        }

        if (actual != expected)
        {
            throw new ArgumentException($"{parameter} must hold {layout} = {sizes} = {expected} floats, but it holds {actual}.", parameter);
        }
    }
}
