using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

// Declarations with score modifiers (docs/design.md §2.4), chosen so each modifier bites on inputs in [-1.5, 1.5]
// (small caps, steep slopes) and each kernel path meets it: band tiles, block tiles over gathered summary columns,
// row tails, whole global rows, the scalar kernel, decode and prefill.

/// <summary>Gemma 2's local layer in small: a sliding window with a softcap that clips these scores hard.</summary>
[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Size = 20)]
[Softcap(2.5f)]
public static partial class SoftcappedWindow;

/// <summary>BLOOM/MPT style: dense causal with ALiBi.</summary>
[AttentionKernel(HeadDim = 16)]
[Alibi]
public static partial class AlibiDenseCausal;

/// <summary>Packed documents: dense bidirectional attention inside each document of a fixed table.</summary>
[AttentionKernel(HeadDim = 32, Causal = false)]
[AttentionMask(nameof(SameDocument))]
public static partial class DocumentMaskBidirectional
{
    /// <summary>Where each document starts; every position from the last start on is one more document.</summary>
    internal static readonly int[] DocumentStarts = { 0, 5, 17, 40, 41, 90, 130 };

    internal static int DocumentOf(int position)
    {
        int document = 0;
        while (document + 1 < DocumentStarts.Length && DocumentStarts[document + 1] <= position)
        {
            document++;
        }

        return document;
    }

    private static bool SameDocument(int query, int key, int head) => DocumentOf(query) == DocumentOf(key);
}

/// <summary>A Longformer pattern with a score mod that depends on every argument and masks some pairs with -inf (global rows in a run and alone).</summary>
[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 6, Right = 6)]
[Dilation(1, 2)]
[GlobalTokens(0, 1, 2, 33)]
[ScoreMod(nameof(Bias))]
public static partial class ScoreModLongformer
{
    internal static float Bias(float score, int query, int key, int head) =>
        (query + 2 * key) % 7 == 3 ? float.NegativeInfinity : score * (1f + 0.25f * head) - 0.05f * Math.Abs(query - key);
}

/// <summary>Every modifier at once on the fixed pattern, whose summary columns run as a gathered stream of block tiles.</summary>
[AttentionKernel(HeadDim = 32)]
[FixedFactorized(Block = 16, Summary = 2)]
[Softcap(3f)]
[Alibi]
[AttentionMask(nameof(NotMultipleOfFive))]
[ScoreMod(nameof(Halve))]
public static partial class EverythingOnFixed
{
    private static bool NotMultipleOfFive(int query, int key, int head) => (query - key + head) % 5 != 0;

    private static float Halve(float score, int query, int key, int head) => 0.5f * score + 0.01f * (key % 3);
}

/// <summary>A streamable kernel with every modifier: window, sinks as global tokens, softcap, ALiBi, mask, score mod.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 24)]
[GlobalTokens(0, 1)]
[Softcap(4f)]
[Alibi]
[AttentionMask(nameof(SkipEveryThird))]
[ScoreMod(nameof(Tilt))]
public static partial class EverythingStreamable
{
    private static bool SkipEveryThird(int query, int key, int head) => key == query || (key + head) % 3 != 1;

    private static float Tilt(float score, int query, int key, int head) => score + 0.1f * ((query ^ key) & 3);
}

/// <summary>A score mod that returns NaN for one pair and +inf for another: both make their rows NaN (design §4).</summary>
[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Size = 8)]
[ScoreMod(nameof(Wild))]
public static partial class ScoreModReturningNaN
{
    internal static float Wild(float score, int query, int key, int head) =>
        head == 0 && query == 20 && key == 17 ? float.NaN : head == 1 && query == 40 && key == 40 ? float.PositiveInfinity : score;
}

public static class ScoreModifierKernels
{
    public static readonly KernelUnderTest[] All = new[]
    {
        typeof(SoftcappedWindow), typeof(AlibiDenseCausal), typeof(DocumentMaskBidirectional), typeof(ScoreModLongformer),
        typeof(EverythingOnFixed), typeof(EverythingStreamable),
    }.Select(KernelUnderTest.FromType).ToArray();

    public static KernelUnderTest Get(string name) => All.Single(kernel => kernel.Name == name);

    public static TheoryData<string> Names() => new(All.Select(kernel => kernel.Name));

    public static TheoryData<string, KernelIsa> NamesByIsa() => DeclaredKernels.NamesByIsa(All);

    public static TheoryData<string> StreamableNames() => DeclaredKernels.StreamableNames(All);
}

/// <summary>gpt-oss's sliding layers in small: a window with a learned sink per head.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 16)]
[LearnedSinks]
public static partial class WindowWithLearnedSinks;

/// <summary>
/// Longformer with sinks, small: the global rows see every key where the others see 9, so the GPU's tile table splits
/// them into parts merged by a second launch, which must add each row's sink once and write its log-sum-exp.
/// </summary>
[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 4, Right = 4)]
[GlobalTokens(0, 150)]
[LearnedSinks]
public static partial class WindowWithGlobalsAndSinks;

/// <summary>Sinks on a pattern whose rows all go through the row kernel (global tokens only), with a softcap too.</summary>
[AttentionKernel(HeadDim = 32, Causal = false)]
[GlobalTokens(0, 5)]
[LearnedSinks]
[Softcap(3f)]
public static partial class GlobalsWithLearnedSinks;
