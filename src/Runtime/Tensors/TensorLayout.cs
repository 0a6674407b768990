using System;

namespace SparseAttention.Tensors;

/// <summary>
/// One attention tensor's logical shape [Batch, Heads, SeqLen, HeadDim] (rank 3 has Batch 1) and its strides in elements,
/// checked against what the kernels need, with the copies that bring one sequence of it into the kernels' fp32
/// [Heads, SeqLen, HeadDim] layout and back.
/// </summary>
internal readonly struct TensorLayout
{
    private TensorLayout(string name, int rank, int batch, int heads, int seqLen, int headDim, nint batchStride, nint headStride, nint rowStride)
    {
        Name = name;
        Rank = rank;
        Batch = batch;
        Heads = heads;
        SeqLen = seqLen;
        HeadDim = headDim;
        BatchStride = batchStride;
        HeadStride = headStride;
        RowStride = rowStride;
    }

    public string Name { get; }

    public int Rank { get; }

    public int Batch { get; }

    public int Heads { get; }

    public int SeqLen { get; }

    public int HeadDim { get; }

    public nint BatchStride { get; }

    public nint HeadStride { get; }

    public nint RowStride { get; }

    /// <summary>Elements from the tensor's first element to its last, inclusive (non-negative strides).</summary>
    public long Reach => (Batch - 1) * (long)BatchStride + (Heads - 1) * (long)HeadStride + (SeqLen - 1) * (long)RowStride + HeadDim;

    /// <summary><see cref="Reach"/> as a span length (only for a tensor the kernels read in place).</summary>
    public int Extent => checked((int)Reach);

    /// <summary>
    /// Whether the fp32 kernels can read (or write) this tensor in place through its strides: none negative, the tensor
    /// within one span, and a stream's row stride (up to SeqLen rows, for a dilated stream) within 32 bits.
    /// </summary>
    public bool KernelsReadInPlace =>
        BatchStride >= 0 && HeadStride >= 0 && RowStride >= 0 && Reach <= int.MaxValue && (long)RowStride * SeqLen <= int.MaxValue;

    /// <summary>The strides as the kernels take them (batch stride 0 for rank 3, which has one sequence).</summary>
    public Cpu.RowStrides Strides => new(BatchStride, HeadStride, RowStride);

    private static readonly string[] Rank4Names = { "Batch", "Heads", "SeqLen", "HeadDim" }, Rank3Names = { "Heads", "SeqLen", "HeadDim" };

    /// <summary>Reads a tensor's lengths and strides.</summary>
    /// <exception cref="ArgumentException">Rank not 3 or 4, an empty or negative dimension, HeadDim not the kernel's, or the last dimension not contiguous (named <paramref name="name"/>).</exception>
    public static TensorLayout Of(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, string name, int headDim)
    {
        if (lengths.Length is not (3 or 4))
        {
            throw new ArgumentException($"{name} must be of rank 4 [Batch, Heads, SeqLen, HeadDim] or 3 [Heads, SeqLen, HeadDim]; it has rank {lengths.Length}.", name);
        }

        int offset = lengths.Length - 3;
        string[] names = offset == 1 ? Rank4Names : Rank3Names;
        for (int d = 0; d < lengths.Length; d++)
        {
            if (lengths[d] < 1 || lengths[d] > int.MaxValue)
            {
                throw new ArgumentException($"{name}'s dimension {d} ({names[d]}) must be between 1 and {int.MaxValue}; it is {lengths[d]}.", name);
            }
        }

        if (lengths[^1] != headDim)
        {
            throw new ArgumentException($"{name}'s last dimension (HeadDim) must be this kernel's HeadDim = {headDim}; it is {lengths[^1]}.", name);
        }

        if (strides[^1] != 1)
        {
            throw new ArgumentException($"{name}'s last dimension (HeadDim) must be contiguous (stride 1); its stride is {strides[^1]}. Pass a view whose rows are contiguous, e.g. [B, S, H, D] permuted to [B, H, S, D].", name);
        }

        return new TensorLayout(
            name, lengths.Length, offset == 1 ? (int)lengths[0] : 1, (int)lengths[offset], (int)lengths[offset + 1], headDim,
            offset == 1 ? strides[0] : 0, strides[offset], strides[offset + 1]);
    }

    /// <summary>All four tensors of one rank.</summary>
    public static void CheckSameRank(TensorLayout query, TensorLayout key, TensorLayout value, TensorLayout output)
    {
        Check(key);
        Check(value);
        Check(output);

        void Check(TensorLayout other)
        {
            if (other.Rank != query.Rank)
            {
                throw new ArgumentException($"{other.Name} has rank {other.Rank} but query has rank {query.Rank}; all four tensors must have the same rank.", other.Name);
            }
        }
    }

    /// <summary><paramref name="other"/> has <paramref name="reference"/>'s lengths (output like query, value like key).</summary>
    public static void CheckMatch(TensorLayout reference, TensorLayout other, string name, string headsName)
    {
        Check(reference.Batch, other.Batch, "Batch");
        Check(reference.Heads, other.Heads, headsName);
        Check(reference.SeqLen, other.SeqLen, "SeqLen");

        void Check(int expected, int actual, string dimension)
        {
            if (expected != actual)
            {
                throw new ArgumentException($"{name}'s {dimension} is {actual}, but {reference.Name}'s is {expected}; they must match.", name);
            }
        }
    }

    /// <summary>Keys cover the queries' batch and sequence, and their heads divide the query heads.</summary>
    public static void CheckSequences(TensorLayout query, TensorLayout key)
    {
        if (key.Batch != query.Batch)
        {
            throw new ArgumentException($"key's Batch is {key.Batch}, but query's is {query.Batch}; they must match.", "key");
        }

        if (key.SeqLen != query.SeqLen)
        {
            throw new ArgumentException($"key's SeqLen is {key.SeqLen}, but query's is {query.SeqLen}; they must match.", "key");
        }

        if (query.Heads % key.Heads != 0)
        {
            throw new ArgumentException($"query's Heads ({query.Heads}) must be a multiple of key's KvHeads ({key.Heads}): grouped-query attention shares each KV head among Heads / KvHeads query heads.", "key");
        }
    }

    /// <summary>
    /// Rejects strides under which two elements of this (output) tensor share memory: taken by size, each stride must step
    /// over everything the dimensions with smaller strides reach (the largest offset they address).
    /// </summary>
    public void CheckNoSelfOverlap()
    {
        Span<(nint Stride, int Length)> dims = stackalloc (nint, int)[] { (1, HeadDim), (RowStride, SeqLen), (HeadStride, Heads), (BatchStride, Batch) };
        dims.Sort((a, b) => a.Stride.CompareTo(b.Stride));
        nint span = 0;
        foreach ((nint stride, int length) in dims)
        {
            if (length == 1)
            {
                continue;
            }

            if (stride <= span)
            {
                throw new ArgumentException($"{Name}'s strides make two of its elements share memory (stride {stride} within a span of {span}); the output needs one place per element.", Name);
            }

            span += stride * (length - 1);
        }
    }

    /// <summary>Copies head <paramref name="head"/> of sequence <paramref name="batch"/> into fp32 [Heads, SeqLen, HeadDim] at <paramref name="destination"/>.</summary>
    public unsafe void GatherHead<T>(T* origin, int batch, int head, float* destination)
        where T : unmanaged
    {
        for (int row = 0; row < SeqLen; row++)
        {
            T* first = origin + batch * BatchStride + head * HeadStride + row * RowStride;
            ElementConversion.ToSingle(new ReadOnlySpan<T>(first, HeadDim), new Span<float>(destination + ((long)head * SeqLen + row) * HeadDim, HeadDim));
        }
    }

    /// <summary>Writes head <paramref name="head"/> of fp32 [Heads, SeqLen, HeadDim] <paramref name="source"/> into sequence <paramref name="batch"/> of this tensor.</summary>
    public unsafe void ScatterHead<T>(float* source, T* origin, int batch, int head)
        where T : unmanaged
    {
        for (int row = 0; row < SeqLen; row++)
        {
            T* first = origin + batch * BatchStride + head * HeadStride + row * RowStride;
            ElementConversion.FromSingle(new ReadOnlySpan<float>(source + ((long)head * SeqLen + row) * HeadDim, HeadDim), new Span<T>(first, HeadDim));
        }
    }
}
