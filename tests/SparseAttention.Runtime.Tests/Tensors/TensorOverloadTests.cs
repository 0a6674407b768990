using System.Numerics.Tensors;
using SparseAttention.Tensors;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Tensors;

/// <summary>
/// The TensorSpan / Tensor overloads (any strides, float / Half / BFloat16, batches) and the packed variable-length
/// overload (issue 15), against the fp32 reference on the widened inputs. Tolerances: fp32 outputs as everywhere
/// (<see cref="AttentionCheck.Tolerance"/>); Half and BFloat16 outputs are compared with the reference rounded to the type,
/// within one unit in the last place of the type (2^-10 and 2^-7 relative, or absolute below 1).
/// </summary>
public class TensorOverloadTests
{
    private const int Heads = 4, KvHeads = 2;

    /// <summary>The reference for a batch laid out [B, H, S, D] (keys [B, KvH, S, D]).</summary>
    private static float[] Reference(AttentionPattern pattern, float[] query, float[] key, float[] value, AttentionShape shape)
    {
        var expected = new float[query.Length];
        ReferenceAttention.Forward(pattern, query, key, value, expected, shape);
        return expected;
    }

    /// <summary>[B, H, S, D] data permuted into a [B, S, H, D] buffer (the projections' layout).</summary>
    private static T[] ToBshd<T>(float[] bhsd, int batch, int heads, int seqLen, int d, Func<float, T> convert)
    {
        var bshd = new T[bhsd.Length];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int s = 0; s < seqLen; s++)
                    for (int x = 0; x < d; x++)
                        bshd[(((b * seqLen + s) * heads) + h) * d + x] = convert(bhsd[(((b * heads + h) * seqLen) + s) * d + x]);
        return bshd;
    }

    /// <summary>A [B, H, S, D] view of a [B, S, H, D] buffer: no copy.</summary>
    private static TensorSpan<T> BshdView<T>(T[] buffer, int batch, int heads, int seqLen, int d) =>
        new(buffer, new nint[] { batch, heads, seqLen, d }, new nint[] { (nint)seqLen * heads * d, d, (nint)heads * d, 1 });

    /// <summary>A rank-3 [H, S, D] view of an [S, H, D] buffer.</summary>
    private static TensorSpan<T> SeqMajor<T>(T[] buffer, int heads, int seqLen, int d) =>
        new(buffer, new nint[] { heads, seqLen, d }, new nint[] { d, (nint)heads * d, 1 });

    private static float[] FromBshd<T>(T[] bshd, int batch, int heads, int seqLen, int d, Func<T, float> widen)
    {
        var bhsd = new float[bshd.Length];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int s = 0; s < seqLen; s++)
                    for (int x = 0; x < d; x++)
                        bhsd[(((b * heads + h) * seqLen) + s) * d + x] = widen(bshd[(((b * seqLen + s) * heads) + h) * d + x]);
        return bhsd;
    }

    /// <summary>Random inputs already representable in <typeparamref name="T"/> (so the reference sees what the kernel reads).</summary>
    private static (float[] Query, float[] Key, float[] Value) Inputs(Random random, AttentionShape shape, int d, Func<float, float> round)
    {
        float[] Make(int heads) => AttentionCheck.RandomArray(random, shape.Batch * heads * shape.SeqLen * d, 1.5f).Select(round).ToArray();
        return (Make(shape.Heads), Make(shape.KvHeads), Make(shape.KvHeads));
    }

    [Fact]
    public void DenseFloatTensorsGoStraightThroughAndMatchTheReference()
    {
        var shape = new AttentionShape(Heads, KvHeads, 70) { Batch = 3 };
        int d = LongformerLike.HeadDim;
        (float[] query, float[] key, float[] value) = Inputs(new Random(1), shape, d, x => x);
        var output = new float[query.Length];
        LongformerLike.Forward<float>(
            new ReadOnlyTensorSpan<float>(query, new nint[] { 3, Heads, 70, d }), new ReadOnlyTensorSpan<float>(key, new nint[] { 3, KvHeads, 70, d }),
            new ReadOnlyTensorSpan<float>(value, new nint[] { 3, KvHeads, 70, d }), new TensorSpan<float>(output, new nint[] { 3, Heads, 70, d }));
        AttentionCheck.AssertClose(Reference(LongformerLike.Pattern, query, key, value, shape), output, shape with { Heads = 3 * Heads }, d, "dense float tensors, batch 3");

        // Tensor<T> too, rank 3.
        var one = new AttentionShape(Heads, KvHeads, 70);
        Tensor<float> q = Tensor.Create(query.AsSpan(0, Heads * 70 * d).ToArray(), new nint[] { Heads, 70, d });
        Tensor<float> k = Tensor.Create(key.AsSpan(0, KvHeads * 70 * d).ToArray(), new nint[] { KvHeads, 70, d });
        Tensor<float> v = Tensor.Create(value.AsSpan(0, KvHeads * 70 * d).ToArray(), new nint[] { KvHeads, 70, d });
        Tensor<float> o = Tensor.Create(new float[Heads * 70 * d], new nint[] { Heads, 70, d });
        LongformerLike.Forward(q, k, v, o);
        AttentionCheck.AssertClose(Reference(LongformerLike.Pattern, q.ToArray(), k.ToArray(), v.ToArray(), one), o.ToArray(), one, d, "Tensor<float>, rank 3");
    }

    [Theory]
    [InlineData(nameof(LongformerLike))]
    [InlineData(nameof(CausalWindowWithSinks))]
    public void AStridedBshdViewInEveryElementTypeMatchesTheReference(string name)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(TensorOverloadTests).Assembly.GetType("SparseAttention.Runtime.Tests." + name, throwOnError: true)!);
        int d = kernel.HeadDim, batch = 2, seqLen = 45;
        var shape = new AttentionShape(Heads, KvHeads, seqLen) { Batch = batch };
        Check<float>(x => x, x => x, x => x, 0);
        Check<Half>(x => (Half)x, x => (float)x, x => (float)(Half)x, 1.0 / 1024);
        Check<BFloat16>(x => (BFloat16)x, x => (float)x, x => (float)(BFloat16)x, 1.0 / 128);

        void Check<T>(Func<float, T> narrow, Func<T, float> widen, Func<float, float> round, double ulp)
            where T : unmanaged
        {
            (float[] query, float[] key, float[] value) = Inputs(new Random(d + typeof(T).Name.Length), shape, d, round);
            float[] expected = Reference(kernel.Pattern, query, key, value, shape);
            T[] q = ToBshd(query, batch, Heads, seqLen, d, narrow), k = ToBshd(key, batch, KvHeads, seqLen, d, narrow), v = ToBshd(value, batch, KvHeads, seqLen, d, narrow);
            var o = new T[q.Length];
            Run(kernel, BshdView(q, batch, Heads, seqLen, d), BshdView(k, batch, KvHeads, seqLen, d), BshdView(v, batch, KvHeads, seqLen, d), BshdView(o, batch, Heads, seqLen, d));
            float[] actual = FromBshd(o, batch, Heads, seqLen, d, widen);
            if (ulp == 0)
            {
                AttentionCheck.AssertClose(expected, actual, shape with { Heads = batch * Heads }, d, $"{name} BSHD float");
                return;
            }

            for (int i = 0; i < expected.Length; i++)
            {
                float want = round(expected[i]);
                Assert.True(Math.Abs(want - actual[i]) <= ulp * Math.Max(1, Math.Abs(want)), $"{name} BSHD {typeof(T).Name}: element {i} is {actual[i]}, the reference rounded to the type is {want}");
            }
        }
    }

    /// <summary>Runs the kernel's tensor overload (with zero sink logits for a declaration with learned sinks... none here).</summary>
    private static void Run<T>(KernelUnderTest kernel, ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, TensorSpan<T> output)
        where T : unmanaged
    {
        if (kernel.Name == nameof(LongformerLike))
        {
            LongformerLike.Forward(query, key, value, output);
        }
        else
        {
            CausalWindowWithSinks.Forward(query, key, value, output);
        }
    }

    /// <summary>
    /// fp32 views are read in place through their strides (queries and values by row stride, keys while packing, output
    /// row by row; key and value rows copied first only where the row kernel reads them), so every kernel shape runs here:
    /// band-only patterns, dilation, strides, global tokens through the row tails, block-sparse gathers, the scalar rows.
    /// Two layouts per ISA: [B, S, H, D] projections, and one fused [B, S, H + 2 KvH, D] QKV buffer whose three views
    /// interleave (the output its own [B, S, H, D]).
    /// </summary>
    [Theory]
    [MemberData(nameof(DeclaredKernels.Names), MemberType = typeof(DeclaredKernels))]
    public void StridedFloatViewsAreReadInPlaceAndMatchTheReferenceOnEveryIsa(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.All.Single(candidate => candidate.Name == name);
        ForwardOnTensors forward = kernel.OnTensors ?? throw new InvalidOperationException($"{name} has no TensorSpan overload.");
        int d = kernel.HeadDim, batch = 2, seqLen = 77, width = Heads + 2 * KvHeads;
        var shape = new AttentionShape(Heads, KvHeads, seqLen) { Batch = batch };
        (float[] query, float[] key, float[] value) = Inputs(new Random(name.Length * 31 + d), shape, d, x => x);
        var expected = new float[query.Length];
        ReferenceAttention.Forward(kernel.Pattern, kernel.Scores ?? ScoreModifiers.None, query, key, value, expected, shape);

        float[] q = ToBshd(query, batch, Heads, seqLen, d, x => x), k = ToBshd(key, batch, KvHeads, seqLen, d, x => x), v = ToBshd(value, batch, KvHeads, seqLen, d, x => x);
        var fused = new float[batch * seqLen * width * d];
        for (int b = 0; b < batch; b++)
            for (int s = 0; s < seqLen; s++)
            {
                int row = (b * seqLen + s) * width * d;
                q.AsSpan((b * seqLen + s) * Heads * d, Heads * d).CopyTo(fused.AsSpan(row));
                k.AsSpan((b * seqLen + s) * KvHeads * d, KvHeads * d).CopyTo(fused.AsSpan(row + Heads * d));
                v.AsSpan((b * seqLen + s) * KvHeads * d, KvHeads * d).CopyTo(fused.AsSpan(row + (Heads + KvHeads) * d));
            }

        nint[] FusedStrides() => new nint[] { (nint)seqLen * width * d, d, (nint)width * d, 1 };
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            var o = new float[q.Length];
            forward(BshdView(q, batch, Heads, seqLen, d), BshdView(k, batch, KvHeads, seqLen, d), BshdView(v, batch, KvHeads, seqLen, d), BshdView(o, batch, Heads, seqLen, d), options);
            AttentionCheck.AssertSameRowsOrNaN(expected, FromBshd(o, batch, Heads, seqLen, d, x => x), shape with { Batch = 1, Heads = batch * Heads }, d, $"{name} [B, S, H, D] views, {isa}");

            o = new float[q.Length];
            forward(
                new ReadOnlyTensorSpan<float>(fused, new nint[] { batch, Heads, seqLen, d }, FusedStrides()),
                new ReadOnlyTensorSpan<float>(fused.AsSpan(Heads * d), new nint[] { batch, KvHeads, seqLen, d }, FusedStrides()),
                new ReadOnlyTensorSpan<float>(fused.AsSpan((Heads + KvHeads) * d), new nint[] { batch, KvHeads, seqLen, d }, FusedStrides()),
                BshdView(o, batch, Heads, seqLen, d),
                options);
            AttentionCheck.AssertSameRowsOrNaN(expected, FromBshd(o, batch, Heads, seqLen, d, x => x), shape with { Batch = 1, Heads = batch * Heads }, d, $"{name} fused QKV views, {isa}");
        }
    }

    [Fact]
    public void LongViewsAreCopiedToDenseRowsInSeveralChunksPerHead()
    {
        // 1,300 rows: the pack phase copies a strided call's values (and, with global tokens' row tails, its keys) in chunks
        // of 512 rows per work item, so a head takes three chunks, the last partial.
        int d = LongformerLike.HeadDim, seqLen = 1300;
        var shape = new AttentionShape(Heads, KvHeads, seqLen);
        (float[] query, float[] key, float[] value) = Inputs(new Random(21), shape, d, x => x);
        float[] expected = Reference(LongformerLike.Pattern, query, key, value, shape);
        float[] q = ToBshd(query, 1, Heads, seqLen, d, x => x), k = ToBshd(key, 1, KvHeads, seqLen, d, x => x), v = ToBshd(value, 1, KvHeads, seqLen, d, x => x);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var o = new float[q.Length];
            LongformerLike.Forward(SeqMajor(q, Heads, seqLen, d), SeqMajor(k, KvHeads, seqLen, d), SeqMajor(v, KvHeads, seqLen, d), SeqMajor(o, Heads, seqLen, d), new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, FromBshd(o, 1, Heads, seqLen, d, x => x), shape, d, $"1,300-row views, {isa}");
        }
    }

    [Fact]
    public void KeysBroadcastOverHeadsWithStrideZeroAndAWarmStridedCallAllocatesNothing()
    {
        // One K/V head's memory seen as KvHeads heads (head stride 0): a multi-query cache shared without copying.
        int d = CausalCutsRightSide.HeadDim, seqLen = 150;
        var shape = new AttentionShape(Heads, KvHeads, seqLen);
        var random = new Random(12);
        float[] query = AttentionCheck.RandomArray(random, Heads * seqLen * d), oneKey = AttentionCheck.RandomArray(random, seqLen * d), oneValue = AttentionCheck.RandomArray(random, seqLen * d);
        float[] key = Enumerable.Repeat(oneKey, KvHeads).SelectMany(x => x).ToArray(), value = Enumerable.Repeat(oneValue, KvHeads).SelectMany(x => x).ToArray();
        float[] expected = Reference(CausalCutsRightSide.Pattern, query, key, value, shape);
        float[] q = ToBshd(query, 1, Heads, seqLen, d, x => x);
        var o = new float[q.Length];
        var broadcast = new nint[] { KvHeads, seqLen, d };
        var strides = new nint[] { 0, d, 1 };
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            Array.Clear(o);
            CausalCutsRightSide.Forward<float>(SeqMajor(q, Heads, seqLen, d), new ReadOnlyTensorSpan<float>(oneKey, broadcast, strides), new ReadOnlyTensorSpan<float>(oneValue, broadcast, strides), SeqMajor(o, Heads, seqLen, d), new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, FromBshd(o, 1, Heads, seqLen, d, x => x), shape, d, $"broadcast keys, {isa}");
        }

        // Read in place: a warm call over views copies nothing and so allocates nothing (the views' lengths and strides are
        // made outside the measured calls).
        nint[] queryLengths = { Heads, seqLen, d }, queryStrides = { d, Heads * d, 1 };
        long bytes = AllocationCheck.FewestBytesOverBatches(() =>
        {
            for (int call = 0; call < 4; call++)
            {
                CausalCutsRightSide.Forward<float>(new ReadOnlyTensorSpan<float>(q, queryLengths, queryStrides), new ReadOnlyTensorSpan<float>(oneKey, broadcast, strides), new ReadOnlyTensorSpan<float>(oneValue, broadcast, strides), new TensorSpan<float>(o, queryLengths, queryStrides));
            }
        });
        Assert.Equal(0, bytes);

        // Half views are staged through fp32 buffers (pooled) by the worker pool: warm, that allocates nothing either.
        Half[] halfQuery = q.Select(x => (Half)x).ToArray(), halfOutput = new Half[q.Length];
        Half[] halfKey = oneKey.Select(x => (Half)x).ToArray(), halfValue = oneValue.Select(x => (Half)x).ToArray();
        bytes = AllocationCheck.FewestBytesOverBatches(() =>
        {
            for (int call = 0; call < 4; call++)
            {
                CausalCutsRightSide.Forward<Half>(new ReadOnlyTensorSpan<Half>(halfQuery, queryLengths, queryStrides), new ReadOnlyTensorSpan<Half>(halfKey, broadcast, strides), new ReadOnlyTensorSpan<Half>(halfValue, broadcast, strides), new TensorSpan<Half>(halfOutput, queryLengths, queryStrides));
            }
        });
        Assert.Equal(0, bytes);
    }

    [Fact]
    public void PaddedRowsAreReadAndWrittenThroughTheirStrides()
    {
        // Rows of HeadDim + 8 floats (a padded allocation); the padding must be neither read as data nor written.
        int d = LongformerLike.HeadDim, seqLen = 33, pitch = d + 8;
        var shape = new AttentionShape(Heads, KvHeads, seqLen);
        (float[] query, float[] key, float[] value) = Inputs(new Random(3), shape, d, x => x);
        float[] Pad(float[] dense, int heads)
        {
            var padded = Enumerable.Repeat(float.NaN, heads * seqLen * pitch).ToArray();
            for (int row = 0; row < heads * seqLen; row++)
            {
                dense.AsSpan(row * d, d).CopyTo(padded.AsSpan(row * pitch));
            }

            return padded;
        }

        TensorSpan<float> View(float[] padded, int heads) => new(padded, new nint[] { heads, seqLen, d }, new nint[] { (nint)seqLen * pitch, pitch, 1 });
        float[] q = Pad(query, Heads), k = Pad(key, KvHeads), v = Pad(value, KvHeads), o = Enumerable.Repeat(-7f, Heads * seqLen * pitch).ToArray();
        LongformerLike.Forward<float>(View(q, Heads), View(k, KvHeads), View(v, KvHeads), View(o, Heads));
        float[] expected = Reference(LongformerLike.Pattern, query, key, value, shape);
        for (int row = 0; row < Heads * seqLen; row++)
        {
            AttentionCheck.AssertClose(expected.AsSpan(row * d, d).ToArray(), o.AsSpan(row * pitch, d).ToArray(), new AttentionShape(1, 1, 1), d, $"padded row {row}");
            Assert.All(o.AsSpan(row * pitch + d, pitch - d).ToArray(), padding => Assert.Equal(-7f, padding));
        }
    }

    [Fact]
    public void BatchesWithGroupedQueryHeadsEqualOneCallPerSequenceOnEveryIsa()
    {
        var shape = new AttentionShape(Heads, KvHeads, 90) { Batch = 3 };
        int d = CausalWindowWithSinks.HeadDim;
        (float[] query, float[] key, float[] value) = Inputs(new Random(4), shape, d, x => x);
        float[] expected = Reference(CausalWindowWithSinks.Pattern, query, key, value, shape);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var output = new float[query.Length];
            var logSumExp = new float[3 * Heads * 90];
            CausalWindowWithSinks.Forward(query, key, value, output, logSumExp, shape, new AttentionOptions { Isa = isa });
            AttentionCheck.AssertClose(expected, output, shape with { Heads = 3 * Heads }, d, $"batch of 3, {isa}");
            var oneLse = new float[Heads * 90];
            CausalWindowWithSinks.Forward(query.AsSpan(2 * Heads * 90 * d, Heads * 90 * d), key.AsSpan(2 * KvHeads * 90 * d, KvHeads * 90 * d), value.AsSpan(2 * KvHeads * 90 * d, KvHeads * 90 * d), new float[Heads * 90 * d], oneLse, shape with { Batch = 1 }, new AttentionOptions { Isa = isa });
            Assert.Equal(oneLse, logSumExp.AsSpan(2 * Heads * 90).ToArray());
        }
    }

    [Fact]
    public void PackedSequencesOfLengthZeroOneAndRaggedNeverSeeEachOther()
    {
        int d = LongformerLike.HeadDim;
        int[] starts = { 0, 0, 1, 38, 38, 108 };
        int total = starts[^1];
        var shape = new AttentionShape(Heads, KvHeads, total);
        (float[] query, float[] key, float[] value) = Inputs(new Random(5), shape, d, x => x);

        // NaN in the keys and values of the last sequence: no other sequence may see it.
        float[] poisonedKey = (float[])key.Clone(), poisonedValue = (float[])value.Clone();
        for (int head = 0; head < KvHeads; head++)
        {
            poisonedKey[(head * total + 60) * d + 3] = float.NaN;
            poisonedValue[(head * total + 100) * d] = float.PositiveInfinity;
        }

        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var output = new float[query.Length];
            LongformerLike.Forward(query, poisonedKey, poisonedValue, output, shape, starts, new AttentionOptions { Isa = isa });
            for (int i = 0; i + 1 < starts.Length; i++)
            {
                int first = starts[i], rows = starts[i + 1] - first;
                if (rows == 0)
                {
                    continue;
                }

                var one = new AttentionShape(Heads, KvHeads, rows);
                float[] Rows(float[] tensor, int heads) => Enumerable.Range(0, heads).SelectMany(head => tensor.AsSpan((head * total + first) * d, rows * d).ToArray()).ToArray();
                float[] want = new float[Heads * rows * d];
                ReferenceAttention.Forward(LongformerLike.Pattern, Rows(query, Heads), Rows(poisonedKey, KvHeads), Rows(poisonedValue, KvHeads), want, one);
                int nanRows = AttentionCheck.AssertSameRowsOrNaN(want, Rows(output, Heads), one, d, $"sequence {i} ({rows} rows), {isa}");
                Assert.True(i == starts.Length - 2 ? nanRows > 0 : nanRows == 0, $"sequence {i}: {nanRows} NaN rows");
            }
        }
    }

    [Theory]
    [InlineData(new[] { 0, 10, 5, 20 }, "ascending")]
    [InlineData(new[] { 1, 10, 20 }, "start at 0")]
    [InlineData(new[] { 0, 10, 19 }, "end at the total rows")]
    [InlineData(new[] { 20 }, "at least 2")]
    public void BadSequenceStartsNameTheParameter(int[] starts, string rule)
    {
        int d = LongformerLike.HeadDim;
        var shape = new AttentionShape(1, 1, 20);
        var data = new float[20 * d];
        ArgumentException error = Assert.Throws<ArgumentException>(() => LongformerLike.Forward(data, data, data, new float[data.Length], shape, starts));
        Assert.Equal("sequenceStarts", error.ParamName);
        Assert.Contains(rule, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadStridesShapesAndOverlapsAreArgumentExceptionsNamingTheTensor()
    {
        int d = LongformerLike.HeadDim;
        var data = new float[2 * 10 * d];
        var output = new float[2 * 10 * d];

        // Last dimension not contiguous.
        float[] wide = new float[2 * 10 * d * 2];
        ArgumentException error = ForwardFails(new ReadOnlyTensorSpan<float>(wide, new nint[] { 2, 10, d }, new nint[] { 20 * d, 2 * d, 2 }), new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(output, new nint[] { 2, 10, d }));
        Assert.Equal("query", error.ParamName);
        Assert.Contains("contiguous", error.Message, StringComparison.Ordinal);

        // Output whose rows share memory (row stride 0).
        error = ForwardFails(new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(output, new nint[] { 2, 10, d }, new nint[] { 10 * d, 0, 1 }));
        Assert.Equal("output", error.ParamName);

        // Output over an input.
        error = ForwardFails(new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }));
        Assert.Equal("output", error.ParamName);

        // A dimension that does not match, named.
        error = ForwardFails(new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 5, d }), new(data, new nint[] { 2, 10, d }), new(output, new nint[] { 2, 10, d }));
        Assert.Equal("key", error.ParamName);
        Assert.Contains("SeqLen", error.Message, StringComparison.Ordinal);
        error = ForwardFails(new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(data, new nint[] { 2, 10, d }), new(new float[2 * 2 * 2 * d], new nint[] { 2, 2, 2 * d }));
        Assert.Equal("output", error.ParamName);
        Assert.Contains("HeadDim", error.Message, StringComparison.Ordinal);

        // An element type attention does not take.
        var ints = new int[2 * 10 * d];
        error = Assert.Throws<ArgumentException>(() => LongformerLike.Forward<int>(new ReadOnlyTensorSpan<int>(ints, new nint[] { 2, 10, d }), new ReadOnlyTensorSpan<int>(ints, new nint[] { 2, 10, d }), new ReadOnlyTensorSpan<int>(ints, new nint[] { 2, 10, d }), new TensorSpan<int>(new int[ints.Length], new nint[] { 2, 10, d })));
        Assert.Equal("query", error.ParamName);

        // A batch below 1 on the span overload.
        Assert.Equal("shape", Assert.Throws<ArgumentException>(() => LongformerLike.Forward(data, data, data, output, new AttentionShape(2, 2, 10) { Batch = 0 })).ParamName);

        // Prefill continues one stream.
        Assert.Equal("shape", Assert.Throws<ArgumentException>(() => CausalWindowWithSinks.Prefill(new float[2 * Heads * 4 * 128], new float[2 * KvHeads * 4 * 128], new float[2 * KvHeads * 4 * 128], new float[2 * Heads * 4 * 128], new AttentionShape(Heads, KvHeads, 4) { Batch = 2 }, CausalWindowWithSinks.CreateCache(KvHeads))).ParamName);
    }

    private static ArgumentException ForwardFails(ReadOnlyTensorSpan<float> query, ReadOnlyTensorSpan<float> key, ReadOnlyTensorSpan<float> value, TensorSpan<float> output)
    {
        try
        {
            LongformerLike.Forward(query, key, value, output);
        }
        catch (ArgumentException error)
        {
            return error;
        }

        Assert.Fail("expected an ArgumentException");
        return null!;
    }

    [Fact]
    public void HalfWidensExactlyForEveryValue()
    {
        // All 65536 half values through the vector conversion (and a tail), against the base library's conversion: in one
        // run (vectors holding infinities and NaNs take the exact rule), and in runs of 48 (32 through the widest vector
        // rule, 16 through the 256-bit one) of the finite values only, so the fast rule sees every finite half at both widths.
        Half[] every = Enumerable.Range(0, ushort.MaxValue + 1).Select(bits => BitConverter.UInt16BitsToHalf((ushort)bits)).Append(Half.One).ToArray();
        CheckWidening(every, every.Length);
        Half[] finite = every.Where(Half.IsFinite).ToArray();
        CheckWidening(finite, 48);

        static void CheckWidening(Half[] halves, int run)
        {
            var widened = new float[halves.Length];
            for (int start = 0; start < halves.Length; start += run)
            {
                int length = Math.Min(run, halves.Length - start);
                ElementConversion.ToSingle<Half>(halves.AsSpan(start, length), widened.AsSpan(start, length));
            }

            for (int i = 0; i < halves.Length; i++)
            {
                float expected = (float)halves[i];
                Assert.True(float.IsNaN(expected) ? float.IsNaN(widened[i]) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(widened[i]), $"half bits {BitConverter.HalfToUInt16Bits(halves[i]):X4}: {widened[i]}, expected {expected}");
            }
        }
    }

    [Fact]
    public void BFloat16RoundsToNearestEvenAndWidensExactly()
    {
        Assert.Equal(1f, (float)(BFloat16)1f);
        Assert.Equal(0x3F80, ((BFloat16)1.00390625f).RawValue);      // 1 + 2^-8: a tie, rounds to the even 1
        Assert.Equal(0x3F82, ((BFloat16)1.01171875f).RawValue);      // 1 + 3 x 2^-8: a tie, rounds up to even
        Assert.Equal(0x3F81, ((BFloat16)1.0078126f).RawValue);       // just above 1 + 2^-7
        Assert.True(((BFloat16)float.NaN).IsNaN);
        Assert.Equal(float.PositiveInfinity, (float)(BFloat16)float.PositiveInfinity);
        Assert.Equal(float.PositiveInfinity, (float)(BFloat16)float.MaxValue); // rounds past the largest bf16
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            BFloat16 value = BFloat16.FromRawValue((ushort)bits);
            if (!value.IsNaN)
            {
                Assert.Equal(bits, ((BFloat16)(float)value).RawValue);
            }
        }

        // The vector path (16 at a time) agrees with the scalar rule on random floats, NaN included.
        var random = new Random(9);
        float[] floats = Enumerable.Range(0, 1003).Select(i => i % 97 == 0 ? float.NaN : BitConverter.Int32BitsToSingle(random.Next())).ToArray();
        var narrowed = new BFloat16[floats.Length];
        ElementConversion.FromSingle<BFloat16>(floats, narrowed);
        var widened = new float[floats.Length];
        ElementConversion.ToSingle<BFloat16>(narrowed, widened);
        for (int i = 0; i < floats.Length; i++)
        {
            Assert.Equal(((BFloat16)floats[i]).RawValue, narrowed[i].RawValue);
            Assert.Equal(BitConverter.SingleToInt32Bits((float)narrowed[i]), BitConverter.SingleToInt32Bits(widened[i]));
        }
    }
}
