using System;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace SparseAttention;

/// <summary>
/// A brain floating-point number: the top 16 bits of an IEEE <see cref="float"/> (sign, 8 exponent bits, 7 mantissa
/// bits), the format bf16 models and KV caches are stored in. .NET 10 has no BFloat16 type, so the library carries this
/// small one until the base library does; it only converts (round to nearest, ties to even) and compares — arithmetic
/// happens in fp32, as the kernels do.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>, IFormattable
{
    private BFloat16(ushort bits) => RawValue = bits;

    /// <summary>The 16 bits as stored.</summary>
    public ushort RawValue { get; }

    /// <summary>Reinterprets stored bits as a BFloat16.</summary>
    public static BFloat16 FromRawValue(ushort bits) => new(bits);

    /// <summary>Rounds a float to the nearest BFloat16 (ties to even); NaN stays NaN (quiet), infinities stay infinite.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator BFloat16(float value) => new(Round(value));

    /// <summary>Widens exactly: every BFloat16 is a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator float(BFloat16 value) => BitConverter.UInt32BitsToSingle((uint)value.RawValue << 16);

    /// <summary>The rounding of <see cref="op_Explicit(float)"/>.</summary>
    internal static ushort Round(float value) => RoundBits(BitConverter.SingleToUInt32Bits(value));

    /// <summary>
    /// The rounding on a float's bits, in integer operations only, so the GPU conversion kernel runs the same rule: add half
    /// an ulp of the kept part (less one when the kept part is even), then truncate; a NaN keeps its sign and top payload
    /// with the quiet bit set.
    /// </summary>
    internal static ushort RoundBits(uint bits) =>
        (bits & 0x7FFFFFFFu) > 0x7F800000u
            ? (ushort)((bits >> 16) | 0x0040u)
            : (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);

    /// <summary>Whether this is NaN.</summary>
    public bool IsNaN => (RawValue & 0x7FFF) > 0x7F80;

    /// <inheritdoc/>
    public bool Equals(BFloat16 other) => ((float)this).Equals((float)other);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => ((float)this).GetHashCode();

    /// <inheritdoc/>
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);

    /// <summary>Equal as numbers (NaN equals nothing; +0 equals -0).</summary>
    public static bool operator ==(BFloat16 left, BFloat16 right) => (float)left == (float)right;

    /// <summary>Not equal as numbers.</summary>
    public static bool operator !=(BFloat16 left, BFloat16 right) => (float)left != (float)right;

    /// <inheritdoc/>
    public override string ToString() => ((float)this).ToString(CultureInfo.CurrentCulture);

    /// <inheritdoc/>
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
}
