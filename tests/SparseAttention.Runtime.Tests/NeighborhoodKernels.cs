namespace SparseAttention.Runtime.Tests;

/// <summary>A 2-D neighbourhood with an even kernel on one axis (NATTEN's 3 x 4 windows shift by k/2).</summary>
[AttentionKernel(HeadDim = 32, Causal = false)]
[Neighborhood(3, 4)]
public static partial class Neighborhood2D;

/// <summary>DiNAT's dilated neighbourhood with a class token (a global token, as in a vision transformer).</summary>
[AttentionKernel(HeadDim = 16, Causal = false)]
[Neighborhood(3, 3, Dilation = new[] { 2, 1 })]
[GlobalTokens(0)]
public static partial class DilatedNeighborhoodWithClassToken;

/// <summary>A video's neighbourhood: causal along time, 2 frames x 3 x 3 pixels.</summary>
[AttentionKernel(HeadDim = 8, Causal = false)]
[Neighborhood(2, 3, 3, CausalAxes = new[] { true, false, false })]
public static partial class VideoNeighborhood3D;

/// <summary>A 1-D neighbourhood causal along its axis (5 keys, dilation 2): bounded reach back, so it decodes token by token.</summary>
[AttentionKernel(HeadDim = 16, Causal = false)]
[Neighborhood(5, Dilation = new[] { 2 }, CausalAxes = new[] { true })]
public static partial class CausalNeighborhood1D;

/// <summary>
/// A dilated 2-D neighbourhood with a class token and every score modifier: the tile path hands the modifiers each gathered
/// key's position, so a wrong position changes the score mod's bias, ALiBi's distance or the mask.
/// </summary>
[AttentionKernel(HeadDim = 16, Causal = false)]
[Neighborhood(3, 5, Dilation = new[] { 1, 2 })]
[GlobalTokens(0)]
[Softcap(3f)]
[Alibi]
[ScoreMod(nameof(Bias))]
public static partial class ModifiedNeighborhood
{
    internal static float Bias(float score, int query, int key, int head) =>
        (query + 3 * key) % 11 == 4 ? float.NegativeInfinity : score * (1f + 0.2f * head) - 0.03f * (key % 7);
}

/// <summary>
/// NAT's 7 x 7 at HeadDim 64: each row is four 512-bit vectors (eight 256-bit, sixteen 128-bit), so the neighbourhood tile
/// kernel's P·V runs in column groups, as the NATTEN benchmark's kernels do.
/// </summary>
[AttentionKernel(HeadDim = 64, Causal = false)]
[Neighborhood(7, 7)]
public static partial class Neighborhood7x7HeadDim64;
