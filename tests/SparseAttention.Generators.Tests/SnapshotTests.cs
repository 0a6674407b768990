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
}
