using ILGPU.Runtime;
using SparseAttention.Cpu;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// The generated kernels of [Neighborhood] declarations with a grid per call, on every ISA, against the reference on the
/// pattern bound to the same grid; and a wrong grid named.
/// </summary>
public class NeighborhoodKernelTests
{
    private delegate void GridForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, GridShape grid, AttentionOptions? options);

    private static readonly (string Name, int HeadDim, AttentionPattern Pattern, GridForward Forward, int[][] Grids)[] Kernels =
    {
        (nameof(Neighborhood2D), Neighborhood2D.HeadDim, Neighborhood2D.Pattern, Neighborhood2D.Forward, new[] { new[] { 9, 13 }, new[] { 2, 40 }, new[] { 1, 1 }, new[] { 12, 12 } }),
        (nameof(DilatedNeighborhoodWithClassToken), DilatedNeighborhoodWithClassToken.HeadDim, DilatedNeighborhoodWithClassToken.Pattern, DilatedNeighborhoodWithClassToken.Forward, new[] { new[] { 7, 11 }, new[] { 5, 1 }, new[] { 16, 16 } }),
        (nameof(VideoNeighborhood3D), VideoNeighborhood3D.HeadDim, VideoNeighborhood3D.Pattern, VideoNeighborhood3D.Forward, new[] { new[] { 3, 5, 6 }, new[] { 1, 3, 3 }, new[] { 4, 7, 9 } }),
        (nameof(Neighborhood7x7HeadDim64), Neighborhood7x7HeadDim64.HeadDim, Neighborhood7x7HeadDim64.Pattern, Neighborhood7x7HeadDim64.Forward, new[] { new[] { 14, 14 }, new[] { 9, 70 }, new[] { 5, 3 } }),
    };

    public static TheoryData<string, KernelIsa> KernelsByIsa()
    {
        var data = new TheoryData<string, KernelIsa>();
        foreach (var kernel in Kernels)
        {
            foreach (KernelIsa isa in AttentionCheck.AllIsas)
            {
                data.Add(kernel.Name, isa);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsByIsa))]
    public void ForwardOnAGridMatchesTheReference(string name, KernelIsa isa)
    {
        var kernel = Kernels.Single(candidate => candidate.Name == name);
        var random = new Random(AttentionCheck.StableSeed(name + isa));
        foreach (int[] grid in kernel.Grids)
        {
            int seqLen = grid.Aggregate(1, (product, length) => product * length);
            var shape = new AttentionShape(4, 2, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            var expected = new float[inputs.Query.Length];
            ReferenceAttention.Forward(kernel.Pattern.WithGrid(grid), inputs.Query, inputs.Key, inputs.Value, expected, shape);
            var actual = new float[expected.Length];
            kernel.Forward(inputs.Query, inputs.Key, inputs.Value, actual, shape, new GridShape(grid), new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{name} on {string.Join("x", grid)}, {isa}");
        }
    }

    public static TheoryData<int, KernelIsa> SeedsByIsa()
    {
        var data = new TheoryData<int, KernelIsa>();
        foreach (KernelIsa isa in new[] { KernelIsa.Vector512, KernelIsa.Vector256, KernelIsa.Vector128 })
        {
            for (int seed = 1; seed <= 6; seed++)
            {
                data.Add(seed, isa);
            }
        }

        return data;
    }

    /// <summary>
    /// Random neighbourhoods (1-3 axes, odd and even kernels, dilations, causal axes, axes shorter than k·d, sometimes a
    /// class token) through each tile kernel, grids long enough for several chunks and blocks of lines, GQA, learned sinks
    /// and log-sum-exps, and on odd seeds query, key and value rows padded apart (a tensor view's layout).
    /// </summary>
    [Theory]
    [MemberData(nameof(SeedsByIsa))]
    public void RandomNeighbourhoodsThroughTheTileKernelsMatchTheReference(int seed, KernelIsa isa)
    {
        const int headDim = 16;
        var random = new Random(seed * 31 + (int)isa);
        int axes = 1 + seed % 3;
        int[] grid = axes switch
        {
            1 => new[] { random.Next(1, 300) },
            2 => new[] { random.Next(1, 24), random.Next(1, 80) },
            _ => new[] { random.Next(1, 4), random.Next(1, 12), random.Next(1, 30) },
        };
        int[] k = Enumerable.Range(0, axes).Select(_ => random.Next(1, 10)).ToArray();
        int[] d = Enumerable.Range(0, axes).Select(_ => random.Next(3) == 0 ? 2 : 1).ToArray();
        bool[] causal = Enumerable.Range(0, axes).Select(_ => random.Next(4) == 0).ToArray();
        int n = grid.Aggregate(1, (product, length) => product * length);
        var components = new List<PatternComponent> { new NeighborhoodComponent(k, d, causal, grid) };
        if (random.Next(2) == 0)
        {
            components.Add(new GlobalTokensComponent(new[] { 0 }));
        }

        var pattern = new AttentionPattern(false, components);
        var shape = new AttentionShape(4, 2, n);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, headDim);
        float[] sinks = AttentionCheck.RandomArray(random, shape.Heads);
        var expected = new float[inputs.Query.Length];
        var expectedLse = new float[shape.Heads * n];
        ReferenceAttention.Forward(pattern, new ScoreModifiers(), inputs.Query, inputs.Key, inputs.Value, sinks, expected, expectedLse, shape);

        // On odd seeds every row sits 24 floats apart instead of 16 (the padding holds NaN, which must never be read).
        int rowStride = seed % 2 == 1 ? headDim + 8 : headDim;
        float[] Spread(float[] dense, int heads)
        {
            var spread = new float[heads * n * rowStride];
            Array.Fill(spread, float.NaN);
            for (int row = 0; row < heads * n; row++)
            {
                Array.Copy(dense, row * headDim, spread, row * rowStride, headDim);
            }

            return spread;
        }

        var queryRows = new RowStrides(0, (long)n * rowStride, rowStride);
        var keyRows = new RowStrides(0, (long)n * rowStride, rowStride);
        var layout = new AttentionLayout(queryRows, keyRows, keyRows, RowStrides.Dense(shape.Heads, n, headDim));
        var actual = new float[expected.Length];
        var actualLse = new float[expectedLse.Length];
        Action<float[], float[], float[]> run = isa switch
        {
            KernelIsa.Vector512 => (q, key, v) => CpuAttention.RunTiled<Generated.HeadDim16.Vector512Kernel, NoScoreModifier>(pattern, q, key, v, actual, shape, AttentionOptions.Default, sinks, actualLse, layout),
            KernelIsa.Vector256 => (q, key, v) => CpuAttention.RunTiled<Generated.HeadDim16.Vector256Kernel, NoScoreModifier>(pattern, q, key, v, actual, shape, AttentionOptions.Default, sinks, actualLse, layout),
            _ => (q, key, v) => CpuAttention.RunTiled<Generated.HeadDim16.Vector128Kernel, NoScoreModifier>(pattern, q, key, v, actual, shape, AttentionOptions.Default, sinks, actualLse, layout),
        };
        run(Spread(inputs.Query, shape.Heads), Spread(inputs.Key, shape.KvHeads), Spread(inputs.Value, shape.KvHeads));
        string context = $"{pattern}, {isa}, rows {rowStride} apart";
        AttentionCheck.AssertClose(expected, actual, shape, headDim, context);
        AttentionCheck.AssertClose(expectedLse, actualLse, shape with { KvHeads = shape.Heads }, 1, context + ", log-sum-exp");
    }

    /// <summary>Softcap, ALiBi and a score mod reading every argument, on a dilated 2-D neighbourhood with a class token, every ISA.</summary>
    [Theory]
    [MemberData(nameof(Isas))]
    public void ScoreModifiersSeeTheGatheredKeysPositions(KernelIsa isa)
    {
        var random = new Random(AttentionCheck.StableSeed("modified neighbourhood" + isa));
        foreach (int[] grid in new[] { new[] { 9, 70 }, new[] { 4, 9 } })
        {
            int n = grid[0] * grid[1];
            var shape = new AttentionShape(4, 2, n);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, ModifiedNeighborhood.HeadDim);
            var expected = new float[inputs.Query.Length];
            ReferenceAttention.Forward(ModifiedNeighborhood.Pattern.WithGrid(grid), ModifiedNeighborhood.Scores, inputs.Query, inputs.Key, inputs.Value, expected, shape);
            var actual = new float[expected.Length];
            ModifiedNeighborhood.Forward(inputs.Query, inputs.Key, inputs.Value, actual, shape, new GridShape(grid), new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, actual, shape, ModifiedNeighborhood.HeadDim, $"modified neighbourhood on {string.Join("x", grid)}, {isa}");
        }
    }

    /// <summary>
    /// docs/design.md §4 through the neighbourhood tiles: NaN and ±inf in every key and value a row cannot see (which the
    /// gathered streams still carry in lanes the row's band masks, or in slots about to be rewritten) leave that row as
    /// the clean reference computes it. Rows at corners, borders and the interior of a grid with several chunks and blocks.
    /// </summary>
    [Theory]
    [MemberData(nameof(Isas))]
    public void PoisonARowCannotSeeDoesNotReachIt(KernelIsa isa)
    {
        var kernel = Kernels.Single(candidate => candidate.Name == nameof(DilatedNeighborhoodWithClassToken));
        int[] grid = { 20, 70 };
        int n = grid[0] * grid[1], d = kernel.HeadDim;
        var shape = new AttentionShape(2, 1, n);
        AttentionPattern pattern = kernel.Pattern.WithGrid(grid);
        AttentionCheck.Inputs clean = AttentionCheck.RandomInputs(new Random(AttentionCheck.StableSeed("poison" + isa)), shape, d);
        var expected = new float[clean.Query.Length];
        ReferenceAttention.Forward(pattern, clean.Query, clean.Key, clean.Value, expected, shape);
        float[] poisons = { float.NaN, float.PositiveInfinity, float.NegativeInfinity };
        foreach (int row in new[] { 1, 69, 70 * 9 + 35, 70 * 19 + 68, 70 * 10 + 61 })
        {
            float[] key = (float[])clean.Key.Clone(), value = (float[])clean.Value.Clone();
            for (int j = 0; j < n; j++)
            {
                if (!pattern.IsVisible(row, j, 1, n))
                {
                    Array.Fill(key, poisons[j % 3], j * d, d);
                    Array.Fill(value, poisons[(j + 1) % 3], j * d, d);
                }
            }

            var actual = new float[expected.Length];
            kernel.Forward(clean.Query, key, value, actual, shape, new GridShape(grid), new AttentionOptions { Isa = isa });
            int offset = (shape.SeqLen + row) * d;
            AttentionCheck.AssertClose(expected.AsSpan(offset, d).ToArray(), actual.AsSpan(offset, d).ToArray(), shape with { Heads = 1, KvHeads = 1, SeqLen = 1 }, d, $"head 1, row {row} with poisoned invisible keys, {isa}");
        }
    }

    public static TheoryData<KernelIsa> Isas()
    {
        var data = new TheoryData<KernelIsa>();
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            data.Add(isa);
        }

        return data;
    }

    [Fact]
    public void AGridThatDoesNotHoldTheSequenceIsNamed()
    {
        var shape = new AttentionShape(1, 1, 20);
        var buffer = new float[20 * Neighborhood2D.HeadDim];
        ArgumentException wrongProduct = Assert.Throws<ArgumentException>(() => Neighborhood2D.Forward(buffer, buffer, buffer, new float[buffer.Length], shape, new GridShape(4, 6)));
        Assert.Equal("grid", wrongProduct.ParamName);
        Assert.Contains("shape.SeqLen = 20", wrongProduct.Message);
        Assert.Equal("grid", Assert.Throws<ArgumentException>(() => Neighborhood2D.Forward(buffer, buffer, buffer, new float[buffer.Length], shape, new GridShape(20))).ParamName);
        Assert.Same(Neighborhood2D.Pattern.OnGrid(new GridShape(4, 5), 20), Neighborhood2D.Pattern.OnGrid(new GridShape(4, 5), 20));

        Assert.Equal("lengths", Assert.Throws<ArgumentNullException>(() => new GridShape(null!)).ParamName);
        Assert.Equal("grid", Assert.Throws<ArgumentException>(() => Neighborhood2D.Forward(buffer, buffer, buffer, new float[buffer.Length], shape, new GridShape(-4, -5))).ParamName);

        // Without a grid a 2-D kernel cannot know its rows; the call says which overload to use.
        ArgumentException noGrid = Assert.Throws<ArgumentException>(() => Neighborhood2D.Forward(buffer, buffer, buffer, new float[buffer.Length], shape));
        Assert.Equal("grid", noGrid.ParamName);
        Assert.Contains("takes a GridShape", noGrid.Message);
    }
}

/// <summary>The ILGPU kernel of a [Neighborhood] declaration on a grid, on ILGPU's CPU accelerator, against the reference.</summary>
[Collection(Gpu.IlgpuCpuCollection.Name)]
public class NeighborhoodAcceleratorTests(Gpu.IlgpuCpuDevice fixture)
{
    [Fact]
    public void TheGpuKernelOnAGridMatchesTheReference()
    {
        ILGPU.Runtime.Accelerator accelerator = fixture.Device.Accelerator!;
        var grid = new GridShape(7, 11);
        var shape = new AttentionShape(2, 1, 77);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(18), shape, DilatedNeighborhoodWithClassToken.HeadDim);
        var expected = new float[inputs.Query.Length];
        ReferenceAttention.Forward(DilatedNeighborhoodWithClassToken.Pattern.OnGrid(grid, shape.SeqLen), inputs.Query, inputs.Key, inputs.Value, expected, shape);
        using var query = accelerator.Allocate1D(inputs.Query);
        using var key = accelerator.Allocate1D(inputs.Key);
        using var value = accelerator.Allocate1D(inputs.Value);
        using var output = accelerator.Allocate1D<float>(expected.Length);
        DilatedNeighborhoodWithClassToken.Forward(accelerator, query.View, key.View, value.View, output.View, shape, grid);
        accelerator.Synchronize();
        AttentionCheck.AssertClose(expected, output.GetAsArray1D(), shape, DilatedNeighborhoodWithClassToken.HeadDim, "neighbourhood 3x3 (dilation 2x1) with a class token on a 7x11 grid, ILGPU CPU accelerator");
    }
}

/// <summary>Decode of the one neighbourhood a rolling cache can serve (1-D, causal along its axis), and the refusal of the others.</summary>
public class NeighborhoodDecodeTests
{
    public static TheoryData<KernelIsa> Isas()
    {
        var data = new TheoryData<KernelIsa>();
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            data.Add(isa);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Isas))]
    public void ACausalOneDimensionalNeighbourhoodPrefillsAndDecodes(KernelIsa isa)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(CausalNeighborhood1D));
        Assert.Null(CausalNeighborhood1D.Pattern.FindStreamingProblem());
        Assert.Equal(9, CausalNeighborhood1D.Pattern.StreamingRingSlots); // (5 - 1) x 2 back, and the token itself
        var stream = Decode.StreamCase.Create(kernel, new Random(AttentionCheck.StableSeed("neighbourhood decode" + isa)), length: 61, heads: (4, 2));
        stream.AssertPrefillHalfThenDecode(new AttentionOptions { Isa = isa }, $"causal 1-D neighbourhood, {isa}");
    }

    [Fact]
    public void OtherNeighbourhoodsAreRefusedWithTheReason()
    {
        Assert.Contains("reaches whole grid rows ahead", Neighborhood2D.Pattern.FindStreamingProblem());
        Assert.Contains("CausalAxes = new[] { true }", new AttentionPattern(false, new PatternComponent[] { new NeighborhoodComponent(new[] { 5 }) }).FindStreamingProblem());
        Assert.Throws<NotSupportedException>(() => new KvCache(Neighborhood2D.Pattern, 1, Neighborhood2D.HeadDim));
    }
}
