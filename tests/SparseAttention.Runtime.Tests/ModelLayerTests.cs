using SparseAttention.Runtime.Tests.Decode;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

// Today's sliding-window models at their real head shapes (issue 14): each runs Forward, Prefill and Decode against the
// reference with the same modifiers. Sequences are a few hundred tokens, so the reference stays quick; the 4096 windows
// are then not exceeded (gpt-oss's 128 window is), which the window kernels' own tests cover at small sizes.

/// <summary>Gemma 2 9B's local layers: HeadDim 256, a 4096 window, attention logits capped at 50.</summary>
[AttentionKernel(HeadDim = 256)]
[SlidingWindow(Size = 4096)]
[Softcap(50)]
public static partial class Gemma2LocalLayer;

/// <summary>gpt-oss 20B's sliding layers: HeadDim 64, a 128 window, a learned sink per head.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 128)]
[LearnedSinks]
public static partial class GptOssSlidingLayer;

/// <summary>Mistral 7B: HeadDim 128, a 4096 window.</summary>
[AttentionKernel(HeadDim = 128)]
[SlidingWindow(Size = 4096)]
public static partial class Mistral7BLayer;

/// <summary>A BLOOM/MPT-style layer: dense causal with ALiBi, at a head count that is not a power of two.</summary>
[AttentionKernel(HeadDim = 128)]
[Alibi]
public static partial class AlibiCausalLayer;

/// <summary>Packed documents in one causal sequence: a query sees only keys of its own document.</summary>
[AttentionKernel(HeadDim = 64)]
[AttentionMask(nameof(SameDocument))]
public static partial class PackedDocumentsLayer
{
    /// <summary>Document of each position: lengths 37, 120, 1, 64 and the rest, as a data loader packs them.</summary>
    internal static readonly int[] Documents = Enumerable.Range(0, 1024).Select(position => position < 37 ? 0 : position < 157 ? 1 : position < 158 ? 2 : position < 222 ? 3 : 4).ToArray();

    private static bool SameDocument(int query, int key, int head) => Documents[query] == Documents[key];
}

[Collection(Gpu.IlgpuCpuCollection.Name)]
public class ModelLayerTests(Gpu.IlgpuCpuDevice fixture)
{
    [Theory]
    [InlineData(nameof(Gemma2LocalLayer), 16, 8, 384)]
    [InlineData(nameof(Mistral7BLayer), 32, 8, 320)]
    [InlineData(nameof(AlibiCausalLayer), 12, 12, 300)]
    [InlineData(nameof(PackedDocumentsLayer), 8, 8, 300)]
    public void ForwardPrefillAndDecodeMatchTheReference(string name, int heads, int kvHeads, int seqLen)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(ModelLayerTests).Assembly.GetType("SparseAttention.Runtime.Tests." + name, throwOnError: true)!);
        var random = new Random(seqLen + heads);
        var stream = StreamCase.Create(kernel, random, length: seqLen, heads: (heads, kvHeads));
        AttentionCheck.AssertClose(stream.Expected, AttentionCheck.Run(kernel, stream.Inputs, AttentionOptions.Default), stream.Shape, kernel.HeadDim, $"{name} Forward");
        if (!kernel.Pattern.SupportsStreaming)
        {
            // Dense causal (ALiBi, packed documents) reaches unboundedly far back: decode refuses it (SPA0011).
            Assert.Throws<NotSupportedException>(() => kernel.Streaming!.CreateCache(kvHeads));
            return;
        }

        KvCache cache = kernel.Streaming!.CreateCache(kvHeads);
        int prompt = seqLen - 24;
        stream.AssertRows(stream.Prefill(cache, 0, prompt, AttentionOptions.Default), 0, prompt, "prefill");
        for (int position = prompt; position < seqLen; position++)
        {
            cache.Append(stream.TokenKeys(position), stream.TokenValues(position));
            stream.AssertRow(stream.DecodeNewest(cache, AttentionOptions.Default), position, "decode");
        }
    }

    [Fact]
    public void GptOssSlidingLayerWithItsSinksMatchesTheReference()
    {
        // 64 query heads over 8 KV heads, 400 tokens: past the 128 window, with a learned sink logit per head.
        var shape = new AttentionShape(64, 8, 400);
        var random = new Random(20);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, GptOssSlidingLayer.HeadDim);
        float[] sinks = AttentionCheck.RandomArray(random, shape.Heads, 2f);
        var expected = new float[inputs.Query.Length];
        ReferenceAttention.Forward(GptOssSlidingLayer.Pattern, GptOssSlidingLayer.Scores, inputs.Query, inputs.Key, inputs.Value, sinks, expected, Span<float>.Empty, shape);
        var actual = new float[expected.Length];
        GptOssSlidingLayer.Forward(inputs.Query, inputs.Key, inputs.Value, sinks, actual, shape);
        AttentionCheck.AssertClose(expected, actual, shape, GptOssSlidingLayer.HeadDim, "gpt-oss Forward");

        // Prefill 380 tokens (chunks of the 128 ring), then decode the rest token by token.
        int d = GptOssSlidingLayer.HeadDim, prompt = 380;
        KvCache cache = GptOssSlidingLayer.CreateCache(shape.KvHeads);
        float[] Rows(float[] tensor, int count, int first, int length) =>
            Enumerable.Range(0, count).SelectMany(head => tensor.AsSpan((head * shape.SeqLen + first) * d, length * d).ToArray()).ToArray();
        var promptOutput = new float[shape.Heads * prompt * d];
        GptOssSlidingLayer.Prefill(Rows(inputs.Query, shape.Heads, 0, prompt), Rows(inputs.Key, shape.KvHeads, 0, prompt), Rows(inputs.Value, shape.KvHeads, 0, prompt), sinks, promptOutput, shape with { SeqLen = prompt }, cache);
        AttentionCheck.AssertClose(Rows(expected, shape.Heads, 0, prompt), promptOutput, shape with { SeqLen = prompt }, d, "gpt-oss prefill");
        for (int position = prompt; position < shape.SeqLen; position++)
        {
            cache.Append(Rows(inputs.Key, shape.KvHeads, position, 1), Rows(inputs.Value, shape.KvHeads, position, 1));
            var row = new float[shape.Heads * d];
            GptOssSlidingLayer.Decode(Rows(inputs.Query, shape.Heads, position, 1), sinks, cache, row);
            AttentionCheck.AssertClose(Rows(expected, shape.Heads, position, 1), row, shape with { SeqLen = 1 }, d, $"gpt-oss decode at {position}");
        }
    }

    [Theory]
    [InlineData(nameof(Gemma2LocalLayer), 4, 2, 70)]
    [InlineData(nameof(Mistral7BLayer), 4, 2, 70)]
    [InlineData(nameof(AlibiCausalLayer), 12, 12, 40)]
    [InlineData(nameof(PackedDocumentsLayer), 2, 1, 240)]
    [InlineData(nameof(GptOssSlidingLayer), 8, 2, 300)]
    public void EveryLayerRunsOnTheIlgpuCpuAccelerator(string name, int heads, int kvHeads, int seqLen)
    {
        // The GPU kernels at the layers' head shapes, on ILGPU's CPU accelerator: the packed documents' mask is compiled
        // into its own kernel (reading the document table), gpt-oss's sinks come with the call.
        var shape = new AttentionShape(heads, kvHeads, seqLen);
        var random = new Random(seqLen);
        AttentionDevice device = fixture.Device; // one accelerator for the run: each new one compiles the kernels again
        if (name != nameof(GptOssSlidingLayer))
        {
            KernelUnderTest kernel = KernelUnderTest.FromType(typeof(ModelLayerTests).Assembly.GetType("SparseAttention.Runtime.Tests." + name, throwOnError: true)!);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            AttentionCheck.AssertClose(AttentionCheck.Reference(kernel, inputs), AttentionCheck.RunOnAccelerator(kernel, inputs, device.Accelerator!), shape, kernel.HeadDim, $"{name} on ILGPU");
            return;
        }

        AttentionCheck.Inputs sinkInputs = AttentionCheck.RandomInputs(random, shape, GptOssSlidingLayer.HeadDim);
        float[] sinks = AttentionCheck.RandomArray(random, heads, 2f);
        var expected = new float[sinkInputs.Query.Length];
        ReferenceAttention.Forward(GptOssSlidingLayer.Pattern, GptOssSlidingLayer.Scores, sinkInputs.Query, sinkInputs.Key, sinkInputs.Value, sinks, expected, Span<float>.Empty, shape);
        var actual = new float[expected.Length];
        GptOssSlidingLayer.Forward(device, sinkInputs.Query, sinkInputs.Key, sinkInputs.Value, sinks, actual, shape);
        AttentionCheck.AssertClose(expected, actual, shape, GptOssSlidingLayer.HeadDim, "gpt-oss on ILGPU");
    }
}
