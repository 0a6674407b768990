using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using SparseAttention.Cpu;
using SparseAttention.Runtime.Tests.Decode;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// Softcap, ALiBi, compiled-in masks and score mods (docs/design.md §2.4): every declared kernel with modifiers on every
/// ISA, through decode and prefill, against the reference applying the same modifiers literally in double.
/// </summary>
[Collection(Gpu.IlgpuCpuCollection.Name)]
public class ScoreModifierTests(Gpu.IlgpuCpuDevice fixture)
{
    [Theory]
    [MemberData(nameof(ScoreModifierKernels.NamesByIsa), MemberType = typeof(ScoreModifierKernels))]
    public void MatchesTheReferenceOnRandomInputs(string name, KernelIsa isa)
    {
        KernelUnderTest kernel = ScoreModifierKernels.Get(name);
        var random = new Random(name.Length * 131 + (int)isa);
        foreach (int seqLen in new[] { 1, 37, 150 + random.Next(150) })
        {
            AttentionShape shape = AttentionCheck.RandomShape(random, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            var options = new AttentionOptions { Isa = isa };
            float[] expected = AttentionCheck.Reference(kernel, inputs, options);
            AttentionCheck.AssertClose(expected, AttentionCheck.Run(kernel, inputs, options), shape, kernel.HeadDim, $"{name} {isa} {shape}");
            if (seqLen > 1)
            {
                // The modifiers bite on these inputs: without them the reference differs.
                var plain = new float[expected.Length];
                ReferenceAttention.Forward(new AttentionPattern(kernel.Pattern.Causal, kernel.Pattern.Components), inputs.Query, inputs.Key, inputs.Value, plain, shape, options);
                Assert.True(expected.Zip(plain).Max(pair => Math.Abs(pair.First - pair.Second)) > 1e-3, $"{name}: the modifiers changed nothing");
            }
        }
    }

    [Theory]
    [MemberData(nameof(ScoreModifierKernels.StreamableNames), MemberType = typeof(ScoreModifierKernels))]
    public void DecodeAndPrefillApplyTheModifiersAtTheTokensPositions(string name)
    {
        KernelUnderTest kernel = ScoreModifierKernels.Get(name);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            // A prompt longer than the ring (prefill runs it in chunks), then token by token past the ring's wrap.
            StreamCase.Create(kernel, new Random(5 + (int)isa), heads: (6, 2)).AssertPrefillHalfThenDecode(options, isa.ToString());
        }
    }

    [Fact]
    public void AlibiSlopesFromTheOptionsReplaceTheDefaults()
    {
        KernelUnderTest kernel = ScoreModifierKernels.Get(nameof(AlibiDenseCausal));
        var random = new Random(3);
        var shape = new AttentionShape(5, 1, 90);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        var options = new AttentionOptions { AlibiSlopes = new float[] { 0f, 0.5f, 1f, 2f, 0.03f } };
        float[] expected = AttentionCheck.Reference(kernel, inputs, options);
        AttentionCheck.AssertClose(expected, AttentionCheck.Run(kernel, inputs, options), shape, kernel.HeadDim, "explicit slopes");

        // The explicit slopes matter: they differ from the defaults' result.
        float[] withDefaults = AttentionCheck.Reference(kernel, inputs);
        Assert.True(expected.Zip(withDefaults).Max(pair => Math.Abs(pair.First - pair.Second)) > 1e-2);

        ArgumentException wrongLength = Assert.Throws<ArgumentException>(() => AttentionCheck.Run(kernel, inputs, new AttentionOptions { AlibiSlopes = new float[] { 1f, 2f } }));
        Assert.Contains("one slope per query head: Heads = 5, but it holds 2", wrongLength.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOptions { AlibiSlopes = new float[] { 1f, float.NaN } });
    }

    [Theory]
    [InlineData(8, new[] { 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625 })]
    [InlineData(1, new[] { 0.00390625 })]
    [InlineData(12, new[] { 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625, 0.7071067811865476, 0.35355339059327373, 0.17677669529663687, 0.08838834764831845 })]
    public void AlibiDefaultSlopesFollowThePaper(int heads, double[] expected)
    {
        // Power of two: 2^(-8(h+1)/H). Otherwise those of the largest power of two p below H, then every other slope of
        // the 2p sequence: for 12 heads, 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (the ALiBi paper's get_slopes, written out).
        float[] slopes = AlibiSlopes.For(heads);
        Assert.Equal(expected.Length, slopes.Length);
        for (int h = 0; h < heads; h++)
        {
            Assert.Equal(expected[h], slopes[h], 6);
        }
    }

    [Fact]
    public void TheVectorTanhIsAccurateToThreeTenMillionths()
    {
        // The softcap's tanh (1 - e) / (1 + e) with the kernels' 2^x, against Math.Tanh over [-20, 20] and at the edges.
        var scores = new float[4001];
        for (int i = 0; i < scores.Length; i++)
        {
            scores[i] = -20f + i * 0.01f;
        }

        float[] capped = (float[])scores.Clone();
        float cap = 1f;
        ScoreMath.Softcap(capped, cap);
        double worst = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(Math.Tanh(scores[i]) - capped[i]));
            Assert.Equal(Math.Sign(scores[i]), Math.Sign(capped[i]));
        }

        Assert.True(worst < 3e-7, $"largest |error| {worst:E2}");
        // Non-finite scores become NaN, not ±cap: the kernels' NaN/Inf test then still sees them (design §4).
        float[] edges = { float.PositiveInfinity, float.NegativeInfinity, float.NaN, 0f, -0f, 1e-30f, 1e30f, -1e30f };
        ScoreMath.Softcap(edges, 2f);
        Assert.All(edges[..3], value => Assert.True(float.IsNaN(value)));
        Assert.Equal(new[] { 2f, -2f }, edges[6..]);
        Assert.Equal(0f, edges[3]);
        Assert.True(Math.Abs(edges[5]) < 1e-29);
    }

    [Fact]
    public void TheMaskIsPartOfVisibilityPairCountsAndPictures()
    {
        AttentionPattern pattern = DocumentMaskBidirectional.Pattern;
        Assert.NotNull(pattern.Mask);
        int n = 150;
        long brute = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                bool same = DocumentMaskBidirectional.DocumentOf(i) == DocumentMaskBidirectional.DocumentOf(j);
                Assert.Equal(same, pattern.IsVisible(i, j, 0, n));
                Assert.True(pattern.InStructure(i, j, 0, n));
                brute += same ? 1 : 0;
            }
        }

        Assert.Equal(brute * 3, pattern.VisiblePairs(n, 3));
        Assert.NotEqual(new AttentionPattern(causal: false).ToSvg(60), pattern.ToSvg(60));
        Assert.Equal(TileClass.Partial, pattern.ClassifyTile(0, 0, 3, 0, 3, n));
    }

    [Fact]
    public void AFullyMaskedRowIsZerosAndNaNInAHiddenValueOfAVisitedKeyStillReachesTheRow()
    {
        // EverythingStreamable's mask hides key 1 from query 2 in head 0 ((1 + 0) % 3 == 1). The structure visits that
        // pair, so a NaN value there reaches row 2 (weight 0 times NaN), as with FlexAttention's masks (design §4);
        // a NaN value outside the structure (key 0 is a global token, so use a row's far past) never does.
        KernelUnderTest kernel = ScoreModifierKernels.Get(nameof(EverythingStreamable));
        var shape = new AttentionShape(1, 1, 64);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(8), shape, kernel.HeadDim);
        Assert.False(kernel.Pattern.IsVisible(2, 1, 0, 64));
        Assert.True(kernel.Pattern.InStructure(2, 1, 0, 64));
        float[] value = (float[])inputs.Value.Clone();
        value[1 * kernel.HeadDim] = float.NaN;
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            float[] expected = AttentionCheck.Reference(kernel, inputs with { Value = value }, options);
            float[] actual = AttentionCheck.Run(kernel, inputs with { Value = value }, options);
            Assert.True(AttentionCheck.AssertSameRowsOrNaN(expected, actual, shape, kernel.HeadDim, $"{isa}") > 0);
        }

        {
            AttentionDevice device = fixture.Device;
            float[] onAccelerator = AttentionCheck.RunOnAccelerator(kernel, inputs with { Value = value }, device.Accelerator!);
            Assert.True(AttentionCheck.AssertSameRowsOrNaN(AttentionCheck.Reference(kernel, inputs with { Value = value }), onAccelerator, shape, kernel.HeadDim, "ILGPU") > 0);
        }

        AttentionCheck.AssertInvisibleKeysHaveNoInfluence(kernel, inputs, new[] { 0 }, new[] { 40, 63 }, poisoned => AttentionCheck.Run(kernel, poisoned, AttentionOptions.Default), "outside the structure");
    }

    [Theory]
    [InlineData(nameof(SoftcappedWindow))]
    [InlineData(nameof(EverythingOnFixed))]
    [InlineData(nameof(EverythingStreamable))]
    [InlineData(nameof(ScoreModLongformer))]
    public void AnInfiniteVisibleScoreMakesTheRowNaNEvenWhereASoftcapWouldBoundIt(string name)
    {
        // Design §4: the policy is about raw q·k. A softcap maps +inf to +cap and a score mod may map anything to a finite
        // number, so the kernels test raw scores for any non-finite value when a declaration has modifiers.
        KernelUnderTest kernel = ScoreModifierKernels.Get(name);
        var shape = new AttentionShape(2, 1, 70);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(21), shape, kernel.HeadDim);
        float[] key = (float[])inputs.Key.Clone();
        key[33 * kernel.HeadDim + 1] = float.PositiveInfinity;
        key[50 * kernel.HeadDim + 2] = float.NegativeInfinity;
        key[12 * kernel.HeadDim] = float.NaN;
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            AttentionCheck.Inputs poisoned = inputs with { Key = key };
            int rows = AttentionCheck.AssertSameRowsOrNaN(AttentionCheck.Reference(kernel, poisoned, options), AttentionCheck.Run(kernel, poisoned, options), shape, kernel.HeadDim, $"{name} {isa}");
            Assert.True(rows > 0, "the poison reached no row");
        }

        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        AttentionCheck.Inputs onDevice = inputs with { Key = key };
        Assert.True(AttentionCheck.AssertSameRowsOrNaN(AttentionCheck.Reference(kernel, onDevice), AttentionCheck.RunOnAccelerator(kernel, onDevice, device.Accelerator!), shape, kernel.HeadDim, $"{name} ILGPU") > 0);
    }

    [Fact]
    public void AScoreModsNaNOrPlusInfinityMakesItsRowNaNOnEveryPath()
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(ScoreModReturningNaN));
        var shape = new AttentionShape(2, 1, 64);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(5), shape, kernel.HeadDim);
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        var nanRows = new List<(int Head, int Row)>();
        for (int start = 0; start < expected.Length; start += kernel.HeadDim)
        {
            if (float.IsNaN(expected[start]))
            {
                nanRows.Add((start / kernel.HeadDim / shape.SeqLen, start / kernel.HeadDim % shape.SeqLen));
            }
        }

        Assert.Equal(new[] { (0, 20), (1, 40) }, nanRows);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            AttentionCheck.AssertSameRowsOrNaN(expected, AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa }), shape, kernel.HeadDim, $"{isa}");
        }

        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        AttentionCheck.AssertSameRowsOrNaN(expected, AttentionCheck.RunOnAccelerator(kernel, inputs, device.Accelerator!), shape, kernel.HeadDim, "ILGPU");
    }

    [Theory]
    [InlineData(nameof(EverythingOnFixed))]
    [InlineData(nameof(EverythingStreamable))]
    [InlineData(nameof(DocumentMaskBidirectional))]
    public void WarmCallsWithModifiersAllocateNothingOnTheCallingThread(string name)
    {
        KernelUnderTest kernel = ScoreModifierKernels.Get(name);
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 300);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(4), shape, kernel.HeadDim);
        var output = new float[inputs.Query.Length];
        var options = new AttentionOptions();
        kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options with { MaxDegreeOfParallelism = 1 });
        kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options);
        Assert.Equal(0, AllocationCheck.FewestBytesOverBatches(() => kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options)));
        if (kernel.Pattern.SupportsStreaming && kernel.Streaming is { } streaming)
        {
            KvCache cache = streaming.CreateCache(shape.KvHeads);
            float[] token = new float[shape.KvHeads * kernel.HeadDim], query = new float[shape.Heads * kernel.HeadDim], row = new float[query.Length];
            for (int step = 0; step < 60; step++)
            {
                cache.Append(token, token);
                streaming.Decode(query, cache, row, options);
            }

            Assert.Equal(0, AllocationCheck.FewestBytesOverBatches(() =>
            {
                for (int step = 0; step < 50; step++)
                {
                    cache.Append(token, token);
                    streaming.Decode(query, cache, row, options);
                }
            }));
        }
    }

    [Fact]
    public void GeneratedMembersDescribeTheModifiers()
    {
        Assert.Equal(2.5f, SoftcappedWindow.Scores.Softcap);
        Assert.True(AlibiDenseCausal.Scores.Alibi);
        Assert.Same(ScoreModifiers.None, DenseCausal.Scores);
        Assert.NotNull(ScoreModLongformer.Scores.ScoreMod);
        Assert.Equal(ScoreModLongformer.Bias(1f, 2, 3, 1), ScoreModLongformer.Scores.ScoreMod!(1f, 2, 3, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ScoreModifiers { Softcap = 0f });
        Assert.Throws<ArgumentOutOfRangeException>(() => new ScoreModifiers { Softcap = float.PositiveInfinity });
    }

    [Theory]
    [MemberData(nameof(ScoreModifierKernels.Names), MemberType = typeof(ScoreModifierKernels))]
    public void EveryModifierRunsInTheIlgpuKernel(string name)
    {
        // Softcap and ALiBi are arguments of the shared kernel; a mask or score mod is compiled into the declaration's own.
        KernelUnderTest kernel = ScoreModifierKernels.Get(name);
        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        var random = new Random(name.Length);
        foreach (int seqLen in new[] { 1, 70 })
        {
            var shape = new AttentionShape(6, 3, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            var options = seqLen == 1 ? AttentionOptions.Default : new AttentionOptions { AlibiSlopes = new float[] { 0.5f, 0.25f, 0f, 1f, 0.1f, 0.3f } };
            AttentionCheck.AssertClose(AttentionCheck.Reference(kernel, inputs, options), AttentionCheck.RunOnAccelerator(kernel, inputs, device.Accelerator!, options), shape, kernel.HeadDim, $"{name} on ILGPU's CPU accelerator, n={seqLen}");
        }
    }

    [Fact]
    public void LearnedSinksRunInTheIlgpuKernel()
    {
        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        var random = new Random(12);
        // A plain launch first (its per-head buffer is the small unfilled one), then sinks on the same accelerator.
        var plain = new AttentionShape(1, 1, 10);
        AttentionCheck.Inputs plainInputs = AttentionCheck.RandomInputs(random, plain, SoftcappedWindow.HeadDim);
        SoftcappedWindow.Forward(device.Accelerator!, plainInputs.Query, plainInputs.Key, plainInputs.Value, new float[plainInputs.Query.Length], plain);
        var shape = new AttentionShape(1, 1, 60);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, GlobalsWithLearnedSinks.HeadDim);
        RunSinks(new[] { 1.5f });
        shape = new AttentionShape(4, 2, 60);
        inputs = AttentionCheck.RandomInputs(random, shape, GlobalsWithLearnedSinks.HeadDim);
        RunSinks(new[] { float.NegativeInfinity, 1.5f, 60f, -2f });

        void RunSinks(float[] sinks)
        {
            var expected = new float[inputs.Query.Length];
            ReferenceAttention.Forward(GlobalsWithLearnedSinks.Pattern, GlobalsWithLearnedSinks.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, Span<float>.Empty, shape);
            var actual = new float[expected.Length];
            GlobalsWithLearnedSinks.Forward(device.Accelerator!, inputs.Query, inputs.Key, inputs.Value, sinks, actual, shape);
            AttentionCheck.AssertClose(expected, actual, shape, GlobalsWithLearnedSinks.HeadDim, $"sinks and softcap on ILGPU's CPU accelerator, {shape}");
        }
    }

    [Fact]
    public void TheSharedGpuKernelRefusesAMaskOrScoreModInsteadOfIgnoringIt()
    {
        // Only a declaration's own kernel has its user code compiled in; the shared one of its HeadDim must not run it.
        using var context = Context.Create(builder => builder.CPU());
        using CPUAccelerator accelerator = context.CreateCPUAccelerator(0);
        var shape = new AttentionShape(1, 1, 8);
        using MemoryBuffer1D<float, Stride1D.Dense> data = accelerator.Allocate1D<float>(8 * 32);
        SparseAttention.Gpu.GpuAttentionKernel shared = SparseAttention.Generated.HeadDim32.GpuKernel;
        Assert.False(shared.RunsUserCode);
        NotSupportedException refused = Assert.Throws<NotSupportedException>(() => shared.Launch(accelerator, DocumentMaskBidirectional.Pattern, data.View, data.View, data.View, data.View, shape, 1f));
        Assert.Contains("its own declaration", refused.Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => shared.Launch(accelerator, SoftcappedWindow.Pattern, data.View, data.View, data.View, data.View, shape, 1f, ScoreModLongformer.Scores, AttentionOptions.Default, ReadOnlySpan<float>.Empty, default));
    }

    [Fact]
    public void AMaskReadingAStaticArrayOnAContextThatRejectsThemSaysHowToFixIt()
    {
        // ILGPU rejects static arrays unless the context inlines them (AttentionDevice's contexts do; this one does not).
        using var context = Context.Create(builder => builder.CPU(CPUDeviceKind.Nvidia));
        using CPUAccelerator accelerator = context.CreateCPUAccelerator(0);
        var data = new float[8 * 32];
        NotSupportedException refused = Assert.Throws<NotSupportedException>(() => DocumentMaskBidirectional.Forward(accelerator, data, data, data, new float[data.Length], new AttentionShape(1, 1, 8)));
        Assert.Contains("mask or score mod", refused.Message, StringComparison.Ordinal);
        Assert.Contains("ArrayMode.InlineMutableStaticArrays", refused.Message, StringComparison.Ordinal);
    }
}
