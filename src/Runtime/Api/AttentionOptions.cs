using System;
using System.Runtime.Intrinsics;

namespace SparseAttention;

/// <summary>
/// Optional settings of one attention call. Every setting is checked when it is set, so an options object that
/// exists is one every kernel can run: a bad value throws <see cref="ArgumentOutOfRangeException"/> naming the
/// property and what it accepts.
/// </summary>
public sealed record AttentionOptions
{
    private readonly float? _scale;
    private readonly KernelIsa _isa;
    private readonly int? _maxDegreeOfParallelism;
    private readonly ReadOnlyMemory<float>? _alibiSlopes;

    /// <summary>The defaults: scale 1/sqrt(HeadDim), best ISA, all cores.</summary>
    public static AttentionOptions Default { get; } = new();

    /// <summary>
    /// Softmax scale applied to q·k; null means 1/sqrt(HeadDim). It must be greater than 0 and at most
    /// <see cref="MaxScale"/>: a NaN or infinite scale would make every score NaN or infinite, 0 or a negative scale is
    /// almost always a bug (scale the query yourself if you mean it), and the kernels run the softmax in base 2, so
    /// Scale x log2(e) must itself be a finite float.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is NaN, 0, negative or above <see cref="MaxScale"/>.</exception>
    public float? Scale
    {
        get => _scale;
        init
        {
            if (value is float scale && !(scale > 0f && scale <= MaxScale))
            {
                throw new ArgumentOutOfRangeException(nameof(Scale), scale, $"Scale must be greater than 0 and at most {MaxScale:R} (Scale x log2(e) must be a finite float, as the kernels work in base 2); use null for 1/sqrt(HeadDim).");
            }

            _scale = value;
        }
    }

    /// <summary>The largest <see cref="Scale"/>: the largest float whose product with log2(e) is still finite (about 2.36e38).</summary>
    public static float MaxScale { get; } = FindMaxScale();

    /// <summary>
    /// The CPU instruction set to run with. <see cref="KernelIsa.Auto"/> picks the widest one the machine
    /// accelerates; naming one forces it (a width the machine lacks still runs, in software, slowly).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not one of <see cref="KernelIsa"/>'s named values.</exception>
    public KernelIsa Isa
    {
        get => _isa;
        init
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(Isa), value, "Isa must be one of KernelIsa's values: Auto, Scalar, Vector128, Vector256 or Vector512.");
            }

            _isa = value;
        }
    }

    /// <summary>Most threads one call may use: at least 1, or null for all cores.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is 0 or negative.</exception>
    public int? MaxDegreeOfParallelism
    {
        get => _maxDegreeOfParallelism;
        init
        {
            if (value is int threads && threads < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), threads, "MaxDegreeOfParallelism must be at least 1 (or null for all cores).");
            }

            _maxDegreeOfParallelism = value;
        }
    }

    /// <summary>
    /// ALiBi slopes, one per query head, for kernels declared with <c>[Alibi]</c>; null for the paper's defaults
    /// (<see cref="SparseAttention.AlibiSlopes"/>). Each must be finite; the length is checked against Heads at the call.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A slope is NaN or infinite.</exception>
    public ReadOnlyMemory<float>? AlibiSlopes
    {
        get => _alibiSlopes;
        init
        {
            if (value is { } slopes)
            {
                foreach (float slope in slopes.Span)
                {
                    if (!float.IsFinite(slope))
                    {
                        throw new ArgumentOutOfRangeException(nameof(AlibiSlopes), slope, "AlibiSlopes must all be finite numbers.");
                    }
                }
            }

            _alibiSlopes = value;
        }
    }

    /// <summary>Counts down from the float just below float.MaxValue / log2(e) until the kernels' own product is finite.</summary>
    private static float FindMaxScale()
    {
        float scale = (float)(float.MaxValue / 1.4426950408889634);
        while (!float.IsFinite(scale * Cpu.VectorMath.Log2E))
        {
            scale = MathF.BitDecrement(scale);
        }

        while (float.IsFinite(MathF.BitIncrement(scale) * Cpu.VectorMath.Log2E))
        {
            scale = MathF.BitIncrement(scale);
        }

        return scale;
    }

    /// <summary>The scale to use for a kernel of <paramref name="headDim"/>.</summary>
    public float ResolveScale(int headDim) => Scale ?? (float)(1.0 / Math.Sqrt(headDim));

    /// <summary>The ISA that <see cref="Isa"/> means on this machine.</summary>
    public KernelIsa ResolveIsa() => Isa != KernelIsa.Auto ? Isa
        : Vector512.IsHardwareAccelerated ? KernelIsa.Vector512
        : Vector256.IsHardwareAccelerated ? KernelIsa.Vector256
        : Vector128.IsHardwareAccelerated ? KernelIsa.Vector128
        : KernelIsa.Scalar;
}
