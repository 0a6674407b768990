using System;
using System.Linq;

namespace SparseAttention;

/// <summary>
/// The grid a call's tokens lie on, for a [Neighborhood] kernel: a length per axis (1 to 3), tokens flattened row-major
/// with the last axis fastest, so the product of the lengths is the call's SeqLen (e.g. <c>new GridShape(56, 56)</c> for
/// 3,136 image patches, <c>new GridShape(frames, height, width)</c> for a video).
/// </summary>
public readonly struct GridShape : IEquatable<GridShape>
{
    private readonly int[]? _lengths;

    /// <summary>Creates the grid from its lengths per axis (checked against the kernel when it is used).</summary>
    public GridShape(params int[] lengths)
    {
        _lengths = (lengths ?? throw new ArgumentNullException(nameof(lengths))).ToArray();
    }

    /// <summary>Lengths per axis.</summary>
    public ReadOnlySpan<int> Lengths => _lengths;

    /// <summary>Tokens on the grid: the product of the lengths.</summary>
    public long Tokens => (_lengths ?? Array.Empty<int>()).Aggregate(1L, (product, length) => product * length);

    /// <inheritdoc/>
    public bool Equals(GridShape other) => Lengths.SequenceEqual(other.Lengths);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is GridShape other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => (_lengths ?? Array.Empty<int>()).Aggregate(17, (hash, length) => hash * 31 + length);

    /// <summary>The lengths as "56 x 56".</summary>
    public override string ToString() => string.Join(" x ", _lengths ?? Array.Empty<int>());
}
