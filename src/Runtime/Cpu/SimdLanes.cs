using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace SparseAttention.Cpu;

/// <summary>
/// One vector width of float, behind static methods, so a kernel the runtime (not the generator) owns is written once and
/// specialised by the JIT for Vector512, Vector256 and Vector128 (.NET's own <c>ISimdVector</c> is not public). Every
/// member is a one-line forward to the width's intrinsic and inlines away; <see cref="SumEach"/> is the one piece with
/// per-width code.
/// </summary>
/// <typeparam name="TVector">The vector type of the width.</typeparam>
internal unsafe interface ISimdLanes<TVector>
    where TVector : unmanaged
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    static abstract TVector Zero { get; }

    static abstract TVector Create(float value);

    static abstract TVector Load(float* source);

    static abstract void Store(TVector value, float* destination);

    /// <summary>The vector at <paramref name="source"/> + <paramref name="index"/> floats, through a managed reference (memory the GC may move).</summary>
    static abstract TVector LoadUnsafe(ref float source, nint index);

    static abstract void StoreUnsafe(TVector value, ref float destination, nint index);

    static abstract TVector Add(TVector left, TVector right);

    static abstract TVector Subtract(TVector left, TVector right);

    static abstract TVector Multiply(TVector left, TVector right);

    /// <summary><paramref name="left"/> x <paramref name="right"/> + <paramref name="addend"/>, fused.</summary>
    static abstract TVector MultiplyAdd(TVector left, TVector right, TVector addend);

    /// <summary>Lane-wise maximum of scores by the hardware's max (<see cref="VectorMath.ScoreMax(Vector512{float}, Vector512{float})"/>): a NaN lane may give way to the other operand.</summary>
    static abstract TVector Max(TVector left, TVector right);

    /// <summary>2^x per lane (<see cref="VectorMath.Exp2(Vector512{float})"/>).</summary>
    static abstract TVector Exp2(TVector exponent);

    static abstract float SumAcross(TVector value);

    static abstract float MaxAcross(TVector value);

    /// <summary>Whether any lane of raw scores makes the row NaN (<see cref="VectorMath.Poisons{TScores}(Vector512{float})"/>).</summary>
    static abstract bool AnyPoisons<TScores>(TVector rawScores)
        where TScores : IScoreModifier;

    /// <summary>
    /// <see cref="Count"/> finite Half values (their bits) as float times 2^-112, by the fast rule of
    /// <see cref="Tensors.ElementConversion.HalfScaledDownFromSignExtended(Vector512{int})"/> (the caller folds 2^112 into
    /// what it multiplies them by). An infinity or NaN comes out finite, so callers take it only for data known to hold none.
    /// </summary>
    static abstract TVector LoadHalfScaledDown(ushort* source);

    /// <summary><see cref="Count"/> BFloat16 values (their bits) widened to float (exact for every value).</summary>
    static abstract TVector LoadBFloat16(ushort* source);

    /// <summary>
    /// The sums of four vectors' lanes, as lanes 0..3: four dot products finished together with a few shuffles shared
    /// among them, instead of a horizontal sum per dot product.
    /// </summary>
    static abstract Vector128<float> SumEach(TVector a, TVector b, TVector c, TVector d);
}

/// <summary>Vector512 of float (AVX-512).</summary>
internal readonly unsafe struct Lanes512 : ISimdLanes<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Create(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> value, float* destination) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadUnsafe(ref float source, nint index) => Vector512.LoadUnsafe(ref source, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreUnsafe(Vector512<float> value, ref float destination, nint index) => value.StoreUnsafe(ref destination, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> left, Vector512<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> left, Vector512<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> left, Vector512<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> left, Vector512<float> right, Vector512<float> addend) => Vector512.FusedMultiplyAdd(left, right, addend);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> left, Vector512<float> right) => VectorMath.ScoreMax(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> exponent) => VectorMath.Exp2(exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector512<float> value) => VectorMath.SumAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> value) => VectorMath.MaxAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyPoisons<TScores>(Vector512<float> rawScores)
        where TScores : IScoreModifier => VectorMath.Poisons<TScores>(rawScores) != Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalfScaledDown(ushort* source) => Tensors.ElementConversion.HalfScaledDownFromSignExtended(LoadSignExtended(source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadBFloat16(ushort* source) => Tensors.ElementConversion.BFloat16FromSignExtended(LoadSignExtended(source));

    /// <summary>16 elements of 16 bits sign-extended to 32 (one <c>vpmovsxwd</c> from memory).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> LoadSignExtended(ushort* source) =>
        Avx512F.IsSupported ? Avx512F.ConvertToVector512Int32(Vector256.Load((short*)source)) : Vector512.Create(Lanes256.LoadSignExtended(source), Lanes256.LoadSignExtended(source + 8));

    /// <summary>
    /// Two rounds of 128-bit block shuffles leave each vector's partial sums in one block ([a, b, c, d] by block), then
    /// two in-block shuffles finish each block's sum and one permute gathers lane 0 of each block: 14 operations for four
    /// sums, against about 7 per sum folded in halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumEach(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        if (!Avx512F.IsSupported)
        {
            return Vector128.Create(SumAcross(a), SumAcross(b), SumAcross(c), SumAcross(d));
        }

        // Blocks (128 bits) 0-1 of ab hold a's halves summed, blocks 2-3 b's; likewise cd.
        Vector512<float> ab = Avx512F.Shuffle4x128(a, b, 0b01_00_01_00) + Avx512F.Shuffle4x128(a, b, 0b11_10_11_10);
        Vector512<float> cd = Avx512F.Shuffle4x128(c, d, 0b01_00_01_00) + Avx512F.Shuffle4x128(c, d, 0b11_10_11_10);

        // Block k of each now holds four partial sums of vector k.
        Vector512<float> each = Avx512F.Shuffle4x128(ab, cd, 0b10_00_10_00) + Avx512F.Shuffle4x128(ab, cd, 0b11_01_11_01);
        each += Vector512.Shuffle(each, Vector512.Create(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
        each += Vector512.Shuffle(each, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
        return Vector512.Shuffle(each, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }
}

/// <summary>Vector256 of float (AVX2).</summary>
internal readonly unsafe struct Lanes256 : ISimdLanes<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Create(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> value, float* destination) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadUnsafe(ref float source, nint index) => Vector256.LoadUnsafe(ref source, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreUnsafe(Vector256<float> value, ref float destination, nint index) => value.StoreUnsafe(ref destination, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> left, Vector256<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> left, Vector256<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> left, Vector256<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> left, Vector256<float> right, Vector256<float> addend) => Vector256.FusedMultiplyAdd(left, right, addend);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> left, Vector256<float> right) => VectorMath.ScoreMax(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> exponent) => VectorMath.Exp2(exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector256<float> value) => VectorMath.SumAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> value) => VectorMath.MaxAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyPoisons<TScores>(Vector256<float> rawScores)
        where TScores : IScoreModifier => VectorMath.Poisons<TScores>(rawScores) != Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalfScaledDown(ushort* source) => Tensors.ElementConversion.HalfScaledDownFromSignExtended(LoadSignExtended(source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBFloat16(ushort* source) => Tensors.ElementConversion.BFloat16FromSignExtended(LoadSignExtended(source));

    /// <summary>8 elements of 16 bits sign-extended to 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> LoadSignExtended(ushort* source) =>
        Avx2.IsSupported ? Avx2.ConvertToVector256Int32((short*)source) : Vector256.Create(Lanes128.LoadSignExtended(source), Lanes128.LoadSignExtended(source + 4));

    /// <summary>Each vector's halves added (four extracts), then the four 128-bit vectors as <see cref="Lanes128.SumEach"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumEach(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d) =>
        Lanes128.SumEach(a.GetLower() + a.GetUpper(), b.GetLower() + b.GetUpper(), c.GetLower() + c.GetUpper(), d.GetLower() + d.GetUpper());
}

/// <summary>Vector128 of float (SSE, NEON).</summary>
internal readonly unsafe struct Lanes128 : ISimdLanes<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;

    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Create(float value) => Vector128.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(float* source) => Vector128.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector128<float> value, float* destination) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadUnsafe(ref float source, nint index) => Vector128.LoadUnsafe(ref source, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreUnsafe(Vector128<float> value, ref float destination, nint index) => value.StoreUnsafe(ref destination, (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Add(Vector128<float> left, Vector128<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Subtract(Vector128<float> left, Vector128<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Multiply(Vector128<float> left, Vector128<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> left, Vector128<float> right, Vector128<float> addend) => Vector128.FusedMultiplyAdd(left, right, addend);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> left, Vector128<float> right) => VectorMath.ScoreMax(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2(Vector128<float> exponent) => VectorMath.Exp2(exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector128<float> value) => VectorMath.SumAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> value) => VectorMath.MaxAcross(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyPoisons<TScores>(Vector128<float> rawScores)
        where TScores : IScoreModifier => VectorMath.Poisons<TScores>(rawScores) != Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalfScaledDown(ushort* source) => Tensors.ElementConversion.HalfScaledDownFromSignExtended(LoadSignExtended(source));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadBFloat16(ushort* source) => Tensors.ElementConversion.BFloat16FromSignExtended(LoadSignExtended(source));

    /// <summary>4 elements of 16 bits sign-extended to 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> LoadSignExtended(ushort* source)
    {
        if (Sse41.IsSupported)
        {
            return Sse41.ConvertToVector128Int32((short*)source);
        }

        if (AdvSimd.IsSupported)
        {
            return AdvSimd.SignExtendWideningLower(Vector64.Load((short*)source));
        }

        return Vector128.Create((short)source[0], (short)source[1], (short)source[2], (short)source[3]);
    }

    /// <summary>Two rounds of pairwise adds (SSE3 <c>haddps</c>, NEON <c>faddp</c>): [a0+a1, a2+a3, b0+b1, b2+b3], then [a, b, c, d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumEach(Vector128<float> a, Vector128<float> b, Vector128<float> c, Vector128<float> d)
    {
        if (Sse3.IsSupported)
        {
            return Sse3.HorizontalAdd(Sse3.HorizontalAdd(a, b), Sse3.HorizontalAdd(c, d));
        }

        if (AdvSimd.Arm64.IsSupported)
        {
            return AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(a, b), AdvSimd.Arm64.AddPairwise(c, d));
        }

        return Vector128.Create(SumAcross(a), SumAcross(b), SumAcross(c), SumAcross(d));
    }
}
