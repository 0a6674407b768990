using System;
using System.Globalization;
using System.Text;

namespace SparseAttention;

// Runtime only (not linked into the generator): pictures are for people, not for code generation.
public sealed partial class AttentionPattern
{
    /// <summary>
    /// Draws the pattern's mask for <paramref name="seqLength"/> tokens in query head <paramref name="head"/> as an SVG
    /// image: one square per (query, key) pair, queries top to bottom and keys left to right, visible pairs filled.
    /// Global rows and columns (global tokens, BigBird's global blocks) are drawn in a second colour so the components can be told apart. The output depends
    /// only on the arguments, so the pictures in docs/ can be regenerated and compared.
    /// </summary>
    /// <param name="seqLength">Tokens on each axis, 1 to 256.</param>
    /// <param name="head">The query head (matters only for per-head dilation).</param>
    /// <param name="cellSize">Side of one square in pixels, 2 to 64.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is outside its range.</exception>
    public string ToSvg(int seqLength, int head = 0, int cellSize = 12)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(seqLength, 256);
        ArgumentOutOfRangeException.ThrowIfNegative(head);
        ArgumentOutOfRangeException.ThrowIfLessThan(cellSize, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cellSize, 64);

        const string Visible = "#1f5fbf", GlobalVisible = "#e08a00", Hidden = "#eef0f3", Grid = "#ffffff";
        int side = seqLength * cellSize;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{side}\" height=\"{side}\" viewBox=\"0 0 {side} {side}\" role=\"img\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"  <title>{this}; n = {seqLength}, head {head}; row = query, column = key; {VisiblePairs(seqLength, head + 1) - VisiblePairs(seqLength, head)} visible pairs</title>\n");
        svg.Append(CultureInfo.InvariantCulture, $"  <rect width=\"{side}\" height=\"{side}\" fill=\"{Grid}\"/>\n");
        for (int query = 0; query < seqLength; query++)
        {
            for (int key = 0; key < seqLength; key++)
            {
                string fill = !IsVisible(query, key, head, seqLength) ? Hidden : IsGlobalPair(query, key, head, seqLength) ? GlobalVisible : Visible;
                svg.Append(CultureInfo.InvariantCulture, $"  <rect x=\"{key * cellSize}\" y=\"{query * cellSize}\" width=\"{cellSize - 1}\" height=\"{cellSize - 1}\" fill=\"{fill}\"/>\n");
            }
        }

        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>Whether a visible pair comes through a global row or column (drawn in the second colour).</summary>
    private bool IsGlobalPair(int query, int key, int head, int seqLength)
    {
        foreach (PatternComponent component in Components)
        {
            if (component.IsGlobalPair(query, key, head, seqLength))
            {
                return true;
            }
        }

        return false;
    }
}
