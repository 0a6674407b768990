using SparseAttention;

namespace SparseAttention.Benchmarks;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 512)]
public static partial class Window512;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 1024)]
public static partial class Window1024;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
public static partial class Window4096;

[AttentionKernel(HeadDim = 64)]
public static partial class DenseCausal;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 256, Right = 256)]
[GlobalTokens(0, 1)]
public static partial class Longformer;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 256, Right = 256)]
[Dilation(2)]
[GlobalTokens(0, 1)]
public static partial class LongformerDilated;

[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Size = 4096)]
public static partial class Window4096HeadDim32;

[AttentionKernel(HeadDim = 128)]
[SlidingWindow(Size = 4096)]
public static partial class Window4096HeadDim128;

// Decode's kernel on a cache small enough for L2 (256 keys per KV head): its arithmetic speed without memory's.
[AttentionKernel(HeadDim = 128)]
[SlidingWindow(Size = 256)]
public static partial class Window256HeadDim128;

// Issue 13's component cases: BigBird against a bidirectional window with the same keys per row (8 blocks of 64 =
// 512: 3 window blocks, 2 global blocks, 3 random ones), and the fixed pattern against the causal 512 window.
[AttentionKernel(HeadDim = 64, Causal = false)]
[BlockSparse(BlockSize = 64, WindowBlocks = 1, GlobalBlocks = new[] { 0, -1 }, RandomBlocks = 3, Seed = 42)]
public static partial class BigBird;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 256, Right = 255)]
public static partial class BidirectionalWindow512;

/// <summary>Longformer for question answering: the question's 32 tokens global (their rows see every key).</summary>
[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 256, Right = 256)]
[GlobalTokens(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31)]
public static partial class LongformerQuestion32;

[AttentionKernel(HeadDim = 64)]
[FixedFactorized(Block = 128, Summary = 8)]
public static partial class FixedFactorized128;

// Issue 14's modifier cases: Mistral's window with one modifier each, against Window4096 without it.
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[Softcap(50)]
public static partial class Window4096Softcap;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[Alibi]
public static partial class Window4096Alibi;

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[AttentionMask(nameof(Always))]
public static partial class Window4096AlwaysTrueMask
{
    private static bool Always(int query, int key, int head) => true;
}

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[ScoreMod(nameof(Identity))]
public static partial class Window4096IdentityScoreMod
{
    private static float Identity(float score, int query, int key, int head) => score;
}

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 4096)]
[LearnedSinks]
public static partial class Window4096Sinks;

public delegate void ForwardFn(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options);

/// <summary>
/// One standard case of docs/design.md §9 (fp32, Heads = KvHeads = 8, HeadDim = 64).
/// <see cref="OrtWindow"/> is the GroupQueryAttention local_window_size that means the same pattern, or null
/// when ONNX Runtime cannot express it (bidirectional patterns); -1 is ORT's dense causal.
/// </summary>
/// <param name="Prepare">
/// For cases whose inputs are not the fp32 spans (tensor views, Half): builds them from the case's inputs once, outside
/// the timing, and returns the timed call.
/// </param>
/// <param name="PairsPerCall">The visible pairs one timed call computes, where that is not the pattern's over the case's shape (decode cases).</param>
public sealed record StandardCase(string Name, int SeqLen, AttentionPattern Pattern, ForwardFn Forward, int? OrtWindow, int HeadDim = 64, Func<CaseInputs, AttentionShape, AttentionOptions, Action>? Prepare = null, long? PairsPerCall = null)
{
    public const int Heads = 8;

    public AttentionShape Shape => new(Heads, Heads, SeqLen);

    private long? _visiblePairs;

    /// <summary>Counted once: a pattern with a mask counts its pairs one by one.</summary>
    public long VisiblePairs => _visiblePairs ??= PairsPerCall ?? Pattern.VisiblePairs(SeqLen, Heads);

    /// <summary>Effective GFLOP/s: visible pairs x 4 x HeadDim per second (QKᵀ and PV, 2 flops per multiply-add).</summary>
    public double Gflops(double seconds) => VisiblePairs * 4.0 * HeadDim / seconds / 1e9;

    public static readonly StandardCase[] All =
    {
        new("swa-4k-w512", 4096, Window512.Pattern, Window512.Forward, 512),
        new("swa-16k-w512", 16384, Window512.Pattern, Window512.Forward, 512),
        new("swa-16k-w4096", 16384, Window4096.Pattern, Window4096.Forward, 4096),
        new("causal-4k", 4096, DenseCausal.Pattern, DenseCausal.Forward, -1),
        new("causal-16k", 16384, DenseCausal.Pattern, DenseCausal.Forward, -1),
        new("lf-4k", 4096, Longformer.Pattern, Longformer.Forward, null),
        new("lf-dil-4k", 4096, LongformerDilated.Pattern, LongformerDilated.Forward, null),
        new("swa-64k-w512", 65536, Window512.Pattern, Window512.Forward, 512),
    };

    /// <summary>The 4096-window case at the other head sizes tile shapes are chosen for (quick comparison only).</summary>
    public static readonly StandardCase[] HeadDimVariants =
    {
        new("swa-16k-w4096-d32", 16384, Window4096HeadDim32.Pattern, Window4096HeadDim32.Forward, null, 32),
        new("swa-16k-w4096-d128", 16384, Window4096HeadDim128.Pattern, Window4096HeadDim128.Forward, null, 128),
    };

    /// <summary>Patterns built from the later components, each beside the window case it is judged against (issue 13).</summary>
    public static readonly StandardCase[] ComponentCases =
    {
        new("bigbird-16k", 16384, BigBird.Pattern, BigBird.Forward, null),
        new("bidir-16k-w512", 16384, BidirectionalWindow512.Pattern, BidirectionalWindow512.Forward, null),
        new("lf-q32-4k", 4096, LongformerQuestion32.Pattern, LongformerQuestion32.Forward, null),
        new("bidir-4k-w512", 4096, BidirectionalWindow512.Pattern, BidirectionalWindow512.Forward, null),
        new("swa-4k-w1024", 4096, Window1024.Pattern, Window1024.Forward, null),
        new("fixed-16k-l128", 16384, FixedFactorized128.Pattern, FixedFactorized128.Forward, null),
    };

    /// <summary>swa-16k-w4096 with one score modifier each (issue 14's overhead table), against swa-16k-w4096.</summary>
    public static readonly StandardCase[] ModifierCases =
    {
        new("swa-16k-w4096-softcap", 16384, Window4096Softcap.Pattern, Window4096Softcap.Forward, null),
        new("swa-16k-w4096-alibi", 16384, Window4096Alibi.Pattern, Window4096Alibi.Forward, null),
        new("swa-16k-w4096-alibi-flat", 16384, Window4096Alibi.Pattern, WithFlatAlibi, null),
        new("swa-16k-w4096-mask", 16384, Window4096AlwaysTrueMask.Pattern, Window4096AlwaysTrueMask.Forward, null),
        new("swa-16k-w4096-scoremod", 16384, Window4096IdentityScoreMod.Pattern, Window4096IdentityScoreMod.Forward, null),
        new("swa-16k-w4096-sinks", 16384, Window4096Sinks.Pattern, WithSinks, null),
        new("swa-16k-w4096-lse", 16384, Window4096.Pattern, WithLogSumExp, null),
    };

    /// <summary>swa-16k-w4096 through the tensor overloads (issue 15): Half and BFloat16 inputs, and fp32 in the [B, S, H, D] layout as a strided view.</summary>
    public static readonly StandardCase[] TensorCases =
    {
        new("swa-16k-w4096-half", 16384, Window4096.Pattern, Window4096.Forward, null, Prepare: Narrowed<Half>(x => (Half)x)),
        new("swa-16k-w4096-bf16", 16384, Window4096.Pattern, Window4096.Forward, null, Prepare: Narrowed<BFloat16>(x => (BFloat16)x)),
        new("swa-16k-w4096-bshd", 16384, Window4096.Pattern, Window4096.Forward, null, Prepare: Narrowed<float>(x => x, bshd: true)),
        new("swa-4k-w512-bshd", 4096, Window512.Pattern, Window512.Forward, null, Prepare: Narrowed<float>(x => x, bshd: true, window512: true)),
        new("swa-16k-w4096-bshd-half", 16384, Window4096.Pattern, Window4096.Forward, null, Prepare: Narrowed<Half>(x => (Half)x, bshd: true)),

        // Issue 18's neighbourhoods and their windows (`--natten` compares them in one build; these compare two builds).
        new("nat-128-k13-d32", 128 * 128, Neighborhood13HeadDim32.Pattern, OnGrid(Neighborhood13HeadDim32.Forward, 128), null, 32, PairsPerCall: Neighborhood13HeadDim32.Pattern.OnGrid(new GridShape(128, 128), 128 * 128).VisiblePairs(128 * 128, Heads)),
        new("nat-56-k7", 56 * 56, Neighborhood7.Pattern, OnGrid(Neighborhood7.Forward, 56), null, PairsPerCall: Neighborhood7.Pattern.OnGrid(new GridShape(56, 56), 56 * 56).VisiblePairs(56 * 56, Heads)),
        new("win169-16k-d32", 128 * 128, Window169HeadDim32.Pattern, Window169HeadDim32.Forward, null, 32),
        new("win49-3136", 56 * 56, Window49.Pattern, Window49.Forward, null),
    };

    private delegate void GridForwardFn(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, GridShape grid, AttentionOptions? options);

    /// <summary>A neighbourhood kernel's Forward on a side x side grid, as a case's Forward.</summary>
    private static ForwardFn OnGrid(GridForwardFn forward, int side) =>
        (query, key, value, output, shape, options) => forward(query, key, value, output, shape, new GridShape(side, side), options);

    /// <summary>
    /// The case's inputs converted to <typeparamref name="T"/> once (outside the timing), in [H, S, D] or, with
    /// <paramref name="bshd"/>, a [1, S, H, D] buffer passed as a [1, H, S, D] view; the timed call is the tensor overload.
    /// </summary>
    private static Func<CaseInputs, AttentionShape, AttentionOptions, Action> Narrowed<T>(Func<float, T> convert, bool bshd = false, bool window512 = false)
        where T : unmanaged =>
        (inputs, shape, options) =>
        {
            int d = 64, heads = shape.Heads, seqLen = shape.SeqLen;
            T[] Layout(float[] source)
            {
                var result = new T[source.Length];
                for (int h = 0; h < heads; h++)
                    for (int s = 0; s < seqLen; s++)
                        for (int x = 0; x < d; x++)
                            result[bshd ? ((s * heads + h) * d + x) : ((h * seqLen + s) * d + x)] = convert(source[(h * seqLen + s) * d + x]);
                return result;
            }

            T[] query = Layout(inputs.Query), key = Layout(inputs.Key), value = Layout(inputs.Value), output = new T[query.Length];
            nint[] lengths = { 1, heads, seqLen, d };
            // A batch of one: its stride is 0 (System.Numerics.Tensors counts a length-1 dimension's stride into the extent).
            nint[] strides = bshd ? new nint[] { 0, d, (nint)heads * d, 1 } : new nint[] { 0, (nint)seqLen * d, d, 1 };
            return () =>
            {
                var q = new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(query, lengths, strides);
                var k = new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(key, lengths, strides);
                var v = new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(value, lengths, strides);
                var o = new System.Numerics.Tensors.TensorSpan<T>(output, lengths, strides);
                if (window512)
                {
                    Window512.Forward(q, k, v, o, options);
                }
                else
                {
                    Window4096.Forward(q, k, v, o, options);
                }
            };
        };

    /// <summary>Window4096Sinks with a sink logit of 0.5 per head (gpt-oss's learned sinks are of that order).</summary>
    private static void WithSinks(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
    {
        Span<float> sinks = stackalloc float[shape.Heads];
        sinks.Fill(0.5f);
        Window4096Sinks.Forward(query, key, value, sinks, output, shape, options);
    }

    /// <summary>Window4096Alibi with every slope 0: the ALiBi code runs, its bias is zero (separates the code's cost from the data's).</summary>
    private static void WithFlatAlibi(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options) =>
        Window4096Alibi.Forward(query, key, value, output, shape, options with { AlibiSlopes = new float[shape.Heads] });

    private static float[] s_logSumExp = Array.Empty<float>();

    /// <summary>Window4096 writing each row's log-sum-exp too (into a buffer kept between calls).</summary>
    private static void WithLogSumExp(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
    {
        if (s_logSumExp.Length != shape.Heads * shape.SeqLen)
        {
            s_logSumExp = new float[shape.Heads * shape.SeqLen];
        }

        Window4096.Forward(query, key, value, output, s_logSumExp, shape, options);
    }

    public static StandardCase Get(string name) => All.Concat(HeadDimVariants).Concat(ComponentCases).Concat(ModifierCases).Concat(TensorCases).Concat(DecodeCases.All).Single(c => c.Name == name);

    /// <summary>
    /// A timer over case <paramref name="name"/>: each call runs it once on fresh-but-fixed inputs and returns the
    /// milliseconds, with <paramref name="threads"/> threads and the named ISA (Auto or a KernelIsa value). Only core-library types cross this boundary, so the before/after comparison can drive a build of
    /// this program loaded into its own AssemblyLoadContext.
    /// </summary>
    public static Func<double> CreateTimer(string name, int threads, string isa)
    {
        StandardCase standardCase = Get(name);
        var inputs = new CaseInputs(standardCase.Shape, standardCase.HeadDim);
        var options = new AttentionOptions { MaxDegreeOfParallelism = threads, Isa = Enum.Parse<KernelIsa>(isa, ignoreCase: true) };
        Action run = standardCase.Prepare?.Invoke(inputs, standardCase.Shape, options)
            ?? (() => standardCase.Forward(inputs.Query, inputs.Key, inputs.Value, inputs.Output, standardCase.Shape, options));
        return () =>
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            run();
            return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        };
    }

    public override string ToString() => Name;
}

/// <summary>Inputs in [-1.5, 1.5] for one case, in our layout.</summary>
public sealed class CaseInputs
{
    public CaseInputs(AttentionShape shape, int headDim, int seed = 1)
    {
        var random = new Random(seed);
        Query = Fill(shape.Heads * shape.SeqLen * headDim);
        Key = Fill(shape.KvHeads * shape.SeqLen * headDim);
        Value = Fill(shape.KvHeads * shape.SeqLen * headDim);
        Output = new float[Query.Length];

        float[] Fill(int length)
        {
            var values = GC.AllocateUninitializedArray<float>(length);
            for (int i = 0; i < length; i++)
            {
                values[i] = (float)(random.NextDouble() * 3 - 1.5);
            }

            return values;
        }
    }

    public float[] Query { get; }
    public float[] Key { get; }
    public float[] Value { get; }
    public float[] Output { get; }

    /// <summary>Largest |output - reference| over a sample of rows (the reference is O(n) per row).</summary>
    public double MaxErrorOnSampledRows(AttentionPattern pattern, AttentionShape shape, int headDim, float[] output, int rows = 24)
    {
        var random = new Random(99);
        var sampled = new (int Head, int Position)[rows];
        for (int sample = 0; sample < rows; sample++)
        {
            sampled[sample] = (sample % shape.Heads, sample switch { 0 => 0, 1 => shape.SeqLen - 1, _ => random.Next(shape.SeqLen) });
        }

        return ReferenceAttention.MaxAbsoluteError(pattern, Query, Key, Value, output, shape, sampled);
    }
}

// Neighbourhood attention (issue 18) and the 1-D windows with the same keys per row (169 = 13 x 13, 49 = 7 x 7).
[AttentionKernel(HeadDim = 32, Causal = false)]
[Neighborhood(13, 13)]
public static partial class Neighborhood13HeadDim32;

[AttentionKernel(HeadDim = 64, Causal = false)]
[Neighborhood(13, 13)]
public static partial class Neighborhood13;

[AttentionKernel(HeadDim = 64, Causal = false)]
[Neighborhood(7, 7)]
public static partial class Neighborhood7;

[AttentionKernel(HeadDim = 32, Causal = false)]
[SlidingWindow(Left = 84, Right = 84)]
public static partial class Window169HeadDim32;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 84, Right = 84)]
public static partial class Window169;

[AttentionKernel(HeadDim = 64, Causal = false)]
[SlidingWindow(Left = 24, Right = 24)]
public static partial class Window49;
