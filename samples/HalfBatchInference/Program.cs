// A .NET inference engine's view of attention (issue 15): its projections produced Q, K and V as [Batch, SeqLen,
// Heads x HeadDim] in fp16, for several sequences at once. This sample
//   1. runs the batch through a TensorSpan *view* of those buffers (logical [B, H, S, D], strides of the [B, S, H, D]
//      memory), without transposing or widening anything itself, and checks sample rows against the fp32 reference;
//   2. keeps a Half KV cache per stream and decodes the newest token of every stream in one call (continuous batching).
using System.Diagnostics;
using System.Numerics.Tensors;
using SparseAttention;

const int Batch = 4, SeqLen = 2048, Heads = 8, KvHeads = 2, HeadDim = SlidingWindowHalf.HeadDim;
var random = new Random(1);

// Projection outputs, as a model produces them: [B, S, KvHeads or Heads x HeadDim], fp16.
Half[] query = RandomHalves(Batch * SeqLen * Heads * HeadDim), key = RandomHalves(Batch * SeqLen * KvHeads * HeadDim), value = RandomHalves(Batch * SeqLen * KvHeads * HeadDim);
var output = new Half[query.Length];

// The same memory seen as [B, H, S, D]: only the strides change.
TensorSpan<Half> View(Half[] buffer, int heads) =>
    new(buffer, new nint[] { Batch, heads, SeqLen, HeadDim }, new nint[] { (nint)SeqLen * heads * HeadDim, HeadDim, (nint)heads * HeadDim, 1 });

SlidingWindowHalf.Forward<Half>(View(query, Heads), View(key, KvHeads), View(value, KvHeads), View(output, Heads)); // warm-up (JIT)
var watch = Stopwatch.StartNew();
SlidingWindowHalf.Forward<Half>(View(query, Heads), View(key, KvHeads), View(value, KvHeads), View(output, Heads));
double forwardMs = watch.Elapsed.TotalMilliseconds;
long pairs = Batch * SlidingWindowHalf.Pattern.VisiblePairs(SeqLen, Heads);
Console.WriteLine($"Forward over a batch of {Batch} x {SeqLen} tokens, {Heads} heads over {KvHeads} KV heads, Half [B, S, H*D] buffers through a strided view: {forwardMs:F1} ms ({pairs * 4.0 * HeadDim / (forwardMs * 1e-3) / 1e9:F1} GFLOP/s).");

// Check sample rows against the fp32 reference on the widened inputs (tolerance: the reference rounded to Half, 2^-10 relative).
double worst = 0;
foreach ((int b, int h, int s) in new[] { (0, 0, 0), (1, 3, 700), (3, 7, SeqLen - 1), (2, 5, 1500) })
{
    var shape = new AttentionShape(Heads, KvHeads, SeqLen);
    var row = new double[HeadDim];
    ReferenceAttention.ComputeRow(SlidingWindowHalf.Pattern, Widen(query, b, Heads), Widen(key, b, KvHeads), Widen(value, b, KvHeads), shape, h, s, row);
    for (int d = 0; d < HeadDim; d++)
    {
        double got = (double)output[((b * SeqLen + s) * Heads + h) * HeadDim + d];
        worst = Math.Max(worst, Math.Abs(got - (double)(Half)row[d]) / Math.Max(1, Math.Abs(row[d])));
    }
}

Console.WriteLine($"Sample rows against the fp32 reference: largest difference {worst:E1} (one Half ulp is {Math.Pow(2, -10):E1}) {(worst <= Math.Pow(2, -10) ? "ok" : "TOO LARGE")}.");

// Continuous batching: one Half cache per stream, streams at different positions, one Decode call for all of them.
const int Streams = 6;
KvCache[] caches = Enumerable.Range(0, Streams).Select(_ => SlidingWindowHalf.CreateCache(KvHeads, CacheElement.Half)).ToArray();
for (int stream = 0; stream < Streams; stream++)
{
    for (int token = 0; token < 300 * (stream + 1); token++)
    {
        float[] kv = RandomFloats(KvHeads * HeadDim);
        caches[stream].Append(kv, kv);
    }
}

float[] queries = RandomFloats(Streams * Heads * HeadDim);
var outputs = new float[queries.Length];
watch.Restart();
const int Steps = 50;
for (int step = 0; step < Steps; step++)
{
    foreach (KvCache cache in caches)
    {
        float[] kv = RandomFloats(KvHeads * HeadDim);
        cache.Append(kv, kv);
    }

    SlidingWindowHalf.Decode(queries, caches, outputs);
}

Console.WriteLine($"Decoded {Streams} streams (positions {string.Join(", ", caches.Select(cache => cache.Count))}) {Steps} steps: {watch.Elapsed.TotalMilliseconds / Steps:F2} ms per step; "
    + $"each Half cache holds {caches[0].MemoryBytes / 1024} KiB (fp32 would be {2 * caches[0].MemoryBytes / 1024} KiB).");
return worst <= Math.Pow(2, -10) ? 0 : 1;

Half[] RandomHalves(int length) => Enumerable.Range(0, length).Select(_ => (Half)(random.NextSingle() * 3 - 1.5f)).ToArray();

float[] RandomFloats(int length) => Enumerable.Range(0, length).Select(_ => random.NextSingle() * 3 - 1.5f).ToArray();

// One sequence of a [B, S, heads x D] Half buffer, widened to the reference's [heads, S, D] fp32 layout.
float[] Widen(Half[] buffer, int b, int heads)
{
    var result = new float[heads * SeqLen * HeadDim];
    for (int h = 0; h < heads; h++)
        for (int s = 0; s < SeqLen; s++)
            for (int d = 0; d < HeadDim; d++)
                result[(h * SeqLen + s) * HeadDim + d] = (float)buffer[((b * SeqLen + s) * heads + h) * HeadDim + d];
    return result;
}

/// <summary>A Mistral-style sliding window, at a small head size so the sample runs in seconds.</summary>
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 512)]
public static partial class SlidingWindowHalf;
