using System.Globalization;

namespace SparseAttention.Generators.Tests;

/// <summary>Generated code must not depend on the culture the compiler happens to run under.</summary>
public class CultureTests
{
    [Fact]
    public void OutputIsTheSameUnderACultureWithOtherNumberFormats()
    {
        const string source = """
            using SparseAttention;
            [AttentionKernel(HeadDim = 64, Causal = false)]
            [SlidingWindow(Left = 1000, Right = 2000)]
            [Dilation(1, 2)]
            [GlobalTokens(0, 12345)]
            [Strided(Stride = 4096)]
            public static partial class K;
            """;
        string invariant = Generate(CultureInfo.InvariantCulture);
        var odd = (CultureInfo)CultureInfo.GetCultureInfo("sv-SE").Clone();
        odd.NumberFormat.NegativeSign = "\u2212";
        odd.NumberFormat.NumberGroupSeparator = "\u00A0";
        Assert.Equal(invariant, Generate(odd));
        Assert.Equal(invariant, Generate(CultureInfo.GetCultureInfo("ar-SA")));

        string Generate(CultureInfo culture)
        {
            CultureInfo previous = CultureInfo.CurrentCulture;
            try
            {
                CultureInfo.CurrentCulture = culture;
                return GeneratorHarness.Run(source).Source("K");
            }
            finally
            {
                CultureInfo.CurrentCulture = previous;
            }
        }
    }
}
