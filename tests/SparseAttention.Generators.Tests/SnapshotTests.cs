namespace SparseAttention.Generators.Tests;

/// <summary>The generated source for representative declarations, kept as *.verified.cs files.</summary>
public class SnapshotTests
{
    public static TheoryData<string, string, string> Declarations() => new()
    {
        {
            "MistralAttention", "MyModel.MistralAttention",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 128)]
            [SlidingWindow(Size = 4096)]
            public static partial class MistralAttention;
            """
        },
        {
            "DocumentMaskedSoftcapAlibi", "MyModel.DocumentMaskedSoftcapAlibi",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 64)]
            [SlidingWindow(Size = 128)]
            [Softcap(50)]
            [Alibi]
            [AttentionMask(nameof(SameDocument))]
            [ScoreMod(nameof(Temperature))]
            public static partial class DocumentMaskedSoftcapAlibi
            {
                private static readonly int[] Documents = new int[1 << 16];
                private static bool SameDocument(int query, int key, int head) => Documents[query] == Documents[key];
                private static float Temperature(float score, int query, int key, int head) => score * 0.5f;
            }
            """
        },
        {
            "ImageNeighborhood", "MyModel.ImageNeighborhood",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 32, Causal = false)]
            [Neighborhood(7, 7, Dilation = new[] { 1, 2 })]
            [GlobalTokens(0)]
            public static partial class ImageNeighborhood;
            """
        },
        {
            "LongformerAttention", "MyModel.LongformerAttention",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 64, Causal = false)]
            [SlidingWindow(Left = 256, Right = 256)]
            [Dilation(2)]
            [GlobalTokens(0, 1)]
            public static partial class LongformerAttention;
            """
        },
        {
            "StridedAttention", "StridedAttention",
            """
            using SparseAttention;

            [AttentionKernel(HeadDim = 32)]
            [SlidingWindow(Left = 127)]
            [Strided(Stride = 128)]
            static partial class StridedAttention { }
            """
        },
        {
            "BigBirdAttention", "MyModel.BigBirdAttention",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 64, Causal = false)]
            [BlockSparse(BlockSize = 64, WindowBlocks = 1, GlobalBlocks = new[] { 0, -1 }, RandomBlocks = 3, Seed = 42)]
            public static partial class BigBirdAttention;
            """
        },
        {
            "SparseTransformerFixed", "MyModel.SparseTransformerFixed",
            """
            using SparseAttention;
            namespace MyModel;

            [AttentionKernel(HeadDim = 64)]
            [FixedFactorized(Block = 128, Summary = 8, VaryByHead = true)]
            public static partial class SparseTransformerFixed;
            """
        },
        {
            "NestedDenseHeadDim8", "Outer.Layers.Container.Dense",
            """
            using SparseAttention;
            namespace Outer.Layers
            {
                public partial class Container
                {
                    [AttentionKernel(HeadDim = 8)]
                    internal static partial class Dense { }
                }
            }
            """
        },
    };

    [Theory]
    [MemberData(nameof(Declarations))]
    public void GeneratedSourceMatchesSnapshot(string name, string fullName, string source)
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(source);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompilationErrors);
        Snapshot.Verify(name, result.Source(fullName));
    }

    /// <summary>
    /// The kernels every declaration of one HeadDim shares, written once per compilation: here for HeadDim 64 with ILGPU
    /// referenced (tile-and-row kernels per vector width, the scalar row kernel, the ILGPU kernel).
    /// </summary>
    [Fact]
    public void SharedKernelsOfOneHeadDimMatchSnapshot()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(
            "[SparseAttention.AttentionKernel(HeadDim = 64)] [SparseAttention.SlidingWindow(Size = 32)] static partial class A { }",
            "[SparseAttention.AttentionKernel(HeadDim = 64, Causal = false)] [SparseAttention.GlobalTokens(0)] static partial class B { }");
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompilationErrors);
        Microsoft.CodeAnalysis.GeneratedSourceResult shared = Assert.Single(result.Run.Results.Single().GeneratedSources, source => source.HintName == "SparseAttention.Generated.HeadDim64.g.cs");
        Snapshot.Verify("SharedHeadDim64", shared.SourceText.ToString());
    }
}
