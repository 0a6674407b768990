using SparseAttention.Runtime.Tests.Gpu;
using SparseAttention.Testing;
using ComputePath = (string Name, System.Func<SparseAttention.Testing.AttentionCheck.Inputs, SparseAttention.AttentionOptions, float[]> Run);

namespace SparseAttention.Runtime.Tests;

// The kernel of issue 12's report: a window, four sinks, one KV head, n = 200, a NaN in key 100.
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 64)]
[GlobalTokens(0, 1, 2, 3)]
public static partial class WindowWithFourSinks;

/// <summary>
/// The NaN/Inf policy (docs/design.md), the same on every path: a NaN or ±inf that reaches a visible score (NaN or
/// ±inf in a query or key, or a q·k that overflows fp32) or a visible value makes that row NaN in every element, and
/// never a row that cannot see it. Every path — each ISA's Forward (tile and row kernels), Prefill and Decode on each
/// ISA, the ILGPU kernel on ILGPU's CPU accelerator — runs the same poisoned inputs and must give the reference's
/// pattern of NaN rows, and the reference's values on every other row. This class runs the CPU paths, in parallel with
/// other tests; <see cref="NonFinitePolicyOnIlgpuCpuTests"/> runs the same checks on the ILGPU kernel, in the accelerator's
/// serial collection, which only the accelerator's calls need.
/// </summary>
public class NonFinitePolicyTests
{
    private static readonly AttentionShape Shape = new(Heads: 4, KvHeads: 2, SeqLen: 80);

    /// <summary>The position whose key, value or query is poisoned: mid-sequence, seen by some rows and not others.</summary>
    private const int Poisoned = 40;

    /// <summary>
    /// One way of poisoning the inputs at a position, and whether the pattern lets the poison reach a row (then some row
    /// must come out NaN, which proves the case tests something).
    /// </summary>
    public sealed record PoisonCase(string Name, Func<AttentionCheck.Inputs, int, AttentionCheck.Inputs> Apply, AttentionOptions Options, Func<AttentionPattern, int, bool> Reaches);

    private static bool SomeRowSeesKey(AttentionPattern pattern, int position) => Enumerable.Range(0, Shape.SeqLen).Any(row => pattern.IsVisible(row, position, 0, Shape.SeqLen));

    private static bool RowSeesSomeKey(AttentionPattern pattern, int position) => Enumerable.Range(0, Shape.SeqLen).Any(key => pattern.IsVisible(position, key, 1, Shape.SeqLen));

    private static bool Never(AttentionPattern pattern, int position) => false;

    private static readonly PoisonCase[] Cases =
    {
        new("NaN in a key", (inputs, position) => WithKey(inputs, position, d => d == 5 ? float.NaN : null), AttentionOptions.Default, SomeRowSeesKey),
        new("+inf in a key", (inputs, position) => WithKey(inputs, position, d => d == 0 ? float.PositiveInfinity : null), AttentionOptions.Default, SomeRowSeesKey),
        new("-inf in a key", (inputs, position) => WithKey(inputs, position, d => d == 3 ? float.NegativeInfinity : null), AttentionOptions.Default, SomeRowSeesKey),
        new("NaN in a value", (inputs, position) => WithValue(inputs, position, d => d == 2 ? float.NaN : null), AttentionOptions.Default, SomeRowSeesKey),
        new("+inf in a value", (inputs, position) => WithValue(inputs, position, d => d == 7 ? float.PositiveInfinity : null), AttentionOptions.Default, SomeRowSeesKey),
        new("-inf in a value", (inputs, position) => WithValue(inputs, position, d => d == 1 ? float.NegativeInfinity : null), AttentionOptions.Default, SomeRowSeesKey),
        new("NaN in a query", (inputs, position) => WithQuery(inputs, position, d => d == 4 ? float.NaN : null), AttentionOptions.Default, RowSeesSomeKey),
        // q·k overflows fp32 towards +inf and -inf: every product is ±1e40.
        new("q·k overflowing to +inf", (inputs, position) => WithQuery(WithKey(inputs, position, _ => 1e20f), position, _ => 1e20f), AttentionOptions.Default, (pattern, position) => pattern.IsVisible(position, position, 1, Shape.SeqLen)),
        new("q·k overflowing to -inf", (inputs, position) => WithQuery(WithKey(inputs, position, _ => -1e20f), position, _ => 1e20f), AttentionOptions.Default, (pattern, position) => pattern.IsVisible(position, position, 1, Shape.SeqLen)),
        new("a key of 1e20 against ordinary queries (huge but finite scores)", (inputs, position) => WithKey(inputs, position, _ => 1e20f), AttentionOptions.Default, Never),
        new("a value of 1e30 (huge but finite)", (inputs, position) => WithValue(inputs, position, _ => 1e30f), AttentionOptions.Default, Never),
        new("Scale = 1e36 (huge but finite scores)", (inputs, _) => inputs, new AttentionOptions { Scale = 1e36f }, Never),
    };

    /// <summary>
    /// The cases the ILGPU kernel runs on ILGPU's CPU accelerator, one per mechanism it has (a raw score that is not
    /// finite, from an input or from an overflow; a value flagged while staged; a huge value that must not poison): every
    /// call there synchronises 128 threads per barrier, so running all twelve would cost minutes of the suite for no
    /// further code path. CUDA runs the same four.
    /// </summary>
    private static readonly HashSet<string> AcceleratorCaseNames = new()
    {
        "NaN in a key", "+inf in a value", "q·k overflowing to +inf", "a value of 1e30 (huge but finite)",
    };

    internal static IEnumerable<PoisonCase> AcceleratorCases => Cases.Where(poison => AcceleratorCaseNames.Contains(poison.Name));

    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void Every_path_gives_the_references_NaN_rows_and_values(string name) => CheckPoisonCases(name, Cases, CpuPaths);

    /// <summary>
    /// Runs each of <paramref name="cases"/> at the poisoned positions through every path <paramref name="paths"/> gives
    /// for the kernel, against the reference.
    /// </summary>
    internal static void CheckPoisonCases(string name, IEnumerable<PoisonCase> cases, Func<KernelUnderTest, IEnumerable<ComputePath>> paths)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        AttentionCheck.Inputs clean = AttentionCheck.RandomInputs(new Random(AttentionCheck.StableSeed(name, salt: 29)), Shape, kernel.HeadDim);

        // Poison a position in mid-sequence and, where the pattern has one, a global token, which every row may see.
        var positions = new List<int> { Poisoned };
        if (kernel.Pattern.GlobalTokens.Count > 0 && kernel.Pattern.GlobalTokens[0] < Shape.SeqLen)
        {
            positions.Add(kernel.Pattern.GlobalTokens[0]);
        }

        foreach (int position in positions)
        {
            foreach (PoisonCase poison in cases)
            {
                AttentionCheck.Inputs inputs = poison.Apply(clean, position);
                float[] expected = AttentionCheck.Reference(kernel, inputs, poison.Options);
                string context = $"{name}, {poison.Name} at {position}";
                int poisonedRows = 0;
                foreach ((string path, var run) in paths(kernel))
                {
                    poisonedRows = AttentionCheck.AssertSameRowsOrNaN(expected, run(inputs, poison.Options), Shape, kernel.HeadDim, $"{context}, {path}");
                }

                // Where the pattern lets the poison reach a row, some row is NaN (the case tests something), and where it cannot,
                // none is; rows that cannot see the poison stay finite.
                Assert.True(poison.Reaches(kernel.Pattern, position) == (poisonedRows > 0), $"{context}: {poisonedRows} rows came out NaN.");
                Assert.True(poisonedRows < Shape.Heads * Shape.SeqLen, $"{context}: every row came out NaN.");
            }
        }
    }

    /// <summary>Issue 12's report: key 100 holds NaN; row 120 sees it through the window and must be NaN on every path.</summary>
    [Fact]
    public void A_NaN_key_inside_a_window_with_sinks_makes_exactly_the_rows_that_see_it_NaN() => CheckNaNKeyInsideAWindowWithSinks(CpuPaths);

    internal static void CheckNaNKeyInsideAWindowWithSinks(Func<KernelUnderTest, IEnumerable<ComputePath>> paths)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(WindowWithFourSinks));
        var shape = new AttentionShape(1, 1, 200);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(12), shape, kernel.HeadDim);
        inputs.Key[100 * kernel.HeadDim] = float.NaN;
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        foreach ((string path, var run) in paths(kernel))
        {
            float[] actual = run(inputs, AttentionOptions.Default);
            AttentionCheck.AssertSameRowsOrNaN(expected, actual, shape, kernel.HeadDim, path);
            for (int row = 0; row < shape.SeqLen; row++)
            {
                bool seesKey100 = kernel.Pattern.IsVisible(row, 100);
                Assert.Equal(seesKey100, float.IsNaN(actual[row * kernel.HeadDim]));
            }
        }

        Assert.True(float.IsNaN(expected[120 * kernel.HeadDim]));
    }

    /// <summary>
    /// Key 0 holds NaN, so row 0 of a causal kernel sees one score, NaN, beside a key tile of masked -inf lanes: the tile
    /// kernels' hardware max may pass the NaN over and find the row's max -inf ("nothing visible yet"). The row must still
    /// come out NaN on every ISA, with the HeadDims that run the Vector512, Vector256 and Vector128 tiles.
    /// </summary>
    [Theory]
    [InlineData(nameof(DenseCausal))]
    [InlineData(nameof(WindowWiderThanTile))]
    [InlineData(nameof(SmallWindowHeadDim8))]
    public void A_NaN_that_is_all_a_row_sees_of_its_first_key_tile_makes_the_row_NaN(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var shape = new AttentionShape(2, 1, 70);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(31), shape, kernel.HeadDim);
        inputs.Key[kernel.HeadDim - 1] = float.NaN;
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        Assert.True(float.IsNaN(expected[0]));
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            float[] actual = AttentionCheck.Run(kernel, inputs, AttentionOptions.Default with { Isa = isa });
            AttentionCheck.AssertSameRowsOrNaN(expected, actual, shape, kernel.HeadDim, $"{name}, {isa}");
            Assert.True(float.IsNaN(actual[0]), $"{name}, {isa}: row 0 sees only the NaN key and came out {actual[0]}.");
        }
    }

    /// <summary>A key that is NaN in a global-tokens-only kernel: the CPU paths used to drop it and ILGPU to zero every row.</summary>
    [Fact]
    public void A_NaN_global_key_makes_every_row_that_sees_it_NaN() => CheckNaNGlobalKey(CpuPaths);

    internal static void CheckNaNGlobalKey(Func<KernelUnderTest, IEnumerable<ComputePath>> paths)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(GlobalsOnly));
        var shape = new AttentionShape(2, 1, 50);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(4), shape, kernel.HeadDim);
        inputs.Key[1 * kernel.HeadDim + 3] = float.NaN;
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        foreach ((string path, var run) in paths(kernel))
        {
            float[] actual = run(inputs, AttentionOptions.Default);
            Assert.Equal(2 * (shape.SeqLen - 1), AttentionCheck.AssertSameRowsOrNaN(expected, actual, shape, kernel.HeadDim, path));
            Assert.All(actual.Take(kernel.HeadDim), element => Assert.Equal(0f, element)); // row 0 sees no key at all
        }
    }

    /// <summary>Every way the CPU computes a row, each returning the whole [Heads, SeqLen, HeadDim] output.</summary>
    private static IEnumerable<ComputePath> CpuPaths(KernelUnderTest kernel)
    {
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            yield return ($"Forward {isa}", (inputs, options) => AttentionCheck.Run(kernel, inputs, options with { Isa = isa }));
        }

        if (!kernel.Pattern.SupportsStreaming)
        {
            yield break;
        }

        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            yield return ($"Prefill {isa}", (inputs, options) => Prefill(kernel, inputs, options with { Isa = isa }));
            yield return ($"Decode {isa}", (inputs, options) => DecodeTokenByToken(kernel, inputs, options with { Isa = isa }));
        }
    }

    private static float[] Prefill(KernelUnderTest kernel, AttentionCheck.Inputs inputs, AttentionOptions options)
    {
        KvCache cache = kernel.Streaming!.CreateCache(inputs.Shape.KvHeads);
        var output = new float[inputs.Query.Length];
        kernel.Streaming.Prefill(inputs.Query, inputs.Key, inputs.Value, output, inputs.Shape, cache, options);
        return output;
    }

    private static float[] DecodeTokenByToken(KernelUnderTest kernel, AttentionCheck.Inputs inputs, AttentionOptions options)
    {
        var stream = new Decode.StreamCase(kernel, inputs, Expected: Array.Empty<float>(), Window: 1);
        KvCache cache = kernel.Streaming!.CreateCache(inputs.Shape.KvHeads);
        var output = new float[inputs.Query.Length];
        int d = kernel.HeadDim, n = inputs.Shape.SeqLen;
        for (int position = 0; position < n; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            float[] row = stream.DecodeNewest(cache, options);
            for (int head = 0; head < inputs.Shape.Heads; head++)
            {
                row.AsSpan(head * d, d).CopyTo(output.AsSpan((head * n + position) * d));
            }
        }

        return output;
    }

    /// <summary>Inputs with some elements of one position's key (KV head 0) replaced: <paramref name="element"/> gives the new value, or null to keep it.</summary>
    private static AttentionCheck.Inputs WithKey(AttentionCheck.Inputs inputs, int position, Func<int, float?> element) =>
        inputs with { Key = Replace(inputs.Key, inputs.Shape.SeqLen, inputs.HeadDim, 0, position, element) };

    private static AttentionCheck.Inputs WithValue(AttentionCheck.Inputs inputs, int position, Func<int, float?> element) =>
        inputs with { Value = Replace(inputs.Value, inputs.Shape.SeqLen, inputs.HeadDim, 0, position, element) };

    /// <summary>Query head 1 reads KV head 0 (two query heads per KV head), so its row meets the poisoned keys of KV head 0.</summary>
    private static AttentionCheck.Inputs WithQuery(AttentionCheck.Inputs inputs, int position, Func<int, float?> element) =>
        inputs with { Query = Replace(inputs.Query, inputs.Shape.SeqLen, inputs.HeadDim, 1, position, element) };

    private static float[] Replace(float[] tensor, int seqLen, int headDim, int head, int position, Func<int, float?> element)
    {
        float[] copy = (float[])tensor.Clone();
        for (int d = 0; d < headDim; d++)
        {
            if (element(d) is float replacement)
            {
                copy[(head * seqLen + position) * headDim + d] = replacement;
            }
        }

        return copy;
    }

}

/// <summary>
/// <see cref="NonFinitePolicyTests"/>' checks on the ILGPU kernel on ILGPU's CPU accelerator: every declared kernel with the
/// poisons of <see cref="NonFinitePolicyTests.AcceleratorCases"/>, and the reported cases.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class NonFinitePolicyOnIlgpuCpuTests(IlgpuCpuDevice fixture)
{
    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void The_ilgpu_kernel_gives_the_references_NaN_rows_and_values(string name) =>
        NonFinitePolicyTests.CheckPoisonCases(name, NonFinitePolicyTests.AcceleratorCases, AcceleratorPath);

    [Fact]
    public void A_NaN_key_inside_a_window_with_sinks_makes_exactly_the_rows_that_see_it_NaN() =>
        NonFinitePolicyTests.CheckNaNKeyInsideAWindowWithSinks(AcceleratorPath);

    [Fact]
    public void A_NaN_global_key_makes_every_row_that_sees_it_NaN() => NonFinitePolicyTests.CheckNaNGlobalKey(AcceleratorPath);

    private IEnumerable<ComputePath> AcceleratorPath(KernelUnderTest kernel)
    {
        yield return ("ILGPU (CPU accelerator)", (inputs, options) => AttentionCheck.RunOnAccelerator(kernel, inputs, fixture.Device.Accelerator!, options));
    }
}
