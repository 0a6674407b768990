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
