using System;
using System.Runtime.Intrinsics;

namespace SparseAttention;

/// <summary>Optional settings of one attention call.</summary>
public sealed record AttentionOptions
{
    /// <summary>The defaults: scale 1/sqrt(HeadDim), best ISA, all cores.</summary>
    public static AttentionOptions Default { get; } = new();

    /// <summary>Softmax scale applied to q·k; null means 1/sqrt(HeadDim).</summary>
    public float? Scale { get; init; }

    /// <summary>
    /// The CPU instruction set to run with. <see cref="KernelIsa.Auto"/> picks the widest one the machine
    /// accelerates; naming one forces it (a width the machine lacks still runs, in software, slowly).
    /// </summary>
    public KernelIsa Isa { get; init; }

    /// <summary>Most threads one call may use; null means all cores.</summary>
    public int? MaxDegreeOfParallelism { get; init; }

    /// <summary>The scale to use for a kernel of <paramref name="headDim"/>.</summary>
    public float ResolveScale(int headDim) => Scale ?? (float)(1.0 / Math.Sqrt(headDim));

    /// <summary>The ISA that <see cref="Isa"/> means on this machine.</summary>
    public KernelIsa ResolveIsa() => Isa != KernelIsa.Auto ? Isa
        : Vector512.IsHardwareAccelerated ? KernelIsa.Vector512
        : Vector256.IsHardwareAccelerated ? KernelIsa.Vector256
        : Vector128.IsHardwareAccelerated ? KernelIsa.Vector128
        : KernelIsa.Scalar;
}
