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

    /// <summary>Widens 16-bit elements by <typeparamref name="TRule"/>'s rule, 16 at a time, the tail one by one.</summary>
    private static void Widen<TRule>(ReadOnlySpan<ushort> source, Span<float> destination)
        where TRule : IWidening
    {
        ref ushort from = ref MemoryMarshal.GetReference(source);
        ref float to = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= source.Length; i += 16)
            {
                Vector256<ushort> bits = Vector256.LoadUnsafe(ref from, (nuint)i);
                TRule.Widen(Vector256.WidenLower(bits)).StoreUnsafe(ref to, (nuint)i);
                TRule.Widen(Vector256.WidenUpper(bits)).StoreUnsafe(ref to, (nuint)(i + 8));
            }
        }

        for (; i < source.Length; i++)
        {
            Unsafe.Add(ref to, i) = TRule.Widen(Unsafe.Add(ref from, i));
        }
    }

    /// <summary>How one 16-bit format becomes float: lane-wise on its bits (zero-extended to 32), and one at a time.</summary>
    private interface IWidening
    {
        static abstract Vector256<float> Widen(Vector256<uint> bits);

        static abstract float Widen(ushort bits);
    }

    /// <summary>
    /// Half by bits: the exponent and mantissa shifted into place and rescaled by 2^112 (which also turns a half denormal
    /// into the right float), infinities and NaNs (exponent 31) given float's top exponent with their payload, the sign
    /// put back. Several times TensorPrimitives' conversion on x64, where .NET exposes no F16C instruction; exact for
    /// every half value (tested exhaustively).
    /// </summary>
    private readonly struct HalfBits : IWidening
    {
        public static Vector256<float> Widen(Vector256<uint> half)
        {
            Vector256<uint> magnitude = half & Vector256.Create(0x7FFFu);
            Vector256<float> finite = Vector256.ShiftLeft(magnitude, 13).AsSingle() * Vector256.Create(5.192296858534828e+33f); // 2^112
            Vector256<uint> special = Vector256.ShiftLeft(magnitude, 13) | Vector256.Create(0x7F800000u);
            Vector256<uint> result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)), special, finite.AsUInt32());
            return (result | Vector256.ShiftLeft(half & Vector256.Create(0x8000u), 16)).AsSingle();
        }

        public static float Widen(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
    }

    /// <summary>BFloat16: its bits are the top half of the float's.</summary>
    private readonly struct BFloat16Bits : IWidening
    {
        public static Vector256<float> Widen(Vector256<uint> bits) => Vector256.ShiftLeft(bits, 16).AsSingle();

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
