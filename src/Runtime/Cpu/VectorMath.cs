using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SparseAttention.Cpu;

/// <summary>
/// Vector helpers the generated kernels share. The kernels run the online softmax in base 2 (log2(e) is folded
/// into the score scale), so the one transcendental they need is 2^x, done here with a short polynomial instead
/// of the general-purpose exp: it costs about ten vector operations and is accurate to about 2e-7 relative (the
/// polynomial 1.1e-7, float rounding the rest).
/// A NaN argument gives NaN (the clamp is <c>Vector.Max</c>, which keeps NaN, and the zero cut-off is a
/// "less than or equal" test, which NaN fails, or AVX-512's scale, which keeps it), so a NaN score reaches the row's sum: the NaN/Inf policy relies on it.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class VectorMath
{
    /// <summary>log2(e): scores times this are in base 2, so exp(s) = 2^(s * Log2E).</summary>
    public const float Log2E = 1.44269504088896341f;

    /// <summary>ln(2): base-2 scores times this are natural again (what a user's score mod sees).</summary>
    public const float Ln2 = 0.693147180559945309f;

    // 2^f on [-0.5, 0.5] as 1 + C1 f + ... + C5 f^5, the coefficients fitted for the least maximum relative error (an
    // iteratively reweighted least-squares fit; 1.08e-7 with these float coefficients, where the degree-6 Taylor
    // polynomial this replaced reached 1.6e-7 at the interval's ends with one FMA more per vector). The constant term
    // stays 1, so 2^0 is exactly 1: a row's max key keeps probability 1.
    private const float C1 = 0.693147004f, C2 = 0.240222424f, C3 = 0.0555073358f, C4 = 0.00967151765f, C5 = 0.00132647424f;

    /// <summary>
    /// 1.5 x 2^23 + 127: added to x (|x| well below 2^22) it rounds x to a whole n in the float's low mantissa bits, as
    /// 127 + n, so that shifting those bits into the exponent field gives the float 2^n.
    /// </summary>
    private const float RoundingShift = 12583039f;

    /// <summary>Below this 2^x is treated as exactly 0 (it would be a denormal).</summary>
    private const float Smallest = -126f;

    /// <summary>Below this AVX-512's 2^x is exactly 0: 2^-150 rounds to 0, half the smallest subnormal, to even.</summary>
    private const float SmallestScaled = -150f;

    /// <summary>
    /// 2^x per lane; NaN for NaN, and NaN for +infinity (+infinity with AVX-512: softmax never passes it, its max being at
    /// least every score). With AVX-512, 2^whole is applied by <c>vscalefps</c>, which also
    /// goes smoothly to 0 below -126 through the subnormals: exactly 0 at or below -150, including -infinity. That
    /// spares the exponent's convert, shift and add and the cut-off's compare and blend, 3.5-4% of the Vector512 tile
    /// kernel's time (AMD Zen 5; the FMA units there take subnormal probabilities at full speed). Elsewhere, exactly 0 at
    /// or below -126.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        bool scaled = Avx512F.IsSupported;
        // The hardware's max with x second keeps a NaN x (one vmaxps; an IEEE max costs three on AVX-512).
        Vector512<float> clamped = scaled ? Vector512.MaxNative(Vector512.Create(SmallestScaled), x) : Vector512.Max(x, Vector512.Create(Smallest));
        Vector512<float> whole = Vector512.Round(clamped);
        Vector512<float> f = clamped - whole;
        // Estrin's scheme: three short independent chains instead of one five deep.
        Vector512<float> f2 = f * f;
        Vector512<float> low = Vector512.FusedMultiplyAdd(Vector512.Create(C1), f, Vector512<float>.One);
        Vector512<float> middle = Vector512.FusedMultiplyAdd(Vector512.Create(C3), f, Vector512.Create(C2));
        Vector512<float> high = Vector512.FusedMultiplyAdd(Vector512.Create(C5), f, Vector512.Create(C4));
        Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(high, f2, middle), f2, low);
        if (scaled)
        {
            return Avx512F.Scale(p, whole);
        }

        Vector512<int> exponent = Vector512.ShiftLeft(Vector512.ConvertToInt32Native(whole), 23);
        Vector512<float> result = (p.AsInt32() + exponent).AsSingle();
        return Vector512.ConditionalSelect(Vector512.LessThanOrEqual(x, Vector512.Create(Smallest)), Vector512<float>.Zero, result);
    }

    /// <summary>
    /// 2^x per lane; exactly 0 for x at or below -126, including -infinity; NaN for NaN (and for +infinity). The whole
    /// part is rounded by adding and subtracting <see cref="RoundingShift"/> (two adds, where a round and a convert
    /// each take two passes through one pipe of a Zen 1 core at 256 bits), and 2^whole, built from the shifted bits,
    /// is multiplied in: an integer add to the exponent could turn a NaN carrying a payload into a number. Finite results
    /// up to x = 127 (the softmax passes at most <see cref="TileSoftmax.RescaleSlack"/>). AMD Zen 1, with the Vector256
    /// kernel's full-tile step (<c>TileSoftmax.UpdateFullTile</c>): 0.97-0.98x the time of the 4K cases;
    /// Vector128 0.99-1.0x.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        Vector256<float> clamped = Vector256.Max(x, Vector256.Create(Smallest));
        Vector256<float> shifted = clamped + Vector256.Create(RoundingShift);
        Vector256<float> whole = shifted - Vector256.Create(RoundingShift);
        Vector256<float> f = clamped - whole;
        // Estrin's scheme: three short independent chains instead of one five deep.
        Vector256<float> f2 = f * f;
        Vector256<float> low = Vector256.FusedMultiplyAdd(Vector256.Create(C1), f, Vector256<float>.One);
        Vector256<float> middle = Vector256.FusedMultiplyAdd(Vector256.Create(C3), f, Vector256.Create(C2));
        Vector256<float> high = Vector256.FusedMultiplyAdd(Vector256.Create(C5), f, Vector256.Create(C4));
        Vector256<float> p = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(high, f2, middle), f2, low);
        Vector256<float> result = p * Vector256.ShiftLeft(shifted.AsInt32(), 23).AsSingle();
        return Vector256.ConditionalSelect(Vector256.LessThanOrEqual(x, Vector256.Create(Smallest)), Vector256<float>.Zero, result);
    }

    /// <summary>2^x per lane, as the Vector256 overload computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2(Vector128<float> x)
    {
        Vector128<float> clamped = Vector128.Max(x, Vector128.Create(Smallest));
        Vector128<float> shifted = clamped + Vector128.Create(RoundingShift);
        Vector128<float> whole = shifted - Vector128.Create(RoundingShift);
        Vector128<float> f = clamped - whole;
        // Estrin's scheme: three short independent chains instead of one five deep.
        Vector128<float> f2 = f * f;
        Vector128<float> low = Vector128.FusedMultiplyAdd(Vector128.Create(C1), f, Vector128<float>.One);
        Vector128<float> middle = Vector128.FusedMultiplyAdd(Vector128.Create(C3), f, Vector128.Create(C2));
        Vector128<float> high = Vector128.FusedMultiplyAdd(Vector128.Create(C5), f, Vector128.Create(C4));
        Vector128<float> p = Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(high, f2, middle), f2, low);
        Vector128<float> result = p * Vector128.ShiftLeft(shifted.AsInt32(), 23).AsSingle();
        return Vector128.ConditionalSelect(Vector128.LessThanOrEqual(x, Vector128.Create(Smallest)), Vector128<float>.Zero, result);
    }

    /// <summary>
    /// 2^x for one value, with the same zero cut-off; for the per-row rescale factor. The same polynomial in one
    /// lane: float.Exp2 is a call into the C runtime's powf and cost a tenth of the tile kernel's time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp2(float x) => Exp2(Vector128.CreateScalarUnsafe(x)).ToScalar();

    // The NaN/Inf policy's test on raw scores (q·k before any modifier). Without modifiers only -inf needs catching: NaN
    // and +inf carry through the max and 2^x by themselves. With them, a softcap or a score mod can turn +inf into a
    // finite score, so every non-finite raw score is caught (x - x is NaN exactly for NaN and ±inf).

    /// <summary>Lanes whose raw score makes the row NaN: -inf, or with score modifiers any non-finite value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Poisons<TScores>(Vector512<float> score)
        where TScores : IScoreModifier =>
        TScores.ModifiesScores ? ~Vector512.Equals(score - score, Vector512<float>.Zero) : Vector512.Equals(score, Vector512.Create(float.NegativeInfinity));

    /// <summary>Lanes whose raw score makes the row NaN: -inf, or with score modifiers any non-finite value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Poisons<TScores>(Vector256<float> score)
        where TScores : IScoreModifier =>
        TScores.ModifiesScores ? ~Vector256.Equals(score - score, Vector256<float>.Zero) : Vector256.Equals(score, Vector256.Create(float.NegativeInfinity));

    /// <summary>Lanes whose raw score makes the row NaN: -inf, or with score modifiers any non-finite value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Poisons<TScores>(Vector128<float> score)
        where TScores : IScoreModifier =>
        TScores.ModifiesScores ? ~Vector128.Equals(score - score, Vector128<float>.Zero) : Vector128.Equals(score, Vector128.Create(float.NegativeInfinity));

    /// <summary>Whether one raw score makes the row NaN: -inf, or with score modifiers any non-finite value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Poisons<TScores>(float score)
        where TScores : IScoreModifier =>
        TScores.ModifiesScores ? !float.IsFinite(score) : score == float.NegativeInfinity;

    /// <summary>
    /// The sum of the lanes, folded in halves then two shuffles: measured at about half the latency of
    /// <c>Vector512.Sum</c> on .NET 10 (2.8 against 6 ns on an AVX-512 Xeon). The row kernels take one per key.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector512<float> vector) => SumAcross(vector.GetLower() + vector.GetUpper());

    /// <summary>The sum of the lanes (see the Vector512 overload).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector256<float> vector) => SumAcross(vector.GetLower() + vector.GetUpper());

    /// <summary>The sum of the lanes (see the Vector512 overload).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumAcross(Vector128<float> vector)
    {
        vector += Vector128.Shuffle(vector, Vector128.Create(2, 3, 0, 1));
        vector += Vector128.Shuffle(vector, Vector128.Create(1, 0, 3, 2));
        return vector.ToScalar();
    }

    // Score maxima use the hardware's max (MaxNative: one vmaxps). Vector512.Max's IEEE handling of NaN and -0 costs three
    // instructions per max on AVX-512 (and a compare and blend on AVX2), and the six rows' maxima of every key tile
    // took about 7% of the Vector512 tile kernel's time. A NaN lane may lose to the other operand here; the NaN still
    // reaches its row through its own probability, 2^(NaN - max) = NaN, except in a tile where every other lane the row
    // sees is -inf: the softmax step tests that case with AnyNaN.

    /// <summary>The larger score per lane, by the hardware's max: a NaN lane may give way to the other operand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScoreMax(Vector512<float> left, Vector512<float> right) => Vector512.MaxNative(left, right);

    /// <summary>The larger score per lane, by the hardware's max: a NaN lane may give way to the other operand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScoreMax(Vector256<float> left, Vector256<float> right) => Vector256.MaxNative(left, right);

    /// <summary>The larger score per lane, by the hardware's max: a NaN lane may give way to the other operand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ScoreMax(Vector128<float> left, Vector128<float> right) => Vector128.MaxNative(left, right);

    /// <summary>The largest lane, by <see cref="ScoreMax(Vector512{float}, Vector512{float})"/> (a NaN lane may be passed over).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> vector) => MaxAcross(ScoreMax(vector.GetLower(), vector.GetUpper()));

    /// <summary>The largest lane, by <see cref="ScoreMax(Vector256{float}, Vector256{float})"/> (a NaN lane may be passed over).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> vector) => MaxAcross(ScoreMax(vector.GetLower(), vector.GetUpper()));

    /// <summary>The largest lane, by <see cref="ScoreMax(Vector128{float}, Vector128{float})"/> (a NaN lane may be passed over).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> vector)
    {
        vector = ScoreMax(vector, Vector128.Shuffle(vector, Vector128.Create(2, 3, 0, 1)));
        vector = ScoreMax(vector, Vector128.Shuffle(vector, Vector128.Create(1, 0, 3, 2)));
        return vector.ToScalar();
    }

    /// <summary>Whether any lane is NaN (the softmax step's test where a row's max came out -inf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNaN(Vector512<float> vector) => !Vector512.EqualsAll(vector, vector);

    /// <summary>Whether any lane is NaN (the softmax step's test where a row's max came out -inf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNaN(Vector256<float> vector) => !Vector256.EqualsAll(vector, vector);

    /// <summary>Whether any lane is NaN (the softmax step's test where a row's max came out -inf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNaN(Vector128<float> vector) => !Vector128.EqualsAll(vector, vector);
}
