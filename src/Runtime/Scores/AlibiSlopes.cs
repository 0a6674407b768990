using System;

namespace SparseAttention;

/// <summary>
/// ALiBi's per-head slopes (Press et al., "Train Short, Test Long"): the bias of query head h is -slope_h x |i - j|.
/// For H heads, H a power of two: slope_h = 2^(-8 (h + 1) / H). Otherwise the paper's rule: the slopes for p, the largest
/// power of two below H, then the first H - p of every other slope of the sequence for 2p (its slopes 0, 2, 4, ...).
/// </summary>
public static class AlibiSlopes
{
    private static readonly float[]?[] s_defaults = new float[]?[257];

    /// <summary>The default slopes for <paramref name="heads"/> query heads (a new array; see the class remarks).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="heads"/> is less than 1.</exception>
    public static float[] For(int heads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        return (float[])Cached(heads).Clone();
    }

    /// <summary>The default slopes, cached per head count so that a warm call allocates nothing.</summary>
    internal static float[] Cached(int heads)
    {
        if (heads < s_defaults.Length && s_defaults[heads] is { } cached)
        {
            return cached;
        }

        var slopes = new float[heads];
        int p = 1;
        while (p * 2 <= heads)
        {
            p *= 2;
        }

        for (int h = 0; h < p; h++)
        {
            slopes[h] = (float)Math.Pow(2, -8.0 * (h + 1) / p);
        }

        for (int h = p; h < heads; h++)
        {
            // Every other slope of the 2p sequence, from its first: 2^(-8 (2i + 1) / 2p).
            int i = 2 * (h - p);
            slopes[h] = (float)Math.Pow(2, -8.0 * (i + 1) / (2 * p));
        }

        if (heads < s_defaults.Length)
        {
            s_defaults[heads] = slopes;
        }

        return slopes;
    }

    /// <summary>The slopes a call uses: <see cref="AttentionOptions.AlibiSlopes"/> when set, else the defaults.</summary>
    /// <exception cref="ArgumentException">The options' slopes are not one per query head.</exception>
    internal static ReadOnlySpan<float> Resolve(AttentionOptions options, int heads)
    {
        if (options.AlibiSlopes is { } given)
        {
            if (given.Length != heads)
            {
                throw new ArgumentException($"options.AlibiSlopes must hold one slope per query head: Heads = {heads}, but it holds {given.Length}.", "options");
            }

            return given.Span;
        }

        return Cached(heads);
    }

    /// <summary>
    /// Fills <paramref name="destination"/> (grown when short, reused otherwise) with the call's slopes in the kernels'
    /// base-2 units, slope x log2(e), one per query head.
    /// </summary>
    internal static void FillBase2(ref float[] destination, AttentionOptions options, int heads)
    {
        ReadOnlySpan<float> slopes = Resolve(options, heads);
        Cpu.CpuAttention.Grow(ref destination, heads);
        for (int head = 0; head < heads; head++)
        {
            destination[head] = slopes[head] * Cpu.VectorMath.Log2E;
        }
    }
}
