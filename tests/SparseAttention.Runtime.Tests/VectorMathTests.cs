using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SparseAttention.Cpu;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// The softmax's arithmetic at each vector width, against double precision: 2^x (a polynomial, and on AVX-512 the
/// hardware's scale), its cut-off to exactly 0, NaN in and out, and the score maxima by the hardware's max.
/// </summary>
public class VectorMathTests
{
    /// <summary>
    /// The largest relative error of 2^x the kernels accept: under 2 ulp of fp32 (2^-23 is 1.19e-7). The polynomial
    /// itself is within 1.1e-7; with float rounding every width measured within 2e-7 and not within 1.5e-7.
    /// </summary>
    private const double Tolerance = 2e-7;

    /// <summary>2^x at every width for x from -126 to 0 (where softmax lives: score minus the row's max) and on to +60.</summary>
    [Fact]
    public void Exp2_is_within_two_ulp_of_double_precision_at_every_width()
    {
        var random = new Random(5);
        var xs = Enumerable.Range(0, 20000).Select(_ => (float)(random.NextDouble() * 186 - 126))
            .Concat(new[] { 0f, -0f, -0.5f, 0.5f, -1f, -125.5f, -125.99f, 1e-8f, -1e-8f, 60f }).ToArray();
        foreach (float x in xs)
        {
            double expected = Math.Pow(2, x);
            foreach ((string width, float actual) in AtEveryWidth(x))
            {
                Assert.True(Math.Abs(actual - expected) <= Tolerance * expected, $"2^{x} at {width}: {actual}, expected {expected}.");
            }
        }
    }

    /// <summary>
    /// Below the cut-off 2^x is exactly 0 (a masked score, -inf, must give a probability of exactly 0), NaN stays NaN
    /// (the NaN/Inf policy), and +inf never gives a finite number (NaN, or +inf through AVX-512's scale; the softmax never
    /// passes +inf, whose max is at least every score).
    /// </summary>
    [Fact]
    public void Exp2_is_exactly_zero_far_below_and_NaN_for_NaN_and_infinity()
    {
        foreach (float x in new[] { float.NegativeInfinity, -1e30f, -1000f, -150f, -200.5f })
        {
            Assert.All(AtEveryWidth(x), result => Assert.Equal(0f, result.Value));
        }

        Assert.All(AtEveryWidth(float.NaN), result => Assert.True(float.IsNaN(result.Value), $"2^NaN at {result.Width}: {result.Value}."));

        // A NaN from the inputs keeps its payload through q·k and the max: the narrow widths' rounding shift leaves it in
        // the bits their scale is made of, so the scale must be multiplied in (an integer add to the exponent would turn
        // such a NaN into a number).
        foreach (int bits in new[] { 0x7FC001FF, unchecked((int)0xFFC00155), 0x7F800001, 0x7FFFFFFF })
        {
            float nan = BitConverter.Int32BitsToSingle(bits);
            Assert.All(AtEveryWidth(nan), result => Assert.True(float.IsNaN(result.Value), $"2^NaN(0x{bits:X8}) at {result.Width}: {result.Value}."));
        }
        Assert.All(AtEveryWidth(float.PositiveInfinity), result => Assert.False(float.IsFinite(result.Value), $"2^inf at {result.Width}: {result.Value}."));

        // Between -150 and -126 AVX-512's scale goes down through the subnormals; the other widths stop at -126.
        foreach (float x in new[] { -126f, -130f, -149f })
        {
            float value = VectorMath.Exp2(Vector512.Create(x)).ToScalar();
            if (Avx512F.IsSupported)
            {
                Assert.Equal(Math.Pow(2, x), value, (double)float.Epsilon);
            }
            else
            {
                Assert.Equal(0f, value);
            }

            Assert.Equal(0f, VectorMath.Exp2(Vector256.Create(x)).ToScalar());
            Assert.Equal(0f, VectorMath.Exp2(Vector128.Create(x)).ToScalar());
        }
    }

    /// <summary>The score maxima: the largest lane at each width, with masked -inf lanes and the largest lane anywhere.</summary>
    [Fact]
    public void MaxAcross_finds_the_largest_lane_at_every_width()
    {
        var random = new Random(9);
        for (int trial = 0; trial < 200; trial++)
        {
            float[] lanes = Enumerable.Range(0, 16).Select(_ => random.Next(4) == 0 ? float.NegativeInfinity : (float)(random.NextDouble() * 200 - 100)).ToArray();
            lanes[random.Next(16)] = (float)(random.NextDouble() * 10);
            Assert.Equal(lanes.Max(), VectorMath.MaxAcross(Vector512.Create(lanes)));
            Assert.Equal(lanes.Take(8).Max(), VectorMath.MaxAcross(Vector256.Create(lanes)));
            Assert.Equal(lanes.Take(4).Max(), VectorMath.MaxAcross(Vector128.Create(lanes)));
            Assert.Equal(lanes.Take(4).Max(), VectorMath.MaxAcross(VectorMath.ScoreMax(Vector128.Create(lanes), Vector128.Create(lanes.Skip(4).Take(4).Select(_ => float.NegativeInfinity).ToArray()))));
        }

        Assert.Equal(float.NegativeInfinity, VectorMath.MaxAcross(Vector512.Create(float.NegativeInfinity)));
        Assert.True(VectorMath.AnyNaN(Vector512.Create(1f).WithElement(13, float.NaN)));
        Assert.False(VectorMath.AnyNaN(Vector512.Create(float.NegativeInfinity).WithElement(13, float.PositiveInfinity)));
        Assert.True(VectorMath.AnyNaN(Vector256.Create(1f).WithElement(7, float.NaN)));
        Assert.True(VectorMath.AnyNaN(Vector128.Create(1f).WithElement(0, float.NaN)));
    }

    private static IEnumerable<(string Width, float Value)> AtEveryWidth(float x)
    {
        yield return ("Vector512", VectorMath.Exp2(Vector512.Create(x)).GetElement(7));
        yield return ("Vector256", VectorMath.Exp2(Vector256.Create(x)).GetElement(3));
        yield return ("Vector128", VectorMath.Exp2(Vector128.Create(x)).GetElement(1));
        yield return ("scalar", VectorMath.Exp2(x));
    }
}
