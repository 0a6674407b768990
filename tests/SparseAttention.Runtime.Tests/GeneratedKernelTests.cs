using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>Every declared kernel, on every ISA path, against <see cref="ReferenceAttention"/>.</summary>
public class GeneratedKernelTests
{
    /// <summary>
    /// n = 1, odd sizes, exactly one tile of rows (4 or 6) and two, sizes around the 64-key tile and the work
    /// item, and larger.
    /// </summary>
    private static readonly int[] SequenceLengths = { 1, 2, 4, 6, 7, 12, 31, 33, 64, 65, 130, 203 };

    /// <summary>
    /// Block components at a length where runs are longer than the CPU's 512-key chunk: global block rows see the whole
    /// sequence in three chunks, causal runs are cut on the diagonal inside a chunk, and tiles before a chunk are skipped.
    /// </summary>
    [Theory]
    [InlineData(nameof(BigBirdBidirectional))]
    [InlineData(nameof(BigBirdCausal))]
    [InlineData(nameof(CausalBlocksLongerThanAKeyChunk))]
    [InlineData(nameof(SparseTransformerFixed))]
    public void BlockRunsLongerThanAKeyChunkMatchReference(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(name.Length * 31);
        AttentionShape shape = AttentionCheck.RandomShape(random, 1300);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        foreach (KernelIsa isa in AttentionCheck.AllIsas.Where(isa => isa != KernelIsa.Scalar))
        {
            float[] actual = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{name} {isa} {shape}");
        }
    }

    /// <summary>
    /// A band pass's block of tiles taking its keys in several chunks (CpuAttention.BandChunkBytes: on every ISA, for a block
    /// whose keys pass 512 KiB), here forced to chunks of 24 KiB (48 keys at HeadDim 64, rounded to whole key tiles) on
    /// every ISA, with sequences long enough for many: dense rows (causal and not), windows whose rows straddle chunk edges, dilated and strided streams longer
    /// than a chunk, and a window with global tokens' row tails.
    /// </summary>
    [Theory]
    [InlineData(nameof(DenseCausal), 777)]
    [InlineData(nameof(DenseBidirectional), 600)]
    [InlineData(nameof(WindowWiderThanTile), 900)]
    [InlineData(nameof(CausalCutsRightSide), 700)]
    [InlineData(nameof(PerHeadDilation), 1100)]
    [InlineData(nameof(StridedOnly), 1100)]
    [InlineData(nameof(SparseTransformerStrided), 2300)]
    [InlineData(nameof(LongformerLike), 800)]
    public void BandBlocksTakingKeysInSeveralChunksMatchTheReference(string name, int seqLen)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(seqLen);
        var shape = new AttentionShape(Heads: 3, KvHeads: 1, SeqLen: seqLen);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        SparseAttention.Cpu.CpuAttention.BandChunkBytesForTests = 24 << 10;
        try
        {
            foreach (KernelIsa isa in AttentionCheck.AllIsas.Where(isa => isa != KernelIsa.Scalar))
            {
                float[] actual = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa });
                AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{name} {isa} {shape}");
            }
        }
        finally
        {
            SparseAttention.Cpu.CpuAttention.BandChunkBytesForTests = null;
        }
    }

    [Theory]
    [MemberData(nameof(DeclaredKernels.NamesByIsa), MemberType = typeof(DeclaredKernels))]
    public void MatchesReferenceOnRandomInputs(string name, KernelIsa isa)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(AttentionCheck.StableSeed(name + isa));
        foreach (int seqLen in SequenceLengths)
        {
            AttentionShape shape = AttentionCheck.RandomShape(random, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            float[] expected = AttentionCheck.Reference(kernel, inputs);
            float[] actual = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{name} {isa} {shape}");
        }
    }

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void AllIsaPathsAgreeWithEachOtherAndUseAllCoresTheSameWay(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(7);
        AttentionShape shape = new(Heads: 8, KvHeads: 2, SeqLen: 300);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        float[] singleThreaded = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = KernelIsa.Scalar, MaxDegreeOfParallelism = 1 });
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            float[] parallel = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(singleThreaded, parallel, shape, kernel.HeadDim, $"{name} {isa} vs scalar");
        }
    }

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void ExplicitScaleMatchesReference(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(11);
        AttentionShape shape = new(Heads: 2, KvHeads: 1, SeqLen: 45);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        var options = new AttentionOptions { Scale = 0.05f };
        float[] expected = AttentionCheck.Reference(kernel, inputs, options);
        AttentionCheck.AssertClose(expected, AttentionCheck.Run(kernel, inputs, options), shape, kernel.HeadDim, name + " scale 0.05");
    }

    /// <summary>
    /// docs/design.md §2: keys a query cannot see have no influence, not even NaN or Inf stored in them. For
    /// sample rows, every key and value the row cannot see is poisoned; that row must still equal the
    /// reference computed on clean inputs.
    /// </summary>
    [Theory]
    [MemberData(nameof(DeclaredKernels.NamesByIsa), MemberType = typeof(DeclaredKernels))]
    public void NaNAndInfinityInInvisibleKeysDoNotReachTheRow(string name, KernelIsa isa)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        AttentionCheck.Inputs clean = AttentionCheck.RandomInputs(new Random(3), new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 90), kernel.HeadDim);
        AttentionCheck.AssertInvisibleKeysHaveNoInfluence(kernel, clean, heads: new[] { 0, 3 }, rows: new[] { 0, 1, 17, 45, 89 },
            inputs => AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa }), $"{name} {isa}");
    }

    [Fact]
    public void QueryThatSeesNothingGetsZeros()
    {
        // GlobalsOnly: causal, globals 1 and 2. Query 0 is not global and no global key is at or before it.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(GlobalsOnly));
        Assert.False(kernel.Pattern.IsVisible(0, 0));
        var random = new Random(5);
        AttentionShape shape = new(1, 1, 10);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            float[] output = AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa });
            Assert.All(output.Take(kernel.HeadDim), value => Assert.Equal(0f, value));
            Assert.Contains(output.Skip(kernel.HeadDim), value => value != 0f);
        }
    }

    [Fact]
    public void GeneratedMembersDescribeTheDeclaration()
    {
        Assert.Equal(128, CausalWindowWithSinks.HeadDim);
        Assert.True(CausalWindowWithSinks.Pattern.Causal);
        Assert.Equal(7, CausalWindowWithSinks.Pattern.WindowLeft);
        Assert.Equal(new[] { 0, 3, 500 }, CausalWindowWithSinks.Pattern.GlobalTokens);
        Assert.Equal(new[] { 1, 2, 3 }, PerHeadDilation.Pattern.Dilations);
        Assert.Equal(3, PerHeadDilation.Pattern.DilationOf(2));
        Assert.Equal(1, PerHeadDilation.Pattern.DilationOf(3));
        Assert.Equal(8, SparseTransformerStrided.Pattern.Stride);
        Assert.True(DenseBidirectional.Pattern.IsDense);
        Assert.False(DenseBidirectional.Pattern.Causal);
    }
}
