using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// Partial attention over an <see cref="AttentionSlice"/> and <see cref="AttentionMerge"/>: the key slices of any
/// partition, each run by the kernel and merged, give one Forward over all keys (issue 14's 2, 3 and 7 slices).
/// </summary>
[Collection(Gpu.IlgpuCpuCollection.Name)]
public class SliceMergeTests(Gpu.IlgpuCpuDevice fixture)
{
    private delegate void SliceForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, Span<float> logSumExp, AttentionSlice slice, AttentionOptions options);

    public static TheoryData<string, int> KernelsAndParts()
    {
        var data = new TheoryData<string, int>();
        foreach (string name in new[] { nameof(CausalWindowWithSinks), nameof(LongformerLike), nameof(BigBirdCausal), nameof(FixedWithDilatedWindowAndGlobal), nameof(StridedWithMixedDilation), nameof(EverythingOnFixed), nameof(ScoreModLongformer) })
        {
            foreach (int parts in new[] { 2, 3, 7 })
            {
                data.Add(name, parts);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsAndParts))]
    public void MergedKeySlicesEqualOneForwardOverAllKeys(string name, int parts)
    {
        Type type = typeof(SliceMergeTests).Assembly.GetType("SparseAttention.Runtime.Tests." + name, throwOnError: true)!;
        var slice = (SliceForward)Delegate.CreateDelegate(typeof(SliceForward), type.GetMethods().Single(method => method.Name == "Forward" && method.GetParameters().Any(parameter => parameter.ParameterType == typeof(AttentionSlice)) && method.GetParameters()[0].ParameterType != typeof(Accelerator)));
        var random = new Random(name.Length * 10 + parts);
        KernelIsa isa = AttentionCheck.AllIsas[random.Next(AttentionCheck.AllIsas.Length)];
        AssertMergedSlicesMatch(type, parts, random, isa.ToString(), (part, query, key, value, output, lse) => slice(query, key, value, output, lse, part, new AttentionOptions { Isa = isa }));
    }

    [Theory]
    [InlineData(nameof(CausalWindowWithSinks), 3)]
    [InlineData(nameof(LongformerLike), 2)]
    [InlineData(nameof(BigBirdCausal), 3)]
    [InlineData(nameof(StridedWithMixedDilation), 7)]
    [InlineData(nameof(EverythingOnFixed), 3)]
    [InlineData(nameof(ScoreModLongformer), 2)]
    public void MergedKeySlicesOnTheIlgpuKernelEqualOneForwardOverAllKeys(string name, int parts)
    {
        // The ILGPU kernel's slices: its tile table counts tiles from the slice's first query and key, its modifiers (ALiBi,
        // a mask, a score mod) see absolute positions.
        Type type = typeof(SliceMergeTests).Assembly.GetType("SparseAttention.Runtime.Tests." + name, throwOnError: true)!;
        MethodInfo method = type.GetMethods().Single(method => method.Name == "Forward" && method.GetParameters().Any(parameter => parameter.ParameterType == typeof(AttentionSlice)) && method.GetParameters()[0].ParameterType == typeof(Accelerator));
        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        Accelerator accelerator = device.Accelerator!;
        AssertMergedSlicesMatch(type, parts, new Random(name.Length + parts), "ILGPU", (part, query, key, value, output, lse) =>
        {
            using MemoryBuffer1D<float, Stride1D.Dense> queryBuffer = accelerator.Allocate1D(query.ToArray()), keyBuffer = accelerator.Allocate1D(key.ToArray()), valueBuffer = accelerator.Allocate1D(value.ToArray());
            using MemoryBuffer1D<float, Stride1D.Dense> outputBuffer = accelerator.Allocate1D<float>(output.Length), lseBuffer = accelerator.Allocate1D<float>(lse.Length);
            method.Invoke(null, new object[] { accelerator, (ArrayView<float>)queryBuffer.View, (ArrayView<float>)keyBuffer.View, (ArrayView<float>)valueBuffer.View, (ArrayView<float>)outputBuffer.View, (ArrayView<float>)lseBuffer.View, part, AttentionOptions.Default });
            accelerator.Synchronize();
            outputBuffer.GetAsArray1D().CopyTo(output);
            lseBuffer.GetAsArray1D().CopyTo(lse);
        });
    }

    private delegate void RunSlice(AttentionSlice slice, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, Span<float> logSumExp);

    /// <summary>
    /// Queries in two random slices, keys in <paramref name="parts"/> random slices; each (query slice, key slice) runs alone
    /// through <paramref name="run"/>, and the merged results must equal the reference and one Forward over all keys.
    /// </summary>
    private static void AssertMergedSlicesMatch(Type type, int parts, Random random, string path, RunSlice run)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(type);
        string name = type.Name;
        var shape = new AttentionShape(4, 2, 170);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        int d = kernel.HeadDim;

        // The whole call, and the reference's log-sum-exps.
        float[] whole = AttentionCheck.Run(kernel, inputs, AttentionOptions.Default);
        var expected = new float[whole.Length];
        var expectedLse = new float[shape.Heads * shape.SeqLen];
        ReferenceAttention.Forward(kernel.Pattern, kernel.Scores ?? ScoreModifiers.None, inputs.Query, inputs.Key, inputs.Value, ReadOnlySpan<float>.Empty, expected, expectedLse, shape);

        int[] queryCuts = Cuts(random, shape.SeqLen, 2);
        int[] keyCuts = Cuts(random, shape.SeqLen, parts);
        for (int q = 0; q + 1 < queryCuts.Length; q++)
        {
            int queryStart = queryCuts[q], queryCount = queryCuts[q + 1] - queryStart;
            float[] merged = null!, mergedLse = null!;
            for (int k = 0; k + 1 < keyCuts.Length; k++)
            {
                int keyStart = keyCuts[k], keyCount = keyCuts[k + 1] - keyStart;
                var part = new AttentionSlice(shape.Heads, shape.KvHeads, shape.SeqLen, queryStart, queryCount, keyStart, keyCount);
                var output = new float[shape.Heads * queryCount * d];
                var lse = new float[shape.Heads * queryCount];
                run(part, Rows(inputs.Query, shape.Heads, queryStart, queryCount), Rows(inputs.Key, shape.KvHeads, keyStart, keyCount), Rows(inputs.Value, shape.KvHeads, keyStart, keyCount), output, lse);
                if (k == 0)
                {
                    (merged, mergedLse) = (output, lse);
                }
                else
                {
                    AttentionMerge.Merge(merged, mergedLse, output, lse, d);
                }
            }

            var queryShape = shape with { SeqLen = queryCount };
            AttentionCheck.AssertClose(Rows(expected, shape.Heads, queryStart, queryCount), merged, queryShape, d, $"{name} {parts} key slices {string.Join(",", keyCuts)} vs reference, {path}");
            AttentionCheck.AssertClose(Rows(whole, shape.Heads, queryStart, queryCount), merged, queryShape, d, $"{name} {parts} key slices vs Forward, {path}");
            float[] wantLse = Enumerable.Range(0, shape.Heads).SelectMany(head => expectedLse.AsSpan(head * shape.SeqLen + queryStart, queryCount).ToArray()).ToArray();
            for (int i = 0; i < wantLse.Length; i++)
            {
                Assert.True(wantLse[i].Equals(mergedLse[i]) || Math.Abs(wantLse[i] - mergedLse[i]) <= 1e-4 * Math.Max(1, Math.Abs(wantLse[i])), $"{name}: merged log-sum-exp {mergedLse[i]}, expected {wantLse[i]} ({path})");
            }
        }

        float[] Rows(float[] tensor, int heads, int first, int count) =>
            Enumerable.Range(0, heads).SelectMany(head => tensor.AsSpan((head * shape.SeqLen + first) * d, count * d).ToArray()).ToArray();
    }

    /// <summary><paramref name="parts"/> + 1 ascending cut points from 0 to <paramref name="length"/>, each part non-empty.</summary>
    private static int[] Cuts(Random random, int length, int parts) =>
        new[] { 0, length }.Concat(Enumerable.Range(1, length - 1).OrderBy(_ => random.Next()).Take(parts - 1)).Order().ToArray();

    [Fact]
    public void ASliceOutsideTheSequenceOrOfTheWrongSizeIsRefused()
    {
        int d = DenseCausal.HeadDim;
        var slice = new AttentionSlice(2, 1, 50, QueryStart: 40, QueryCount: 10, KeyStart: 0, KeyCount: 20);
        var query = new float[2 * 10 * d];
        var key = new float[20 * d];
        ArgumentException outside = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(query, key, key, new float[query.Length], new float[20], slice with { QueryStart = 45 }, AttentionOptions.Default));
        Assert.Equal("slice", outside.ParamName);
        Assert.Contains("[45, 55) must be non-empty and inside the sequence [0, 50)", outside.Message, StringComparison.Ordinal);
        ArgumentException keys = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(query, new float[19 * d], key, new float[query.Length], new float[20], slice, AttentionOptions.Default));
        Assert.Equal("key", keys.ParamName);
        ArgumentException lse = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(query, key, key, new float[query.Length], new float[19], slice, AttentionOptions.Default));
        Assert.Equal("logSumExp", lse.ParamName);
    }
}
