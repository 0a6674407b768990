using SparseAttention.Gpu;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>The arithmetic the ILGPU kernels use in place of MathF.Exp and the tile classification's core test.</summary>
public class GpuMathTests
{
    [Fact]
    public void Exp2MatchesMathWithinARelativeErrorOf3e7()
    {
        var random = new Random(4);
        for (int i = 0; i < 200_000; i++)
        {
            float x = (float)(random.NextDouble() * -126);
            double expected = Math.Pow(2, x);
            double actual = GpuMath.Exp2(x);
            Assert.True(Math.Abs(actual - expected) <= 3e-7 * expected, $"Exp2({x}) = {actual}, expected {expected}");
        }
    }

    [Theory]
    [InlineData(0f, 1f)]
    [InlineData(-1f, 0.5f)]
    [InlineData(-0.5f, 0.70710678f)]
    [InlineData(3f, 8f)]
    [InlineData(float.NegativeInfinity, 0f)]
    [InlineData(-127f, 0f)]
    [InlineData(-1000f, 0f)]
    public void Exp2AtTheEdges(float x, float expected) => Assert.Equal(expected, GpuMath.Exp2(x), 6);

    [Fact]
    public void RangeHoldsMultipleAgreesWithEnumeration()
    {
        for (long step = 1; step <= 9; step++)
        {
            for (long low = -25; low <= 25; low++)
            {
                for (long high = low - 2; high <= 25; high++)
                {
                    bool expected = false;
                    for (long value = low; value <= high; value++)
                    {
                        expected |= value % step == 0;
                    }

                    Assert.True(expected == GpuMath.RangeHoldsMultiple(low, high, step), $"[{low}, {high}] step {step}");
                }
            }
        }
    }
}
