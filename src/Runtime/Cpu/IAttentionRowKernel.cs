using System;
using System.ComponentModel;

namespace SparseAttention.Cpu;

/// <summary>
/// What the source generator emits for each declared kernel and instruction set: attention for one query
/// row over a list of key segments, with HeadDim and tile sizes as compile-time constants. The runtime's
/// <see cref="CpuAttention"/> calls it through a struct type parameter, so each call site is specialised
/// and inlined by the JIT; nothing is looked up or compiled at run time.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public interface IAttentionRowKernel
{
    /// <summary>Size of one head's vector.</summary>
    static abstract int HeadDim { get; }

    /// <summary>Floats of per-thread scratch <see cref="ComputeRow"/> needs (one key tile of scores).</summary>
    static abstract int ScratchLength { get; }

    /// <summary>
    /// Computes one output row: softmax(q·K^T * scale) V over exactly the keys in <paramref name="segments"/>.
    /// <paramref name="keys"/> and <paramref name="values"/> point at key position 0 of the row's KV head;
    /// the key at position j starts at offset j * HeadDim. A row with no segment is written as zeros.
    /// </summary>
    static abstract void ComputeRow(ref float query, ref float keys, ref float values, ref float output, ReadOnlySpan<KeySegment> segments, float scale, Span<float> scratch);
}
