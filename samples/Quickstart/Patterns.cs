using SparseAttention;

namespace Quickstart;

// Each declaration below becomes, at compile time, a kernel specialised to exactly that pattern.

/// <summary>Mistral-style: each token sees itself and the 511 tokens before it.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 512)]
public static partial class MistralWindow;

/// <summary>Longformer-style: 256 window steps each side with dilation 2, and two global tokens.</summary>
[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 256, Right = 256)]
[Dilation(2)]
[GlobalTokens(0, 1)]
public static partial class LongformerDilated;

/// <summary>Sparse Transformer strided: the previous 63 tokens plus every 64th token before them.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Left = 63)]
[Strided(Stride = 64)]
public static partial class SparseTransformerStrided;

/// <summary>Dense causal attention: the baseline every sparse pattern is compared with.</summary>
[AttentionKernel(HeadDim = 64)]
public static partial class DenseCausal;

/// <summary>
/// BigBird (Zaheer et al. 2020): blocks of 64; each block sees its neighbours, the first and last block (which see
/// everything), and 3 random blocks drawn reproducibly from the seed.
/// </summary>
[AttentionKernel(HeadDim = 64, Causal = false)]
[BlockSparse(BlockSize = 64, WindowBlocks = 1, GlobalBlocks = new[] { 0, -1 }, RandomBlocks = 3, Seed = 42)]
public static partial class BigBird;

/// <summary>The Sparse Transformer's fixed pattern: the query's own block of 128, plus the last 8 positions of every block.</summary>
[AttentionKernel(HeadDim = 64)]
[FixedFactorized(Block = 128, Summary = 8)]
public static partial class SparseTransformerFixed;

/// <summary>
/// Gemma 2's local layers at HeadDim 64: a 4096-token window with attention logits capped at 50 (cap x tanh(s / cap)).
/// At n = 4096 the window covers every earlier token, so this is dense causal attention plus the softcap.
/// </summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[Softcap(50)]
public static partial class Gemma2Local;
