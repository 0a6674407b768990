using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Tensors;

/// <summary>
/// The element types attention takes (float, <see cref="Half"/>, <see cref="BFloat16"/>) and their conversions to and
/// from the fp32 the kernels compute in, a run of elements at a time: Half through TensorPrimitives (vectorised in the
/// base library), BFloat16 here (a shift to widen; round to nearest even, NaN kept quiet, to narrow).
/// </summary>
internal static class ElementConversion
{
    /// <summary>Whether <typeparamref name="T"/> is an element type attention takes.</summary>
    public static bool IsSupported<T>() => typeof(T) == typeof(float) || typeof(T) == typeof(Half) || typeof(T) == typeof(BFloat16);

    /// <summary>The error for any other element type, naming the parameter.</summary>
    public static ArgumentException Unsupported<T>(string parameter) =>
        new($"Attention takes float, System.Half or SparseAttention.BFloat16 elements; {typeof(T).Name} is none of them.", parameter);

    /// <summary>Widens <paramref name="source"/> into <paramref name="destination"/> (same length).</summary>
    public static void ToSingle<T>(ReadOnlySpan<T> source, Span<float> destination)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            MemoryMarshal.Cast<T, float>(source).CopyTo(destination);
        }
        else if (typeof(T) == typeof(Half))
        {
            WidenHalf(MemoryMarshal.Cast<T, ushort>(source), destination);
        }
        else
        {
            WidenBFloat16(MemoryMarshal.Cast<T, ushort>(source), destination);
        }
    }

    /// <summary>Widens a narrow KV cache's elements (<paramref name="element"/> is Half or BFloat16) into <paramref name="destination"/>.</summary>
    public static void ToSingle(CacheElement element, ReadOnlySpan<ushort> bits, Span<float> destination)
    {
        if (element == CacheElement.Half)
        {
            WidenHalf(bits, destination);
        }
        else
        {
            WidenBFloat16(bits, destination);
        }
    }

    /// <summary>Whether any of the Half values (their bits) is an infinity or NaN (exponent bits all set).</summary>
    public static bool HoldsHalfInfinityOrNaN(ReadOnlySpan<ushort> bits)
    {
        ref ushort from = ref MemoryMarshal.GetReference(bits);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= bits.Length; i += 16)
            {
                if (HalfBits.HasSpecial(Vector256.LoadUnsafe(ref from, (nuint)i)))
                {
                    return true;
                }
            }
        }

        for (; i < bits.Length; i++)
        {
            if ((Unsafe.Add(ref from, i) & 0x7C00) == 0x7C00)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Narrows <paramref name="source"/> into <paramref name="destination"/> (same length), rounding to nearest even.</summary>
    public static void FromSingle<T>(ReadOnlySpan<float> source, Span<T> destination)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            source.CopyTo(MemoryMarshal.Cast<T, float>(destination));
        }
        else if (typeof(T) == typeof(Half))
        {
            TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<T, Half>(destination));
        }
        else
        {
            NarrowBFloat16(source, MemoryMarshal.Cast<T, ushort>(destination));
        }
    }

    private static void WidenHalf(ReadOnlySpan<ushort> source, Span<float> destination) => Widen<HalfBits>(source, destination);

    private static void WidenBFloat16(ReadOnlySpan<ushort> source, Span<float> destination) => Widen<BFloat16Bits>(source, destination);

    /// <summary>
    /// Widens 16-bit elements by <typeparamref name="TRule"/>'s rule: 32 (or 16) at a time from their bits sign-extended to
    /// 32, the tail one by one. A vector holding a Half infinity or NaN takes the exact rule instead (see <see cref="HalfBits"/>).
    /// </summary>
    private static void Widen<TRule>(ReadOnlySpan<ushort> source, Span<float> destination)
        where TRule : IWidening
    {
        ref ushort from = ref MemoryMarshal.GetReference(source);
        ref float to = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= source.Length; i += 32)
            {
                Vector512<short> bits = Vector512.LoadUnsafe(ref from, (nuint)i).AsInt16();
                if (TRule.HasSpecial(bits.AsUInt16()))
                {
                    break;
                }

                TRule.Widen(Vector512.WidenLower(bits)).StoreUnsafe(ref to, (nuint)i);
                TRule.Widen(Vector512.WidenUpper(bits)).StoreUnsafe(ref to, (nuint)(i + 16));
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= source.Length; i += 16)
            {
                Vector256<short> bits = Vector256.LoadUnsafe(ref from, (nuint)i).AsInt16();
                if (TRule.HasSpecial(bits.AsUInt16()))
                {
                    TRule.WidenExactly(Vector256.WidenLower(bits.AsUInt16())).StoreUnsafe(ref to, (nuint)i);
                    TRule.WidenExactly(Vector256.WidenUpper(bits.AsUInt16())).StoreUnsafe(ref to, (nuint)(i + 8));
                }
                else
                {
                    TRule.Widen(Vector256.WidenLower(bits)).StoreUnsafe(ref to, (nuint)i);
                    TRule.Widen(Vector256.WidenUpper(bits)).StoreUnsafe(ref to, (nuint)(i + 8));
                }
            }
        }

        for (; i < source.Length; i++)
        {
            Unsafe.Add(ref to, i) = TRule.Widen(Unsafe.Add(ref from, i));
        }
    }

    /// <summary>2^112: a Half's bits moved into a float's place give the value times 2^-112.</summary>
    internal const float TwoTo112 = 5.192296858534828e+33f;

    private const int SignExponentMantissa = unchecked((int)0x8FFFE000);

    /// <summary>
    /// Finite Half values times 2^-112, from their bits sign-extended to 32: shifted left 13 the sign sits in bit 31 and
    /// exponent and mantissa in bits 27..13; with bits 30..28 cleared the float is exactly 2^-112 times the half (a half
    /// denormal included, as a float denormal). An infinity or NaN comes out finite.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfScaledDownFromSignExtended(Vector512<int> bits) => (Vector512.ShiftLeft(bits, 13) & Vector512.Create(SignExponentMantissa)).AsSingle();

    /// <inheritdoc cref="HalfScaledDownFromSignExtended(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfScaledDownFromSignExtended(Vector256<int> bits) => (Vector256.ShiftLeft(bits, 13) & Vector256.Create(SignExponentMantissa)).AsSingle();

    /// <inheritdoc cref="HalfScaledDownFromSignExtended(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> HalfScaledDownFromSignExtended(Vector128<int> bits) => (Vector128.ShiftLeft(bits, 13) & Vector128.Create(SignExponentMantissa)).AsSingle();

    /// <summary>Finite Half values from their bits sign-extended to 32: <see cref="HalfScaledDownFromSignExtended(Vector512{int})"/> times 2^112, exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfFromSignExtended(Vector512<int> bits) => HalfScaledDownFromSignExtended(bits) * Vector512.Create(TwoTo112);

    /// <inheritdoc cref="HalfFromSignExtended(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfFromSignExtended(Vector256<int> bits) => HalfScaledDownFromSignExtended(bits) * Vector256.Create(TwoTo112);

    /// <summary>BFloat16 values from their bits sign-extended to 32: the bits are the float's top half (exact for every value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> BFloat16FromSignExtended(Vector512<int> bits) => Vector512.ShiftLeft(bits, 16).AsSingle();

    /// <inheritdoc cref="BFloat16FromSignExtended(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> BFloat16FromSignExtended(Vector256<int> bits) => Vector256.ShiftLeft(bits, 16).AsSingle();

    /// <inheritdoc cref="BFloat16FromSignExtended(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> BFloat16FromSignExtended(Vector128<int> bits) => Vector128.ShiftLeft(bits, 16).AsSingle();

    /// <summary>
    /// How one 16-bit format becomes float: lane-wise from its bits sign-extended to 32 (the fast rule, for vectors without
    /// <see cref="HasSpecial(Vector512{ushort})"/> values), exactly for any bits, and one at a time.
    /// </summary>
    private interface IWidening
    {
        static abstract bool HasSpecial(Vector512<ushort> bits);

        static abstract bool HasSpecial(Vector256<ushort> bits);

        static abstract Vector512<float> Widen(Vector512<int> signExtended);

        static abstract Vector256<float> Widen(Vector256<int> signExtended);

        static abstract Vector256<float> WidenExactly(Vector256<uint> bits);

        static abstract float Widen(ushort bits);
    }

    /// <summary>
    /// Half by bits. The fast rule, for finite values (4 operations per vector; .NET exposes no F16C instruction): shifted
    /// left 13, the sign-extended bits hold the sign in bit 31 and exponent and mantissa in bits 27..13; clearing bits 30..28
    /// leaves a float 2^-112 times the half (a half denormal included), and multiplying by 2^112 is exact. The exact rule also
    /// gives infinities and NaNs (exponent 31) float's top exponent with their payload; a vector holding one takes it.
    /// Both are exact for every half value they take (tested exhaustively).
    /// </summary>
    private readonly struct HalfBits : IWidening
    {

        public static bool HasSpecial(Vector512<ushort> bits) => Vector512.GreaterThanOrEqualAny(bits & Vector512.Create((ushort)0x7FFF), Vector512.Create((ushort)0x7C00));

        public static bool HasSpecial(Vector256<ushort> bits) => Vector256.GreaterThanOrEqualAny(bits & Vector256.Create((ushort)0x7FFF), Vector256.Create((ushort)0x7C00));

        public static Vector512<float> Widen(Vector512<int> signExtended) => HalfFromSignExtended(signExtended);

        public static Vector256<float> Widen(Vector256<int> signExtended) => HalfFromSignExtended(signExtended);

        public static Vector256<float> WidenExactly(Vector256<uint> half)
        {
            Vector256<uint> magnitude = half & Vector256.Create(0x7FFFu);
            Vector256<float> finite = Vector256.ShiftLeft(magnitude, 13).AsSingle() * Vector256.Create(TwoTo112);
            Vector256<uint> special = Vector256.ShiftLeft(magnitude, 13) | Vector256.Create(0x7F800000u);
            Vector256<uint> result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)), special, finite.AsUInt32());
            return (result | Vector256.ShiftLeft(half & Vector256.Create(0x8000u), 16)).AsSingle();
        }

        public static float Widen(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
    }

    /// <summary>BFloat16: its bits are the top half of the float's, so a shift left by 16 is exact for every value.</summary>
    private readonly struct BFloat16Bits : IWidening
    {
        public static bool HasSpecial(Vector512<ushort> bits) => false;

        public static bool HasSpecial(Vector256<ushort> bits) => false;

        public static Vector512<float> Widen(Vector512<int> signExtended) => BFloat16FromSignExtended(signExtended);

        public static Vector256<float> Widen(Vector256<int> signExtended) => BFloat16FromSignExtended(signExtended);

        public static Vector256<float> WidenExactly(Vector256<uint> bits) => Vector256.ShiftLeft(bits, 16).AsSingle();

        public static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
    }

    private static void NarrowBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        ref float from = ref MemoryMarshal.GetReference(source);
        ref ushort to = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= source.Length; i += 16)
            {
                Vector256<uint> low = Round(Vector256.LoadUnsafe(ref from, (nuint)i));
                Vector256<uint> high = Round(Vector256.LoadUnsafe(ref from, (nuint)(i + 8)));
                Vector256.Narrow(low, high).StoreUnsafe(ref to, (nuint)i);
            }
        }

        for (; i < source.Length; i++)
        {
            Unsafe.Add(ref to, i) = BFloat16.Round(Unsafe.Add(ref from, i));
        }

        // The scalar rule of BFloat16.Round, lane-wise: add half an ulp of the kept part (less one when it is even), keep
        // the top half; a NaN keeps its sign and top payload with the quiet bit set.
        static Vector256<uint> Round(Vector256<float> value)
        {
            Vector256<uint> bits = value.AsUInt32();
            Vector256<uint> rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One), 16);
            Vector256<uint> quietNaN = Vector256.ShiftRightLogical(bits, 16) | Vector256.Create(0x0040u);
            return Vector256.ConditionalSelect(Vector256.Equals(value, value).AsUInt32(), rounded, quietNaN);
        }
    }
}
