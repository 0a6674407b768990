using ILGPU.Runtime;
using SparseAttention.Runtime.Tests.Decode;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>Learned sinks ([LearnedSinks]) and the log-sum-exp overloads, on every ISA, against the reference.</summary>
[Collection(Gpu.IlgpuCpuCollection.Name)]
public class SinksAndLogSumExpTests(Gpu.IlgpuCpuDevice fixture)
{
    private delegate void SinkForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, ReadOnlySpan<float> sinkLogits, Span<float> output, Span<float> logSumExp, AttentionShape shape, AttentionOptions options);

    private static readonly (string Name, int HeadDim, AttentionPattern Pattern, ScoreModifiers Scores, SinkForward Forward)[] SinkKernels =
    {
        (nameof(WindowWithLearnedSinks), WindowWithLearnedSinks.HeadDim, WindowWithLearnedSinks.Pattern, WindowWithLearnedSinks.Scores, WindowWithLearnedSinks.Forward),
        (nameof(GlobalsWithLearnedSinks), GlobalsWithLearnedSinks.HeadDim, GlobalsWithLearnedSinks.Pattern, GlobalsWithLearnedSinks.Scores, GlobalsWithLearnedSinks.Forward),
    };

    public static TheoryData<string, KernelIsa> SinkKernelsByIsa()
    {
        var data = new TheoryData<string, KernelIsa>();
        foreach (var kernel in SinkKernels)
        {
            foreach (KernelIsa isa in AttentionCheck.AllIsas)
            {
                data.Add(kernel.Name, isa);
            }
        }

        return data;
    }

    /// <summary>Random sink logits around the scores' range, with one head's sink at -inf (no sink) and one far above.</summary>
    private static float[] SinkLogits(Random random, int heads)
    {
        float[] sinks = AttentionCheck.RandomArray(random, heads, 3f);
        sinks[0] = float.NegativeInfinity;
        if (heads > 2)
        {
            sinks[2] = 60f;
        }

        return sinks;
    }

    [Theory]
    [MemberData(nameof(SinkKernelsByIsa))]
    public void SinksJoinTheDenominatorAndTheLogSumExpIncludesThem(string name, KernelIsa isa)
    {
        var kernel = SinkKernels.Single(candidate => candidate.Name == name);
        int headDim = kernel.HeadDim;
        var random = new Random(name.Length + (int)isa);
        foreach (int seqLen in new[] { 1, 45, 130 })
        {
            var shape = new AttentionShape(6, 2, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, headDim);
            float[] sinks = SinkLogits(random, shape.Heads);
            var options = new AttentionOptions { Isa = isa };
            var expected = new float[inputs.Query.Length];
            var expectedLse = new float[shape.Heads * seqLen];
            ReferenceAttention.Forward(kernel.Pattern, kernel.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, expectedLse, shape, options);
            var actual = new float[expected.Length];
            var actualLse = new float[expectedLse.Length];
            kernel.Forward(inputs.Query, inputs.Key, inputs.Value, sinks, actual, actualLse, shape, options);
            AttentionCheck.AssertClose(expected, actual, shape, headDim, $"{name} {isa} n={seqLen}");
            AssertLogSumExpClose(expectedLse, actualLse, $"{name} {isa} n={seqLen}");

            // The sink bites: without it (every logit -inf) the output differs.
            var plain = new float[expected.Length];
            float[] none = Enumerable.Repeat(float.NegativeInfinity, shape.Heads).ToArray();
            kernel.Forward(inputs.Query, inputs.Key, inputs.Value, none, plain, new float[expectedLse.Length], shape, options);
            Assert.True(seqLen == 1 || plain.Zip(actual).Max(pair => Math.Abs(pair.First - pair.Second)) > 1e-3);
        }
    }

    [Theory]
    [InlineData(nameof(DenseCausal))]
    [InlineData(nameof(LongformerLike))]
    [InlineData(nameof(BigBirdCausal))]
    [InlineData(nameof(SparseTransformerFixed))]
    [InlineData(nameof(SparseTransformerStrided))]
    [InlineData(nameof(GlobalsOnly))]
    public void LogSumExpMatchesTheReferenceOnEveryIsa(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(name.Length);
        var shape = new AttentionShape(4, 2, 150);
        AssertOutputsAndLogSumExpsOnEveryIsa(kernel, AttentionCheck.RandomInputs(random, shape, kernel.HeadDim), name);
    }

    /// <summary>The kernel's log-sum-exp overload against the reference, outputs and log-sum-exps, on every ISA.</summary>
    private static void AssertOutputsAndLogSumExpsOnEveryIsa(KernelUnderTest kernel, AttentionCheck.Inputs inputs, string context)
    {
        Type type = typeof(DenseCausal).Assembly.GetType("SparseAttention.Runtime.Tests." + kernel.Name, throwOnError: true)!;
        var forward = (LogSumExpForward)Delegate.CreateDelegate(typeof(LogSumExpForward), type.GetMethods().Single(method => method.Name == "Forward" && method.GetParameters()[0].ParameterType == typeof(ReadOnlySpan<float>) && method.GetParameters().Any(parameter => parameter.Name == "logSumExp") && method.GetParameters().Any(parameter => parameter.ParameterType == typeof(AttentionShape))));
        AttentionShape shape = inputs.Shape;
        var expected = new float[inputs.Query.Length];
        var expectedLse = new float[shape.Heads * shape.SeqLen];
        ReferenceAttention.Forward(kernel.Pattern, inputs.Query, inputs.Key, inputs.Value, expected, expectedLse, shape);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var actual = new float[expected.Length];
            var actualLse = new float[expectedLse.Length];
            forward(inputs.Query, inputs.Key, inputs.Value, actual, actualLse, shape, new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{context} {isa}");
            AssertLogSumExpClose(expectedLse, actualLse, $"{context} {isa}");
        }
    }

    [Fact]
    public void TheIlgpuKernelWritesTheLogSumExpsToo()
    {
        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        ILGPU.Runtime.Accelerator accelerator = device.Accelerator!;
        var shape = new AttentionShape(4, 2, 90);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(44), shape, WindowWithLearnedSinks.HeadDim);
        float[] sinks = { 0.5f, float.NegativeInfinity, 3f, -1f };
        var expected = new float[inputs.Query.Length];
        var expectedLse = new float[shape.Heads * shape.SeqLen];
        ReferenceAttention.Forward(WindowWithLearnedSinks.Pattern, WindowWithLearnedSinks.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, expectedLse, shape);
        using var query = accelerator.Allocate1D(inputs.Query);
        using var key = accelerator.Allocate1D(inputs.Key);
        using var value = accelerator.Allocate1D(inputs.Value);
        using var output = accelerator.Allocate1D<float>(expected.Length);
        using var lse = accelerator.Allocate1D<float>(expectedLse.Length);
        WindowWithLearnedSinks.Forward(accelerator, query.View, key.View, value.View, sinks, output.View, lse.View, shape, AttentionOptions.Default);
        accelerator.Synchronize();
        AttentionCheck.AssertClose(expected, output.GetAsArray1D(), shape, WindowWithLearnedSinks.HeadDim, "ILGPU with sinks");
        AssertLogSumExpClose(expectedLse, lse.GetAsArray1D(), "ILGPU with sinks");

        ArgumentException wrong = Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Forward(accelerator, query.View, key.View, value.View, sinks, output.View, lse.View.SubView(1, expectedLse.Length - 1), shape, AttentionOptions.Default));
        Assert.Equal("logSumExp", wrong.ParamName);
    }

    [Fact]
    public void TheIlgpuKernelMergesGlobalRowsSplitIntoPartsWithTheirSinksAndPoison()
    {
        // At n = 300 the two global rows see 300 keys, the others 9: the tile table gives the global rows parts of their own,
        // written to partial slots and merged by GpuPartialMerge.
        var shape = new AttentionShape(2, 1, 300);
        int[] table = TileTable(shape);
        Assert.True(table[1] == 1 && table[table[3] + 3] > 1, "the global rows are split into several parts");
        ILGPU.Runtime.Accelerator accelerator = fixture.Device.Accelerator!;
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(45), shape, WindowWithGlobalsAndSinks.HeadDim);
        foreach (bool poisoned in new[] { false, true })
        {
            if (poisoned)
            {
                // Key 250 is seen by rows 246-254 and the global rows: a NaN there must poison exactly those, through the merge.
                inputs.Value[250 * WindowWithGlobalsAndSinks.HeadDim + 3] = float.NaN;
            }

            foreach (float[] sinks in new[] { new[] { 0.5f, 60f }, new[] { float.NegativeInfinity, -2f } })
            {
                var expected = new float[inputs.Query.Length];
                var expectedLse = new float[shape.Heads * shape.SeqLen];
                ReferenceAttention.Forward(WindowWithGlobalsAndSinks.Pattern, WindowWithGlobalsAndSinks.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, expectedLse, shape);
                using var query = accelerator.Allocate1D(inputs.Query);
                using var key = accelerator.Allocate1D(inputs.Key);
                using var value = accelerator.Allocate1D(inputs.Value);
                using var output = accelerator.Allocate1D<float>(expected.Length);
                using var lse = accelerator.Allocate1D<float>(expectedLse.Length);
                WindowWithGlobalsAndSinks.Forward(accelerator, query.View, key.View, value.View, sinks, output.View, lse.View, shape, AttentionOptions.Default);
                accelerator.Synchronize();
                string context = $"split global rows, sinks {sinks[0]}/{sinks[1]}{(poisoned ? ", NaN value at key 250" : "")}";
                int nanRows = AttentionCheck.AssertSameRowsOrNaN(expected, output.GetAsArray1D(), shape, WindowWithGlobalsAndSinks.HeadDim, context);
                Assert.Equal(poisoned ? 2 * (9 + 2) : 0, nanRows);
                AssertLogSumExpClose(expectedLse, lse.GetAsArray1D(), context);
            }
        }

        static int[] TileTable(AttentionShape shape) => SparseAttention.Gpu.GpuTileTable.Build(WindowWithGlobalsAndSinks.Pattern, shape.SeqLen, shape.Heads, 64, 32);
    }

    private delegate void LogSumExpForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, Span<float> logSumExp, AttentionShape shape, AttentionOptions options);

    /// <summary>
    /// The tile kernels keep a row's max until a score rises more than TileSoftmax.RescaleSlack (2^8) above it. Scores
    /// that climb along the keys, slowly (the max stays put for several tiles while probabilities grow up to 2^8), fast
    /// (it moves every tile) or that fall (it never moves after the first tile) must give the reference's outputs and
    /// log-sum-exps on every ISA. The fast climbs rise more than 128 (base 2) within a row, so a max that did not move
    /// would overflow the probabilities.
    /// </summary>
    [Theory]
    [InlineData(nameof(DenseCausal), 0.02f)]
    [InlineData(nameof(DenseCausal), 0.4f)]
    [InlineData(nameof(DenseCausal), -0.3f)]
    [InlineData(nameof(DenseBidirectional), 0.05f)]
    [InlineData(nameof(DenseBidirectional), -0.05f)]
    [InlineData(nameof(DenseBidirectional), 0.5f)]
    [InlineData(nameof(WindowWiderThanTile), 0.03f)]
    [InlineData(nameof(WindowWiderThanTile), 1.5f)]
    public void ScoresThatClimbAlongTheKeysMatchTheReference(string name, float climbPerKey)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        int d = kernel.HeadDim;
        var shape = new AttentionShape(2, 1, 300);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(name.Length), shape, d);
        // Score(q, k) gains climbPerKey (natural units) per key: the last dimension of key k holds k x climbPerKey x sqrt(d)
        // and every query's last dimension is 1 (the default scale is 1 / sqrt(d)).
        for (int k = 0; k < shape.SeqLen; k++)
        {
            inputs.Key[(k + 1) * d - 1] = k * climbPerKey * MathF.Sqrt(d);
        }

        for (int row = 0; row < shape.Heads * shape.SeqLen; row++)
        {
            inputs.Query[(row + 1) * d - 1] = 1f;
        }

        AssertOutputsAndLogSumExpsOnEveryIsa(kernel, inputs, $"{name} climbing {climbPerKey} per key,");
    }

    [Fact]
    public void LogSumExpOfARowThatSeesNothingIsMinusInfinityAndOfANaNRowIsNaN()
    {
        // GlobalsOnly: causal, globals 1 and 2; query 0 sees no key. A NaN key poisons the rows that see it.
        var shape = new AttentionShape(1, 1, 40);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(2), shape, GlobalsOnly.HeadDim);
        var output = new float[inputs.Query.Length];
        var lse = new float[40];
        GlobalsOnly.Forward(inputs.Query, inputs.Key, inputs.Value, output, lse, shape, AttentionOptions.Default);
        Assert.Equal(float.NegativeInfinity, lse[0]);
        Assert.All(lse.Skip(1), value => Assert.True(float.IsFinite(value)));
        Assert.All(output.Take(GlobalsOnly.HeadDim), element => Assert.Equal(0f, element));

        // Every causal row sees key 0: a NaN there makes every row, and its log-sum-exp, NaN.
        AttentionCheck.Inputs dense = AttentionCheck.RandomInputs(new Random(3), shape, DenseCausal.HeadDim);
        dense.Key[0] = float.NaN;
        DenseCausal.Forward(dense.Query, dense.Key, dense.Value, new float[dense.Query.Length], lse, shape, AttentionOptions.Default);
        Assert.All(lse, value => Assert.True(float.IsNaN(value)));
    }

    [Fact]
    public void DecodeAndPrefillTakeTheSinks()
    {
        var random = new Random(31);
        var shape = new AttentionShape(4, 2, 90);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, WindowWithLearnedSinks.HeadDim);
        float[] sinks = SinkLogits(random, shape.Heads);
        var expected = new float[inputs.Query.Length];
        ReferenceAttention.Forward(WindowWithLearnedSinks.Pattern, WindowWithLearnedSinks.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, Span<float>.Empty, shape);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            KvCache cache = WindowWithLearnedSinks.CreateCache(shape.KvHeads);
            int d = WindowWithLearnedSinks.HeadDim, prompt = 50;
            var promptShape = shape with { SeqLen = prompt };
            float[] Rows(float[] tensor, int heads, int first, int count) =>
                Enumerable.Range(0, heads).SelectMany(head => tensor.AsSpan((head * shape.SeqLen + first) * d, count * d).ToArray()).ToArray();
            var promptOutput = new float[shape.Heads * prompt * d];
            WindowWithLearnedSinks.Prefill(Rows(inputs.Query, shape.Heads, 0, prompt), Rows(inputs.Key, shape.KvHeads, 0, prompt), Rows(inputs.Value, shape.KvHeads, 0, prompt), sinks, promptOutput, promptShape, cache, options);
            AttentionCheck.AssertClose(Rows(expected, shape.Heads, 0, prompt), promptOutput, promptShape, d, $"{isa} prefill");
            for (int position = prompt; position < shape.SeqLen; position++)
            {
                cache.Append(TokenMajor(inputs.Key, shape.KvHeads, position), TokenMajor(inputs.Value, shape.KvHeads, position));
                var row = new float[shape.Heads * d];
                WindowWithLearnedSinks.Decode(TokenMajor(inputs.Query, shape.Heads, position), sinks, cache, row, options);
                AttentionCheck.AssertClose(TokenMajor(expected, shape.Heads, position), row, shape with { SeqLen = 1 }, d, $"{isa} decode at {position}");
            }
        }

        float[] TokenMajor(float[] tensor, int heads, int position) =>
            Enumerable.Range(0, heads).SelectMany(head => tensor.AsSpan((head * shape.SeqLen + position) * WindowWithLearnedSinks.HeadDim, WindowWithLearnedSinks.HeadDim).ToArray()).ToArray();
    }

    [Fact]
    public void WrongSinksAndLogSumExpArgumentsSayWhatIsExpected()
    {
        var shape = new AttentionShape(4, 2, 10);
        int d = WindowWithLearnedSinks.HeadDim;
        var query = new float[4 * 10 * d];
        var kv = new float[2 * 10 * d];
        var output = new float[query.Length];
        ArgumentException length = Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Forward(query, kv, kv, new float[3], output, shape));
        Assert.Equal("sinkLogits", length.ParamName);
        Assert.Contains("Heads = 4 floats; it holds 3", length.Message, StringComparison.Ordinal);
        ArgumentException nan = Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Forward(query, kv, kv, new[] { 0f, float.NaN, 0f, 0f }, output, shape));
        Assert.Contains("sinkLogits[1] is NaN", nan.Message, StringComparison.Ordinal);

        ArgumentException lse = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(new float[4 * 10 * 64], new float[2 * 10 * 64], new float[2 * 10 * 64], new float[4 * 10 * 64], new float[39], shape, AttentionOptions.Default));
        Assert.Equal("logSumExp", lse.ParamName);
        Assert.Contains("[Heads, SeqLen] = 4 x 10 = 40 floats; it holds 39", lse.Message, StringComparison.Ordinal);
        float[] shared = new float[4 * 10 * 64];
        ArgumentException overlap = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(new float[shared.Length], new float[2 * 10 * 64], new float[2 * 10 * 64], shared, shared.AsSpan(0, 40), shape, AttentionOptions.Default));
        Assert.Equal("logSumExp", overlap.ParamName);
    }

    /// <summary>Log-sum-exps agree to 1e-4 relative (they grow with the scores), and -inf or NaN exactly where the reference's are.</summary>
    private static void AssertLogSumExpClose(float[] expected, float[] actual, string context)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(expected[i]))
            {
                Assert.True(expected[i].Equals(actual[i]), $"{context}: row {i} log-sum-exp {actual[i]}, expected {expected[i]}");
                continue;
            }

            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * Math.Max(1, Math.Abs(expected[i])), $"{context}: row {i} log-sum-exp {actual[i]}, expected {expected[i]}");
        }
    }
}
