using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

// Declarations the generator compiles into this test assembly, chosen to cover every component, the tile
// edges (Size = 1, windows wider than a 64-key tile), HeadDims that skip the Vector512 kernel, rows that
// see nothing, and global tokens inside, outside and beyond the window.

[AttentionKernel(HeadDim = 64)]
public static partial class DenseCausal;

[AttentionKernel(HeadDim = 32, Causal = false)]
public static partial class DenseBidirectional;

[AttentionKernel(HeadDim = 16)]
[SlidingWindow(Size = 1)]
public static partial class SelfOnly;

[AttentionKernel(HeadDim = 8)]
[SlidingWindow(Size = 5)]
public static partial class SmallWindowHeadDim8;

[AttentionKernel(HeadDim = 24)]
[SlidingWindow(Size = 100)]
public static partial class WindowWiderThanTile;

[AttentionKernel(HeadDim = 40, Causal = false)]
[SlidingWindow(Left = 3, Right = 7)]
public static partial class AsymmetricBidirectionalWindow;

// On purpose: the causal cut must hide the window's right side (SPA0009 warns a user who writes this by mistake).
#pragma warning disable SPA0009
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Left = 10, Right = 5)]
public static partial class CausalCutsRightSide;
#pragma warning restore SPA0009

[AttentionKernel(HeadDim = 48, Causal = false)]
[SlidingWindow(Left = 4, Right = 4)]
[Dilation(1, 2, 3)]
public static partial class PerHeadDilation;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 6, Right = 6)]
[Dilation(2)]
[GlobalTokens(0, 1, 40)]
public static partial class LongformerLike;

[AttentionKernel(HeadDim = 128)]
[SlidingWindow(Size = 8)]
[GlobalTokens(0, 3, 500)]
public static partial class CausalWindowWithSinks;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Left = 7)]
[Strided(Stride = 8)]
public static partial class SparseTransformerStrided;

[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 3, Right = 2)]
[Dilation(2, 3)]
[Strided(Stride = 5)]
[GlobalTokens(2)]
public static partial class StridedOverDilatedWindow;

[AttentionKernel(HeadDim = 8, Causal = false)]
[Strided(Stride = 3)]
public static partial class StridedOnly;

[AttentionKernel(HeadDim = 32)]
[GlobalTokens(1, 2)]
public static partial class GlobalsOnly;

[AttentionKernel(HeadDim = 256)]
[SlidingWindow(Size = 33)]
public static partial class WideHeads;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 64)]
public static partial class WindowOfOneKeyTile;

[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 0, Right = 9)]
public static partial class LookAheadOnly;

[AttentionKernel(HeadDim = 32, Causal = false)]
[SlidingWindow(Left = 2, Right = 2)]
[Dilation(7)]
public static partial class StreamsShorterThanATile;

[AttentionKernel(HeadDim = 24, Causal = false)]
[SlidingWindow(Left = 3, Right = 5)]
[Strided(Stride = 4)]
[GlobalTokens(6)]
public static partial class BidirectionalStrided;

[AttentionKernel(HeadDim = 8)]
[SlidingWindow(Left = 5)]
[Dilation(1, 2)]
[Strided(Stride = 3)]
public static partial class StridedWithMixedDilation;

[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 3, Right = 4)]
[Dilation(1, 2)]
[Strided(Stride = 3)]
public static partial class BidirectionalStridedWithMixedDilation;

// The window reaches exactly one key back: for a query tile starting at a multiple of 64, the first visible key
// is the last of the previous key tile, so a key range rounded the wrong way would miss it.
[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Size = 2)]
public static partial class PreviousTokenOnly;

// More global tokens than the ILGPU kernel tests inline (8): membership becomes a loop; several share key tiles,
// some sit on tile edges (63, 64), and the last lies beyond most test sequences.
[AttentionKernel(HeadDim = 16)]
[SlidingWindow(Size = 4)]
[GlobalTokens(0, 1, 2, 3, 20, 41, 63, 64, 65, 190)]
public static partial class ManySinks;

// Longformer for question answering: a run of global tokens (the question) longer than a tile's rows, whose rows the
// tiled kernels compute as tiles over every key, and a lone global token, whose row the row kernel computes.
[AttentionKernel(HeadDim = 32, Causal = false)]
[SlidingWindow(Left = 9, Right = 9)]
[GlobalTokens(0, 1, 2, 3, 4, 5, 6, 7, 8, 70)]
public static partial class LongformerQuestionTokens;

// Streaming decode with everything at once: per-head dilation (the ring must hold the widest head's reach), sinks at
// the start, and a global token in mid-stream, beyond the window, whose own row sees every earlier token.
[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Left = 5)]
[Dilation(1, 3)]
[GlobalTokens(0, 1, 37)]
public static partial class DilatedCausalWithSinks;

// A ring of several decode blocks (CpuDecode.SlotsPerBlock: at least 64 slots, as many blocks as the threads want), so
// decode splits the keys over blocks and merges their partial softmax states; the window wraps the ring across a block edge.
[AttentionKernel(HeadDim = 8)]
[SlidingWindow(Size = 300)]
[GlobalTokens(0)]
public static partial class WindowOverSeveralDecodeBlocks;

// Valid for Forward, but its rolling cache (2^31 - 1 ring slots) fits no array: CreateCache must say the window is too wide.
// Not in DeclaredKernels.All: running it would mean a window wider than any test sequence, which other kernels cover.
[AttentionKernel(HeadDim = 8)]
[SlidingWindow(Size = int.MaxValue)]
public static partial class WindowTooWideForACache;

// BigBird as the paper runs it: first and last block global, one window block each side, random blocks. Most test
// lengths are not a multiple of 16, so the last block is partial; with -1 global, the partial block is global too.
[AttentionKernel(HeadDim = 64, Causal = false)]
[BlockSparse(BlockSize = 16, WindowBlocks = 1, GlobalBlocks = new[] { 0, -1 }, RandomBlocks = 2, Seed = 42)]
public static partial class BigBirdBidirectional;

// Causal block-sparse: random blocks drawn among earlier blocks only, the diagonal block cut per row, a global block
// that is not the first (its rows see every earlier key), and a global block beyond most test sequences (ignored).
[AttentionKernel(HeadDim = 32)]
[BlockSparse(BlockSize = 8, WindowBlocks = 0, GlobalBlocks = new[] { 1, 40 }, RandomBlocks = 3, Seed = 7)]
public static partial class BigBirdCausal;

// Blocks wider than a 64-key tile, with a sliding window in the union and no global block.
[AttentionKernel(HeadDim = 16, Causal = false)]
[SlidingWindow(Left = 3, Right = 3)]
[BlockSparse(BlockSize = 70, RandomBlocks = 1, Seed = 3)]
public static partial class WideBlocksWithWindow;

// Causal blocks longer than the CPU's key chunk (512): a block's rows go through its runs in row groups and 512-key
// chunks, so the diagonal run spans several chunks and whole tiles of a group lie before a chunk and are skipped.
[AttentionKernel(HeadDim = 16)]
[BlockSparse(BlockSize = 600, Seed = 1)]
public static partial class CausalBlocksLongerThanAKeyChunk;

// The Sparse Transformer's fixed pattern (Child et al. 2019, §4.3), causal, blocks of 16 with 4 summary columns.
[AttentionKernel(HeadDim = 64)]
[FixedFactorized(Block = 16, Summary = 4)]
public static partial class SparseTransformerFixed;

// Each head reads its own summary group (12 / 3 = 4 groups, so heads 0 and 4 agree), with GQA shapes in the tests.
[AttentionKernel(HeadDim = 24)]
[FixedFactorized(Block = 12, Summary = 3, VaryByHead = true)]
public static partial class FixedVaryingByHead;

// Bidirectional fixed pattern with blocks wider than a tile, in a union with a dilated window and a global token.
[AttentionKernel(HeadDim = 8, Causal = false)]
[SlidingWindow(Left = 4, Right = 2)]
[Dilation(1, 3)]
[FixedFactorized(Block = 80, Summary = 5)]
[GlobalTokens(33)]
public static partial class FixedWithDilatedWindowAndGlobal;

public static class DeclaredKernels
{
    public static readonly KernelUnderTest[] All = new[]
    {
        typeof(DenseCausal), typeof(DenseBidirectional), typeof(SelfOnly), typeof(SmallWindowHeadDim8), typeof(WindowWiderThanTile),
        typeof(AsymmetricBidirectionalWindow), typeof(CausalCutsRightSide), typeof(PerHeadDilation), typeof(LongformerLike),
        typeof(CausalWindowWithSinks), typeof(SparseTransformerStrided), typeof(StridedOverDilatedWindow), typeof(StridedOnly),
        typeof(GlobalsOnly), typeof(WideHeads), typeof(WindowOfOneKeyTile), typeof(LookAheadOnly), typeof(StreamsShorterThanATile),
        typeof(BidirectionalStrided), typeof(StridedWithMixedDilation), typeof(BidirectionalStridedWithMixedDilation),
        typeof(PreviousTokenOnly), typeof(ManySinks), typeof(LongformerQuestionTokens), typeof(DilatedCausalWithSinks), typeof(WindowOverSeveralDecodeBlocks),
        typeof(BigBirdBidirectional), typeof(BigBirdCausal), typeof(WideBlocksWithWindow), typeof(SparseTransformerFixed),
        typeof(FixedVaryingByHead), typeof(FixedWithDilatedWindowAndGlobal), typeof(CausalBlocksLongerThanAKeyChunk),
    }.Select(KernelUnderTest.FromType).ToArray();

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (KernelUnderTest kernel in All)
        {
            data.Add(kernel.Name);
        }

        return data;
    }

    public static TheoryData<string, KernelIsa> NamesByIsa() => NamesByIsa(All);

    /// <summary>The kernels a rolling KV cache can serve: causal, with a bounded reach back.</summary>
    public static TheoryData<string> StreamableNames() => StreamableNames(All);

    /// <summary>Every (kernel, ISA) pair of <paramref name="kernels"/>, as theory data.</summary>
    public static TheoryData<string, KernelIsa> NamesByIsa(IEnumerable<KernelUnderTest> kernels)
    {
        var data = new TheoryData<string, KernelIsa>();
        foreach (KernelUnderTest kernel in kernels)
        {
            foreach (KernelIsa isa in AttentionCheck.AllIsas)
            {
                data.Add(kernel.Name, isa);
            }
        }

        return data;
    }

    /// <summary>The names of the kernels of <paramref name="kernels"/> a rolling KV cache can serve.</summary>
    public static TheoryData<string> StreamableNames(IEnumerable<KernelUnderTest> kernels)
    {
        var data = new TheoryData<string>();
        foreach (KernelUnderTest kernel in kernels.Where(kernel => kernel.Pattern.SupportsStreaming))
        {
            data.Add(kernel.Name);
        }

        return data;
    }

    public static KernelUnderTest Get(string name) => All.Single(kernel => kernel.Name == name);
}
