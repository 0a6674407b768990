using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SparseAttention.Decode;

/// <summary>
/// A pinned array whose element 0 starts on a 64-byte cache line. A KV cache row of HeadDim 128 fp32 is exactly eight
/// lines when it starts on one; from a plain array (16 bytes past an 8-byte-aligned object) every 512-bit load of a row
/// straddles two lines and each row touches nine, which cost decode a tenth of its bandwidth.
/// </summary>
internal readonly unsafe struct LineAlignedArray<T>
    where T : unmanaged
{
    private const int LineBytes = 64;

    // The array is on the pinned heap, so the offset that aligns its start stays right for its whole life.
    private readonly T[]? _array;
    private readonly int _start;

    public LineAlignedArray(int length)
    {
        int lineElements = LineBytes / sizeof(T);
        _array = GC.AllocateArray<T>(length + lineElements, pinned: true);
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_array));
        _start = (int)((LineBytes - address % LineBytes) % LineBytes) / sizeof(T);
        Length = length;
    }

    /// <summary>Elements held (0 for the default, empty buffer).</summary>
    public int Length { get; }

    /// <summary>Element 0, on a line boundary; null when empty.</summary>
    public T* Start => Length == 0 ? null : (T*)Unsafe.AsPointer(ref _array![_start]);

    public Span<T> Slice(int offset, int length) => _array.AsSpan(_start + offset, length);
}
