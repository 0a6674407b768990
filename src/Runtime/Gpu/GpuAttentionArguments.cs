using System;

namespace SparseAttention.Gpu;

/// <summary>
/// The scalar arguments of a generated ILGPU attention kernel, passed by value to every thread. A plain struct
/// of primitives because that is what ILGPU can hand to PTX and OpenCL kernels.
/// </summary>
public readonly struct GpuAttentionArguments
{
    /// <summary>log2(e): the kernels run the softmax in base 2, so the score scale carries it.</summary>
    private const float Log2E = 1.44269504088896340736f;

    /// <summary>Creates the arguments for one call.</summary>
    /// <param name="shape">The call's shape (already validated).</param>
    /// <param name="scale">The softmax scale applied to q·k.</param>
    public GpuAttentionArguments(AttentionShape shape, float scale)
    {
        SeqLen = shape.SeqLen;
        QueryHeadsPerKvHead = shape.GroupSize;
        ScoreScale = scale * Log2E;
    }

    /// <summary>Tokens in the sequence.</summary>
    public int SeqLen { get; }

    /// <summary>Heads / KvHeads: query head h reads KV head h / QueryHeadsPerKvHead.</summary>
    public int QueryHeadsPerKvHead { get; }

    /// <summary>The softmax scale times log2(e), folded into the query row as it is loaded.</summary>
    public float ScoreScale { get; }
}
