using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>
/// The built-in score modifiers as the generated modifier structs call them, vectorised, in the kernels' base-2 units.
/// Softcap uses tanh(x) = sign(x) (1 - e) / (1 + e) with e = e^(-2|x|) from <see cref="VectorMath.Exp2(Vector256{float})"/>:
/// measured against Math.Tanh its absolute error is below 3e-7 over [-20, 20] (tested), so a capped score is within
/// cap x 3e-7 of the exact one.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class ScoreMath
{
    /// <summary>
    /// s = cap x tanh(s / cap) for each score, with <paramref name="capBase2"/> the cap in base-2 units (cap x log2(e)):
    /// capping commutes with the change of units, so the kernels cap their own scores directly. NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Softcap(Span<float> scores, float capBase2)
    {
        // e^(-2|x|) with x = s / cap is 2^(-|s| * 2 log2(e) / capBase2) in the kernels' units.
        ref float first = ref MemoryMarshal.GetReference(scores);
        int k = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; k + 16 <= scores.Length; k += 16)
            {
                Softcap(Vector512.LoadUnsafe(ref first, (nuint)k), capBase2).StoreUnsafe(ref first, (nuint)k);
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; k + 8 <= scores.Length; k += 8)
            {
                Softcap(Vector256.LoadUnsafe(ref first, (nuint)k), capBase2).StoreUnsafe(ref first, (nuint)k);
            }
        }

        if (Vector128.IsHardwareAccelerated)
        {
            for (; k + 4 <= scores.Length; k += 4)
            {
                Softcap(Vector128.LoadUnsafe(ref first, (nuint)k), capBase2).StoreUnsafe(ref first, (nuint)k);
            }
        }

        for (; k < scores.Length; k++)
        {
            scores[k] = Tanh(scores[k] / capBase2) * capBase2;
        }
    }

    /// <summary>
    /// Every declared modifier on a run of scores, in the documented order (the row kernels and decode). Not inlined: one
    /// call per tile of up to 64 keys is cheap, and inlining its vector code would spend the kernel's inlining budget.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Modify<TScores>(Span<float> scores, in ScoreSite site)
        where TScores : IScoreModifier
    {
        if (TScores.SoftcapBase2 != 0f)
        {
            Softcap(scores, TScores.SoftcapBase2);
        }

        if (TScores.Alibi)
        {
            AddAlibi(scores, site);
        }

        if (TScores.CallsUserCode)
        {
            TScores.ApplyUserCode(scores, site);
        }
    }

    /// <summary>
    /// s = cap x tanh(s / cap) per lane; see <see cref="Softcap(Span{float}, float)"/>. A non-finite score becomes NaN,
    /// not ±cap: the NaN/Inf policy is about raw scores, and the kernels test what they hold after the softcap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Softcap(Vector256<float> s, float capBase2)
    {
        Vector256<float> e = VectorMath.Exp2(Vector256.Abs(s) * (-2f * VectorMath.Log2E / capBase2));
        Vector256<float> capped = (((Vector256<float>.One - e) / (Vector256<float>.One + e)) | (s & Vector256.Create(-0f))) * capBase2;
        return Vector256.ConditionalSelect(Vector256.Equals(s - s, Vector256<float>.Zero), capped, Vector256.Create(float.NaN));
    }

    /// <summary>s = cap x tanh(s / cap) per lane; a non-finite score becomes NaN (see the Vector256 overload).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Softcap(Vector512<float> s, float capBase2)
    {
        Vector512<float> e = VectorMath.Exp2(Vector512.Abs(s) * (-2f * VectorMath.Log2E / capBase2));
        Vector512<float> capped = (((Vector512<float>.One - e) / (Vector512<float>.One + e)) | (s & Vector512.Create(-0f))) * capBase2;
        return Vector512.ConditionalSelect(Vector512.Equals(s - s, Vector512<float>.Zero), capped, Vector512.Create(float.NaN));
    }

    /// <summary>s = cap x tanh(s / cap) per lane; a non-finite score becomes NaN (see the Vector256 overload).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Softcap(Vector128<float> s, float capBase2)
    {
        Vector128<float> e = VectorMath.Exp2(Vector128.Abs(s) * (-2f * VectorMath.Log2E / capBase2));
        Vector128<float> capped = (((Vector128<float>.One - e) / (Vector128<float>.One + e)) | (s & Vector128.Create(-0f))) * capBase2;
        return Vector128.ConditionalSelect(Vector128.Equals(s - s, Vector128<float>.Zero), capped, Vector128.Create(float.NaN));
    }

    /// <summary>tanh by the same formula, one value at a time (the kernels' scalar tail and the scalar ISA); NaN for a non-finite x.</summary>
    public static float Tanh(float x)
    {
        if (!float.IsFinite(x))
        {
            return float.NaN;
        }

        float e = VectorMath.Exp2(-2f * VectorMath.Log2E * MathF.Abs(x));
        return MathF.CopySign((1f - e) / (1f + e), x);
    }

    /// <summary>s -= slope x |query - key| for each key of <paramref name="site"/> (slope in base-2 units, from the site).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddAlibi(Span<float> scores, in ScoreSite site)
    {
        float slope = site.AlibiSlope;
        int k = 0;
        if (site.GatheredKeys.IsEmpty && Vector256.IsHardwareAccelerated)
        {
            ref float first = ref MemoryMarshal.GetReference(scores);
            Vector256<int> distance = Vector256.Create(site.Query - site.FirstKey) - Vector256<int>.Indices * site.KeyStep;
            Vector256<int> advance = Vector256.Create(8 * site.KeyStep);
            for (; k + 8 <= scores.Length; k += 8, distance -= advance)
            {
                Vector256<float> bias = Vector256.ConvertToSingle(Vector256.Abs(distance)) * slope;
                (Vector256.LoadUnsafe(ref first, (nuint)k) - bias).StoreUnsafe(ref first, (nuint)k);
            }
        }

        for (; k < scores.Length; k++)
        {
            scores[k] -= slope * Math.Abs(site.Query - site.KeyAt(k));
        }
    }
}
