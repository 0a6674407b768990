using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>Wrong calls get an ArgumentException naming the parameter and the sizes, and write nothing.</summary>
public class ArgumentValidationTests
{
    private const int D = DenseCausal.HeadDim;
    private static readonly AttentionShape Shape = new(Heads: 4, KvHeads: 2, SeqLen: 10);

    private static float[] Buffer(int length) => new float[length];

    [Theory]
    [InlineData("query", -1, 0, 0, 0)]
    [InlineData("query", 1, 0, 0, 0)]
    [InlineData("key", 0, -D, 0, 0)]
    [InlineData("value", 0, 0, 7, 0)]
    [InlineData("output", 0, 0, 0, -1)]
    public void WrongSpanLengthNamesTheParameterAndBothSizes(string parameter, int queryDelta, int keyDelta, int valueDelta, int outputDelta)
    {
        int queryLength = Shape.Heads * Shape.SeqLen * D, kvLength = Shape.KvHeads * Shape.SeqLen * D;
        float[] output = Buffer(queryLength + outputDelta);
        Array.Fill(output, 42f);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Buffer(queryLength + queryDelta), Buffer(kvLength + keyDelta), Buffer(kvLength + valueDelta), output, Shape));
        Assert.Equal(parameter, exception.ParamName);
        int expected = parameter is "query" or "output" ? queryLength : kvLength;
        int actual = expected + (parameter switch { "query" => queryDelta, "key" => keyDelta, "value" => valueDelta, _ => outputDelta });
        Assert.Contains(expected.ToString(), exception.Message);
        Assert.Contains(actual.ToString(), exception.Message);
        Assert.All(output, value => Assert.Equal(42f, value));
    }

    [Theory]
    [InlineData(6, 4, 10, "multiple of KvHeads")]
    [InlineData(0, 1, 10, "at least 1")]
    [InlineData(2, 0, 10, "at least 1")]
    [InlineData(2, 2, 0, "at least 1")]
    [InlineData(-2, 2, 5, "at least 1")]
    public void ImpossibleShapeIsRejectedAsShape(int heads, int kvHeads, int seqLen, string message)
    {
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Buffer(64), Buffer(64), Buffer(64), Buffer(64), new AttentionShape(heads, kvHeads, seqLen)));
        Assert.Equal("shape", exception.ParamName);
        Assert.Contains(message, exception.Message);
    }

    [Fact]
    public void ShapeTooLargeForASpanIsRejectedAsShape()
    {
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(Buffer(64), Buffer(64), Buffer(64), Buffer(64), new AttentionShape(1024, 1024, 1 << 20)));
        Assert.Equal("shape", exception.ParamName);
    }

    /// <summary>
    /// Shapes whose element counts overflow 64 bits: (2^30, 2^30, 2^29) at HeadDim 64 is 2^65 floats, which a long
    /// product wrapped to 0, so empty spans passed and Forward returned (and a dense kernel ran 5 s, then threw
    /// OverflowException). The message gives the true size, never a wrapped or negative one.
    /// </summary>
    [Theory]
    [InlineData(1 << 30, 1 << 30, 1 << 29, 64, "36893488147419103232")]
    [InlineData(1 << 30, 1 << 30, 1 << 30, 8, "9223372036854775808")]
    [InlineData(int.MaxValue, 1, int.MaxValue, 64, "295147904904474918976")]
    public void ShapeWhoseSizeWrapsSixtyFourBitsIsRejectedWithItsTrueSize(int heads, int kvHeads, int seqLen, int headDim, string trueSize)
    {
        ForwardWithOptions forward = headDim == 8 ? SmallWindowHeadDim8.Forward : DenseCausal.Forward;
        var exception = Assert.Throws<ArgumentException>(() => forward(default, default, default, default, new AttentionShape(heads, kvHeads, seqLen), AttentionOptions.Default));
        Assert.Equal("shape", exception.ParamName);
        Assert.Contains(trueSize, exception.Message);
        Assert.DoesNotContain("-", exception.Message.Split("floats")[0]);
        var reference = Assert.Throws<ArgumentException>(() => ReferenceAttention.Forward(DenseCausal.Pattern, new float[64], default, default, new float[64], new AttentionShape(heads, kvHeads, seqLen)));
        Assert.Contains(reference.ParamName, new[] { "shape", "query" });
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    [InlineData(0f)]
    [InlineData(-0.125f)]
    [InlineData(float.MaxValue)]
    [InlineData(2.4e38f)]
    public void ScaleThatIsNotAFinitePositiveBase2ScaleIsRejected(float scale)
    {
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOptions { Scale = scale });
        Assert.Equal("Scale", exception.ParamName);
        Assert.Contains("greater than 0", exception.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => AttentionOptions.Default with { Scale = scale });
    }

    [Fact]
    public void LargestScaleIsAcceptedAndIsTheLastOneFiniteInBaseTwo()
    {
        float largest = AttentionOptions.MaxScale;
        Assert.True(float.IsFinite(largest * Cpu.VectorMath.Log2E));
        Assert.False(float.IsFinite(MathF.BitIncrement(largest) * Cpu.VectorMath.Log2E));
        Assert.Equal(largest, new AttentionOptions { Scale = largest }.Scale);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOptions { Scale = MathF.BitIncrement(largest) });
        Assert.Equal(float.Epsilon, new AttentionOptions { Scale = float.Epsilon }.Scale);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void MaxDegreeOfParallelismBelowOneIsRejected(int threads)
    {
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOptions { MaxDegreeOfParallelism = threads });
        Assert.Equal("MaxDegreeOfParallelism", exception.ParamName);
        Assert.Equal(1, new AttentionOptions { MaxDegreeOfParallelism = 1 }.MaxDegreeOfParallelism);
        Assert.Null(new AttentionOptions { MaxDegreeOfParallelism = null }.MaxDegreeOfParallelism);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(5)]
    [InlineData(99)]
    public void UndefinedIsaIsRejected(int value)
    {
        var exception = Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOptions { Isa = (KernelIsa)value });
        Assert.Equal("Isa", exception.ParamName);
        Assert.Contains("Vector512", exception.Message);
    }

    [Fact]
    public void OutputOverlappingAnInputIsRejected()
    {
        int length = Shape.Heads * Shape.SeqLen * D, kvLength = Shape.KvHeads * Shape.SeqLen * D;
        float[] shared = Buffer(length);
        var exception = Assert.Throws<ArgumentException>(() => DenseCausal.Forward(shared, Buffer(kvLength), Buffer(kvLength), shared, Shape));
        Assert.Equal("output", exception.ParamName);
    }

    [Fact]
    public void NullOptionsAreRejected()
    {
        Assert.Throws<ArgumentNullException>(() => DenseCausal.Forward(Buffer(1), Buffer(1), Buffer(1), Buffer(1), Shape, null!));
    }

    [Fact]
    public void NothingIsWrittenOutsideOutput()
    {
        var random = new Random(1);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, Shape, D);
        int length = inputs.Query.Length;
        float[] padded = new float[length + 64];
        Array.Fill(padded, float.NaN);
        float[] queryCopy = (float[])inputs.Query.Clone(), keyCopy = (float[])inputs.Key.Clone(), valueCopy = (float[])inputs.Value.Clone();
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            DenseCausal.Forward(inputs.Query, inputs.Key, inputs.Value, padded.AsSpan(32, length), Shape, new AttentionOptions { Isa = isa });
            Assert.All(padded.Take(32).Concat(padded.Skip(32 + length)), value => Assert.True(float.IsNaN(value)));
            Assert.All(padded.Skip(32).Take(length), value => Assert.False(float.IsNaN(value)));
        }

        Assert.Equal(queryCopy, inputs.Query);
        Assert.Equal(keyCopy, inputs.Key);
        Assert.Equal(valueCopy, inputs.Value);
    }

    [Fact]
    public void ReferenceValidatesTheSameWay()
    {
        var exception = Assert.Throws<ArgumentException>(() => ReferenceAttention.Forward(DenseCausal.Pattern, Buffer(Shape.Heads * Shape.SeqLen * D), Buffer(3), Buffer(3), Buffer(Shape.Heads * Shape.SeqLen * D), Shape));
        Assert.Equal("key", exception.ParamName);
    }
}
