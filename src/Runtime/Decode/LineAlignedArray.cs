using System;

namespace SparseAttention.Decode;

/// <summary>
/// A KV cache tensor's memory: native, never moved, element 0 on a 64-byte cache line, and (see <see cref="LargePages"/>)
/// on 2 MiB pages where the operating system gives them. A KV cache row of HeadDim 128 fp32 is exactly eight lines when
/// it starts on one; from a plain array (16 bytes past an 8-byte-aligned object) every 512-bit load of a row straddles
/// two lines and each row touches nine, which cost decode a tenth of its bandwidth. Zeroed when created. The memory is
/// freed when the owning object is collected.
/// </summary>
internal readonly unsafe struct LineAlignedArray<T>
    where T : unmanaged
{
    // The struct is copied freely (KvCache holds it by value); the one owner object frees the memory once.
    private readonly LargePages.Block? _block;

    public LineAlignedArray(int length)
    {
        _block = LargePages.Allocate((long)length * sizeof(T));
        Length = length;
    }

    /// <summary>Elements held (0 for the default, empty buffer).</summary>
    public int Length { get; }

    /// <summary>Element 0, on a line boundary (in fact on a page); null when empty.</summary>
    public T* Start => Length == 0 ? null : (T*)_block!.Pointer;

    public Span<T> Slice(int offset, int length)
    {
        // The bounds a managed array gave for free: a slice past the end is a bug, never a read of other memory.
        if ((uint)offset > (uint)Length || (uint)length > (uint)(Length - offset))
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset}+{length}) is outside the buffer's {Length} elements.");
        }

        return new Span<T>(Start + offset, length);
    }
}
