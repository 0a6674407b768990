using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// The view overload rejects wrong calls before anything is queued: an ArgumentException naming the parameter,
/// and the output buffer keeps its contents.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class GpuArgumentValidationTests(IlgpuCpuDevice fixture)
{
    private const int D = DenseCausal.HeadDim;
    private static readonly AttentionShape Shape = new(Heads: 4, KvHeads: 2, SeqLen: 10);
    private static readonly int QueryLength = Shape.Heads * Shape.SeqLen * D;
    private static readonly int KvLength = Shape.KvHeads * Shape.SeqLen * D;

    private Accelerator Accelerator => fixture.Device.Accelerator!;

    private MemoryBuffer1D<float, Stride1D.Dense> Filled(int length, float value = 42f)
    {
        MemoryBuffer1D<float, Stride1D.Dense> buffer = Accelerator.Allocate1D<float>(length);
        buffer.View.CopyFromCPU(Enumerable.Repeat(value, length).ToArray());
        return buffer;
    }

    [Theory]
    [InlineData("query", -1, 0, 0, 0)]
    [InlineData("key", 0, D, 0, 0)]
    [InlineData("value", 0, 0, -7, 0)]
    [InlineData("output", 0, 0, 0, 1)]
    public void WrongViewLengthNamesTheParameterAndBothSizes(string parameter, int queryDelta, int keyDelta, int valueDelta, int outputDelta)
    {
        using var query = Filled(QueryLength + queryDelta);
        using var key = Filled(KvLength + keyDelta);
        using var value = Filled(KvLength + valueDelta);
        using var output = Filled(QueryLength + outputDelta);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query.View, key.View, value.View, output.View, Shape));
        Assert.Equal(parameter, exception.ParamName);
        int expected = parameter is "query" or "output" ? QueryLength : KvLength;
        Assert.Contains(expected.ToString(), exception.Message);
        Accelerator.Synchronize();
        Assert.All(output.GetAsArray1D(), element => Assert.Equal(42f, element));
    }

    [Fact]
    public void ASliceOutsideTheSequenceOrOfTheWrongSizeIsRefusedOnTheDevice()
    {
        var slice = new AttentionSlice(4, 2, 50, QueryStart: 40, QueryCount: 10, KeyStart: 0, KeyCount: 20);
        using var query = Filled(4 * 10 * D);
        using var key = Filled(2 * 20 * D);
        using var shortKey = Filled(2 * 20 * D - 1);
        using var output = Filled(4 * 10 * D);
        using var lse = Filled(4 * 10);
        ArgumentException outside = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query.View, key.View, key.View, output.View, lse.View, slice with { QueryStart = 45 }, AttentionOptions.Default));
        Assert.Equal("slice", outside.ParamName);
        Assert.Equal("key", Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query.View, shortKey.View, key.View, output.View, lse.View, slice, AttentionOptions.Default)).ParamName);
        Assert.Equal("logSumExp", Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query.View, key.View, key.View, output.View, output.View, slice, AttentionOptions.Default)).ParamName);
        Accelerator.Synchronize();
        Assert.All(output.GetAsArray1D(), element => Assert.Equal(42f, element));
    }

    [Fact]
    public void ImpossibleShapeIsRejectedAsShape()
    {
        using var buffer = Filled(64);
        using var output = Filled(64);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, buffer.View, buffer.View, buffer.View, output.View, new AttentionShape(6, 4, 10)));
        Assert.Equal("shape", exception.ParamName);
    }

    [Fact]
    public void OutputOverlappingAnInputIsRejected()
    {
        using var shared = Filled(QueryLength + KvLength);
        using var key = Filled(KvLength);
        using var value = Filled(KvLength);
        ArrayView<float> query = shared.View.SubView(0, QueryLength);
        ArrayView<float> output = shared.View.SubView(KvLength, QueryLength); // shifted by KvLength < QueryLength: overlaps
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query, key.View, value.View, output, Shape));
        Assert.Equal("output", exception.ParamName);
    }

    [Fact]
    public void AdjacentViewsOfOneBufferAreAccepted()
    {
        using var shared = Filled(2 * QueryLength, 0.5f);
        using var key = Filled(KvLength, 0.25f);
        using var value = Filled(KvLength, 0.75f);
        DenseCausal.Forward(Accelerator, shared.View.SubView(0, QueryLength), key.View, value.View, shared.View.SubView(QueryLength, QueryLength), Shape);
        Accelerator.Synchronize();
        // Every value row is 0.75, so every output element is 0.75 whatever the weights.
        Assert.All(shared.GetAsArray1D().AsSpan(QueryLength).ToArray(), element => Assert.Equal(0.75f, element, 1e-6f));
    }

    [Fact]
    public void ViewOnAnotherAcceleratorIsRejected()
    {
        using AttentionDevice other = AttentionDevice.Create(AttentionBackend.IlgpuCpu);
        using var query = Filled(QueryLength);
        using var key = Filled(KvLength);
        using var value = Filled(KvLength);
        using MemoryBuffer1D<float, Stride1D.Dense> foreignOutput = other.Accelerator!.Allocate1D<float>(QueryLength);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, query.View, key.View, value.View, foreignOutput.View, Shape));
        Assert.Equal("output", exception.ParamName);
        Assert.Contains("allocate it with that accelerator", exception.Message);
    }

    [Fact]
    public void DefaultViewIsRejected()
    {
        using var key = Filled(KvLength);
        using var value = Filled(KvLength);
        using var output = Filled(QueryLength);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, default, key.View, value.View, output.View, Shape));
        Assert.Equal("query", exception.ParamName);
    }

    /// <summary>
    /// A view keeps its buffer object after the buffer is disposed; launching on it read freed memory and killed the
    /// process from ILGPU's worker threads. Each of the four views is rejected, naming it, before anything is queued.
    /// </summary>
    [Theory]
    [InlineData("query")]
    [InlineData("key")]
    [InlineData("value")]
    [InlineData("output")]
    public void ViewOfADisposedBufferIsRejected(string parameter)
    {
        using var query = Filled(QueryLength);
        using var key = Filled(KvLength);
        using var value = Filled(KvLength);
        using var output = Filled(QueryLength);
        MemoryBuffer1D<float, Stride1D.Dense> disposed = Filled(parameter is "query" or "output" ? QueryLength : KvLength);
        ArrayView<float> view = disposed.View;
        disposed.Dispose();
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(
            Accelerator,
            parameter == "query" ? view : query.View,
            parameter == "key" ? view : key.View,
            parameter == "value" ? view : value.View,
            parameter == "output" ? view : output.View,
            Shape));
        Assert.Equal(parameter, exception.ParamName);
        Assert.Contains("disposed buffer", exception.Message);
    }

    [Fact]
    public void DisposedAcceleratorIsRejected()
    {
        AttentionDevice other = AttentionDevice.Create(AttentionBackend.IlgpuCpu);
        Accelerator accelerator = other.Accelerator!;
        other.Dispose();
        var onSpans = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(accelerator, new float[QueryLength], new float[KvLength], new float[KvLength], new float[QueryLength], Shape));
        Assert.Equal("accelerator", onSpans.ParamName);
        Assert.Throws<ObjectDisposedException>(() => DenseCausal.Forward(other, new float[QueryLength], new float[KvLength], new float[KvLength], new float[QueryLength], Shape));
    }

    [Fact]
    public void ShapeWhoseSizeWrapsSixtyFourBitsIsRejectedWithItsTrueSize()
    {
        using var buffer = Filled(64);
        using var output = Filled(64);
        // 2^30 heads x 2^29 tokens x 64 = 2^65 floats: a 64-bit product wraps to 0.
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, buffer.View, buffer.View, buffer.View, output.View, new AttentionShape(1 << 30, 1 << 30, 1 << 29)));
        Assert.Equal("shape", exception.ParamName);
        Assert.Contains("36893488147419103232", exception.Message);
    }

    [Fact]
    public void NullAcceleratorAndOptionsAreRejected()
    {
        using var query = Filled(QueryLength);
        using var key = Filled(KvLength);
        using var value = Filled(KvLength);
        using var output = Filled(QueryLength);
        Assert.Equal("accelerator", Assert.Throws<ArgumentNullException>(() => DenseCausal.Forward(null!, query.View, key.View, value.View, output.View, Shape)).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => DenseCausal.Forward(Accelerator, query.View, key.View, value.View, output.View, Shape, null!)).ParamName);
        Assert.Equal("device", Assert.Throws<ArgumentNullException>(() => DenseCausal.Forward((AttentionDevice)null!, new float[QueryLength], new float[KvLength], new float[KvLength], new float[QueryLength], Shape)).ParamName);
    }

    [Fact]
    public void SpanOverloadOnAnAcceleratorChecksLengthsBeforeCopying()
    {
        float[] output = Enumerable.Repeat(42f, QueryLength).ToArray();
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Accelerator, new float[QueryLength], new float[KvLength - 1], new float[KvLength], output, Shape));
        Assert.Equal("key", exception.ParamName);
        Assert.All(output, element => Assert.Equal(42f, element));
    }
}
