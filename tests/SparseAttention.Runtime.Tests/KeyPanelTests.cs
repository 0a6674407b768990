using SparseAttention.Cpu;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>
/// Key packing (the tile kernels' key panels) against the definition, element by element: panel p of residue stream r
/// holds stream keys p x lanes .. + lanes - 1 dimension by dimension, scaled, zero past the stream's end; for each panel
/// width the transposes pack (16 x 16 on AVX-512, 8 x 8 on AVX, 4 x 4 on SSE), with dense and view row strides, dilations,
/// and streams that end inside a panel.
/// </summary>
public class KeyPanelTests
{
    [Theory]
    [InlineData(16, 64, 1, 64)]
    [InlineData(16, 128, 3, 64)]
    [InlineData(16, 16, 2, 40)]
    [InlineData(8, 64, 1, 64)]
    [InlineData(8, 24, 2, 320)]
    [InlineData(4, 8, 3, 8)]
    [InlineData(4, 36, 1, 100)]
    public unsafe void PanelsHoldEachStreamKeyDimensionByDimensionScaledAndZeroPastTheEnd(int lanes, int headDim, int dilation, int rowStride)
    {
        const int seqLen = 101, keyTile = 32;
        const float scale = 0.37f;
        var random = new Random(lanes * 1000 + headDim + dilation);
        float[] keys = AttentionCheck.RandomArray(random, (seqLen - 1) * rowStride + headDim);
        var panels = new float[KeyPanels.FloatsPerKvHead(seqLen, dilation, headDim, lanes, keyTile)];
        fixed (float* source = keys, destination = panels)
        {
            KeyPanels.Pack(source, rowStride, seqLen, headDim, dilation, lanes, keyTile, scale, destination);
        }

        for (int residue = 0; residue < dilation; residue++)
        {
            long offset = KeyPanels.StreamOffset(seqLen, dilation, residue, headDim, lanes, keyTile);
            int length = KeyPanels.StreamLength(seqLen, dilation, residue), panelCount = KeyPanels.PanelsPerStream(length, lanes, keyTile);
            for (int panel = 0; panel < panelCount; panel++)
            {
                for (int d = 0; d < headDim; d++)
                {
                    for (int lane = 0; lane < lanes; lane++)
                    {
                        int streamKey = panel * lanes + lane;
                        float expected = streamKey < length ? keys[(residue + (long)streamKey * dilation) * rowStride + d] * scale : 0f;
                        float actual = panels[offset + ((long)panel * headDim + d) * lanes + lane];
                        Assert.True(expected == actual, $"lanes {lanes}, residue {residue}, panel {panel}, dimension {d}, lane {lane}: {actual}, expected {expected}");
                    }
                }
            }
        }
    }
}
