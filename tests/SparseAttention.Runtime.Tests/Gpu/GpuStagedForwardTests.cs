using ILGPU;
using ILGPU.Runtime;
using SparseAttention.Gpu;
using SparseAttention.Testing;
using Half = System.Half;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// Half and BFloat16 device views (issue 15): widened on the device, computed in fp32, narrowed back; checked on ILGPU's
/// CPU accelerator against the reference on the widened inputs, rounded to the type (one ulp: 2^-10 / 2^-7 relative).
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class GpuStagedForwardTests(IlgpuCpuDevice fixture)
{
    [Fact]
    public void HalfAndBFloat16ViewsMatchTheReferenceInBatches()
    {
        Accelerator accelerator = fixture.Device.Accelerator!;
        int d = LongformerLike.HeadDim;
        var shape = new AttentionShape(4, 2, 50) { Batch = 2 };
        var random = new Random(6);
        Check<Half>(x => (Half)x, x => (float)x, 1.0 / 1024);
        Check<BFloat16>(x => (BFloat16)x, x => (float)x, 1.0 / 128);

        void Check<T>(Func<float, T> narrow, Func<T, float> widen, double ulp)
            where T : unmanaged
        {
            float[] Make(int heads) => AttentionCheck.RandomArray(random, shape.Batch * heads * shape.SeqLen * d, 1.5f).Select(x => widen(narrow(x))).ToArray();
            float[] query = Make(shape.Heads), key = Make(shape.KvHeads), value = Make(shape.KvHeads);
            var expected = new float[query.Length];
            ReferenceAttention.Forward(LongformerLike.Pattern, query, key, value, expected, shape);
            using MemoryBuffer1D<T, Stride1D.Dense> q = accelerator.Allocate1D(query.Select(narrow).ToArray()), k = accelerator.Allocate1D(key.Select(narrow).ToArray());
            using MemoryBuffer1D<T, Stride1D.Dense> v = accelerator.Allocate1D(value.Select(narrow).ToArray()), o = accelerator.Allocate1D<T>(query.Length);
            if (typeof(T) == typeof(Half))
            {
                LongformerLike.Forward(accelerator, ((ArrayView<T>)q.View).Cast<Half>(), ((ArrayView<T>)k.View).Cast<Half>(), ((ArrayView<T>)v.View).Cast<Half>(), ((ArrayView<T>)o.View).Cast<Half>(), shape);
            }
            else
            {
                LongformerLike.Forward(accelerator, ((ArrayView<T>)q.View).Cast<BFloat16>(), ((ArrayView<T>)k.View).Cast<BFloat16>(), ((ArrayView<T>)v.View).Cast<BFloat16>(), ((ArrayView<T>)o.View).Cast<BFloat16>(), shape);
            }

            accelerator.Synchronize();
            T[] actual = o.GetAsArray1D();
            for (int i = 0; i < expected.Length; i++)
            {
                float want = widen(narrow(expected[i]));
                Assert.True(Math.Abs(want - widen(actual[i])) <= ulp * Math.Max(1, Math.Abs(want)), $"{typeof(T).Name} element {i}: {widen(actual[i])}, the reference rounded is {want}");
            }
        }
    }

    [Fact]
    public void PackedSequencesOnTheDeviceEqualTheCpuPackedCall()
    {
        // Lengths 0, 1, a ragged 37 and 70, with NaN in the last sequence's keys: the device's result equals the CPU's
        // packed call (itself tested against the reference per sequence), NaN rows included.
        Accelerator accelerator = fixture.Device.Accelerator!;
        int d = LongformerLike.HeadDim;
        int[] starts = { 0, 0, 1, 38, 108 };
        var shape = new AttentionShape(4, 2, starts[^1]);
        var random = new Random(8);
        float[] query = AttentionCheck.RandomArray(random, shape.Heads * shape.SeqLen * d, 1.5f);
        float[] key = AttentionCheck.RandomArray(random, shape.KvHeads * shape.SeqLen * d, 1.5f);
        float[] value = AttentionCheck.RandomArray(random, shape.KvHeads * shape.SeqLen * d, 1.5f);
        key[(1 * shape.SeqLen + 90) * d] = float.NaN;
        var expected = new float[query.Length];
        LongformerLike.Forward(query, key, value, expected, shape, starts);
        using MemoryBuffer1D<float, Stride1D.Dense> q = accelerator.Allocate1D(query), k = accelerator.Allocate1D(key), v = accelerator.Allocate1D(value), o = accelerator.Allocate1D<float>(query.Length);
        LongformerLike.Forward(accelerator, q.View, k.View, v.View, o.View, shape, starts);
        accelerator.Synchronize();
        Assert.True(AttentionCheck.AssertSameRowsOrNaN(expected, o.GetAsArray1D(), shape, d, "packed sequences on ILGPU") > 0);
        Assert.Equal("sequenceStarts", Assert.Throws<ArgumentException>(() => LongformerLike.Forward(accelerator, q.View, k.View, v.View, o.View, shape, new[] { 0, 50, 40, 108 })).ParamName);
    }

    [Fact]
    public void WrongElementViewsAreArgumentExceptionsNamingTheParameter()
    {
        Accelerator accelerator = fixture.Device.Accelerator!;
        int d = LongformerLike.HeadDim;
        var shape = new AttentionShape(2, 1, 10);
        using MemoryBuffer1D<Half, Stride1D.Dense> query = accelerator.Allocate1D<Half>(2 * 10 * d), key = accelerator.Allocate1D<Half>(10 * d), shortKey = accelerator.Allocate1D<Half>(10 * d - 1), output = accelerator.Allocate1D<Half>(2 * 10 * d);
        Assert.Equal("key", Assert.Throws<ArgumentException>(() => LongformerLike.Forward<Half>(accelerator, query.View, shortKey.View, key.View, output.View, shape)).ParamName);
        Assert.Equal("shape", Assert.Throws<ArgumentException>(() => LongformerLike.Forward<Half>(accelerator, query.View, key.View, key.View, output.View, shape with { Batch = 0 })).ParamName);
        using MemoryBuffer1D<int, Stride1D.Dense> ints = accelerator.Allocate1D<int>(2 * 10 * d), intKeys = accelerator.Allocate1D<int>(10 * d), intOutput = accelerator.Allocate1D<int>(2 * 10 * d);
        ArgumentException unsupported = Assert.Throws<ArgumentException>(() => LongformerLike.Forward<int>(accelerator, ints.View, intKeys.View, intKeys.View, intOutput.View, shape));
        Assert.Equal("query", unsupported.ParamName);
        Assert.Contains("Half", unsupported.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheDeviceConversionsRoundLikeTheBaseLibrary()
    {
        // The kernels' scalar bodies, run on the host: every Half value widens exactly, and floats across the whole range
        // (denormal halves, ties, overflow, NaN) narrow to the base library's nearest Half and to the BFloat16 struct's.
        var random = new Random(3);
        float[] floats = Enumerable.Range(0, 200_000).Select(_ => BitConverter.Int32BitsToSingle(random.Next() ^ (random.Next(2) << 31)))
            .Concat(new[] { 65504f, 65519.99f, 65520f, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1.00048828125f, 1.00146484375f })
            .Concat(Enumerable.Range(0, 40_000).Select(i => (float)(i * 1e-7)))
            .ToArray();
        foreach (float value in floats)
        {
            ushort half = GpuStagedForward.HalfBits(value);
            if (float.IsNaN(value))
            {
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(half)));
                continue;
            }

            Assert.True(BitConverter.HalfToUInt16Bits((Half)value) == half, $"{value:R}: 0x{half:X4}, expected 0x{BitConverter.HalfToUInt16Bits((Half)value):X4}");
        }

        using var source = fixture.Device.Accelerator!.Allocate1D(Enumerable.Range(0, ushort.MaxValue + 1).Select(bits => (ushort)bits).ToArray());
        using var widened = fixture.Device.Accelerator!.Allocate1D<float>(ushort.MaxValue + 1);
        fixture.Device.Accelerator!.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<float>>(GpuStagedForward.WidenHalfKernel)(ushort.MaxValue + 1, source.View, widened.View);
        fixture.Device.Accelerator!.Synchronize();
        float[] result = widened.GetAsArray1D();
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            Assert.True(float.IsNaN(expected) ? float.IsNaN(result[bits]) : expected.Equals(result[bits]) && float.IsNegative(expected) == float.IsNegative(result[bits]), $"half 0x{bits:X4}: {result[bits]}, expected {expected}");
        }
    }
}
