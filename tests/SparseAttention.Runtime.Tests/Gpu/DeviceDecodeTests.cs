using System.Reflection;
using ILGPU.Runtime;
using SparseAttention.Runtime.Tests.Decode;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// Decode on an <see cref="AttentionDevice"/>: a <see cref="DeviceKvCache"/> filled on the device and the generated
/// <c>Decode</c> over it, on ILGPU's CPU accelerator (the GPU kernel in decode form: a block's rows are a KV head's query
/// heads, the window split into parts merged by log-sum-exp) and on the CPU device, against the reference on the whole
/// stream.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class DeviceDecodeTests(IlgpuCpuDevice fixture)
{
    /// <summary>The generated <c>Decode(query, cache, output, options)</c> over host spans and a device cache.</summary>
    private delegate void DeviceDecode(ReadOnlySpan<float> query, DeviceKvCache cache, Span<float> output, AttentionOptions? options);

    private static DeviceDecode DecodeOf(string name)
    {
        Type type = typeof(DeclaredKernels).Assembly.GetType(typeof(DeclaredKernels).Namespace + "." + name, throwOnError: true)!;
        MethodInfo method = type.GetMethod("Decode", new[] { typeof(ReadOnlySpan<float>), typeof(DeviceKvCache), typeof(Span<float>), typeof(AttentionOptions) })!;
        return method.CreateDelegate<DeviceDecode>();
    }

    private static KernelUnderTest KernelNamed(string name) =>
        DeclaredKernels.All.Concat(ScoreModifierKernels.All).Append(KernelUnderTest.FromType(typeof(CausalNeighborhood1D))).Single(kernel => kernel.Name == name);

    [Theory]
    [InlineData(nameof(DilatedCausalWithSinks))] // heads of dilation 1 and 3 in one GQA group, pinned global tokens, a global row mid-stream
    [InlineData(nameof(WindowOverSeveralDecodeBlocks))] // a 300-key window: several tiles, cut into parts and merged
    [InlineData(nameof(CausalWindowWithSinks))] // HeadDim 128 (queries read from global memory), globals 0, 3 and 500
    [InlineData(nameof(EverythingStreamable))] // its own kernel: mask, score mod, ALiBi, softcap
    [InlineData(nameof(CausalNeighborhood1D))] // a 1-D neighbourhood causal along its axis (bidirectional as a kernel)
    public void DecodeOnTheDeviceMatchesTheReference(string name)
    {
        KernelUnderTest kernel = KernelNamed(name);
        var random = new Random(AttentionCheck.StableSeed(name, salt: 23));
        StreamCase stream = StreamCase.Create(kernel, random, heads: (6, 2));
        using var cache = new DeviceKvCache(fixture.Device, kernel.Pattern, stream.Shape.KvHeads, kernel.HeadDim);
        DeviceDecode decode = DecodeOf(name);
        // Tokens appended in chunks of different lengths (one longer than the ring, so the scatter keeps only its last
        // RingSlots tokens), decoded at the ends of the chunks: the first token, a ring not yet full, a wrapped ring.
        int[] decodeAt = { 0, stream.Window / 2, stream.Window, 3 * stream.Window + 5, stream.Length / 2, stream.Length - 1 };
        int appended = 0;
        foreach (int position in decodeAt.Distinct().Order())
        {
            cache.Append(stream.ChunkKeys(appended, position + 1 - appended), stream.ChunkValues(appended, position + 1 - appended));
            appended = position + 1;
            float[] query = stream.TokenQuery(position);
            var output = new float[query.Length];
            Array.Fill(output, float.NaN);
            decode(query, cache, output, null);
            stream.AssertRow(output, position, "device decode");
        }

        Assert.Equal(stream.Length, cache.Count);
    }

    [Theory]
    [InlineData(nameof(WindowOverSeveralDecodeBlocks), false)] // a window and a pinned sink: every step sees the same slots
    [InlineData(nameof(EverythingStreamable), true)] // ALiBi, a mask and a score mod read each key's position
    public void AFullRingsStepsShareOneTableUnlessPositionsMatter(string name, bool positionsMatter)
    {
        KernelUnderTest kernel = KernelNamed(name);
        var random = new Random(AttentionCheck.StableSeed(name, salt: 29));
        StreamCase stream = StreamCase.Create(kernel, random, heads: (6, 2));
        using var cache = new DeviceKvCache(fixture.Device, kernel.Pattern, stream.Shape.KvHeads, kernel.HeadDim);
        DeviceDecode decode = DecodeOf(name);
        // Past two windows the ring has wrapped: each step moves where it wraps, which the table's entries ignore unless a
        // modifier needs positions; every step is checked against the reference either way.
        int first = 2 * stream.Window + 7, steps = 6;
        cache.Append(stream.ChunkKeys(0, first), stream.ChunkValues(0, first));
        int buildsBefore = 0;
        for (int position = first; position < first + steps; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            float[] query = stream.TokenQuery(position);
            var output = new float[query.Length];
            Array.Fill(output, float.NaN);
            decode(query, cache, output, null);
            stream.AssertRow(output, position, $"device decode, step {position - first}");
            if (position == first)
            {
                buildsBefore = cache.Scratch.TableBuilds;
            }
        }

        Assert.Equal(positionsMatter ? steps - 1 : 0, cache.Scratch.TableBuilds - buildsBefore);
    }

    [Fact]
    public void DecodeOnTheDeviceTakesLearnedSinksAndViews()
    {
        var random = new Random(61);
        var shape = new AttentionShape(4, 2, 70);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, WindowWithLearnedSinks.HeadDim);
        float[] sinks = { 0.5f, float.NegativeInfinity, 3f, -1f };
        var expected = new float[inputs.Query.Length];
        ReferenceAttention.Forward(WindowWithLearnedSinks.Pattern, WindowWithLearnedSinks.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, Span<float>.Empty, shape);
        int d = WindowWithLearnedSinks.HeadDim;
        float[] Token(float[] tensor, int heads, int position) =>
            Enumerable.Range(0, heads).SelectMany(head => tensor.AsSpan((head * shape.SeqLen + position) * d, d).ToArray()).ToArray();

        ILGPU.Runtime.Accelerator accelerator = fixture.Device.Accelerator!;
        using DeviceKvCache cache = WindowWithLearnedSinks.CreateCache(fixture.Device, shape.KvHeads);
        using var query = accelerator.Allocate1D<float>(shape.Heads * d);
        using var output = accelerator.Allocate1D<float>(shape.Heads * d);
        using var keyRow = accelerator.Allocate1D<float>(shape.KvHeads * d);
        using var valueRow = accelerator.Allocate1D<float>(shape.KvHeads * d);
        for (int position = 0; position < shape.SeqLen; position++)
        {
            // Keys and values already on the device, as a projection leaves them.
            keyRow.View.CopyFromCPU(Token(inputs.Key, shape.KvHeads, position));
            valueRow.View.CopyFromCPU(Token(inputs.Value, shape.KvHeads, position));
            cache.Append(keyRow.View, valueRow.View);
            if (position % 23 != 22)
            {
                continue;
            }

            query.View.CopyFromCPU(Token(inputs.Query, shape.Heads, position));
            WindowWithLearnedSinks.Decode(query.View, sinks, cache, output.View);
            AttentionCheck.AssertClose(Token(expected, shape.Heads, position), output.GetAsArray1D(), shape with { SeqLen = 1 }, d, $"device decode with sinks, position {position}");
        }
    }

    [Fact]
    public void OnTheCpuDeviceTheCacheIsAKvCacheDecodedByTheSimdKernels()
    {
        using AttentionDevice cpu = AttentionDevice.Create(AttentionBackend.Cpu);
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(DilatedCausalWithSinks));
        StreamCase stream = StreamCase.Create(kernel, new Random(8), heads: (4, 2));
        using DeviceKvCache cache = DilatedCausalWithSinks.CreateCache(cpu, stream.Shape.KvHeads);
        Assert.NotNull(cache.Host);
        for (int position = 0; position < stream.Length; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            var output = new float[stream.Shape.Heads * kernel.HeadDim];
            DilatedCausalWithSinks.Decode(stream.TokenQuery(position), cache, output);
            stream.AssertRow(output, position, "CPU device decode");
        }

        Assert.Throws<NotSupportedException>(() => cache.Append(default(ILGPU.ArrayView<float>), default(ILGPU.ArrayView<float>)));
    }

    [Fact]
    public void AWrongCallNamesTheParameterAndChangesNothing()
    {
        using DeviceKvCache cache = WindowWithLearnedSinks.CreateCache(fixture.Device, 2);
        int d = WindowWithLearnedSinks.HeadDim;
        float[] sinks = new float[4];
        Assert.Throws<InvalidOperationException>(() => WindowWithLearnedSinks.Decode(new float[4 * d], sinks, cache, new float[4 * d]));
        Assert.Equal("key", Assert.Throws<ArgumentException>(() => cache.Append(new float[d], new float[d])).ParamName);
        Assert.Equal("value", Assert.Throws<ArgumentException>(() => cache.Append(new float[2 * d], new float[d])).ParamName);
        Assert.Equal(0, cache.Count);

        cache.Append(new float[2 * d], new float[2 * d]);
        Assert.Equal("query", Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Decode(new float[3 * d], sinks, cache, new float[3 * d])).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Decode(new float[4 * d], sinks, cache, new float[2 * d])).ParamName);
        Assert.Equal("sinkLogits", Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Decode(new float[4 * d], new float[3], cache, new float[4 * d])).ParamName);
        using DeviceKvCache other = SoftcappedWindow.CreateCache(fixture.Device, 2);
        Assert.Equal("cache", Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.Decode(new float[4 * d], sinks, other, new float[4 * d])).ParamName);
        Assert.Equal("device", Assert.Throws<ArgumentNullException>(() => WindowWithLearnedSinks.CreateCache((AttentionDevice)null!, 2)).ParamName);
        Assert.Equal("kvHeads", Assert.Throws<ArgumentException>(() => WindowWithLearnedSinks.CreateCache(fixture.Device, 0)).ParamName);
        DeviceKvCache disposed = WindowWithLearnedSinks.CreateCache(fixture.Device, 2);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disposed.Append(new float[2 * d], new float[2 * d]));
#pragma warning disable SPA0011 // the analyzer's error is what a user sees first; this is the runtime's answer behind it
        Assert.Throws<NotSupportedException>(() => DenseCausal.CreateCache(fixture.Device, 2));
#pragma warning restore SPA0011
    }
}
