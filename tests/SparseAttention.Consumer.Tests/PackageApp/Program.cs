// A user's program that knows SparseAttention only as the NuGet package: two declared patterns, run on the CPU
// and on ILGPU's CPU accelerator, each checked against the package's own ReferenceAttention.
using SparseAttention;

var random = new Random(7);
int failures = 0;
failures += Check("sliding window", WindowAttention.HeadDim, WindowAttention.Pattern, WindowAttention.Forward, new AttentionShape(Heads: 8, KvHeads: 2, SeqLen: 333));
failures += Check("longformer", Longformer.HeadDim, Longformer.Pattern, Longformer.Forward, new AttentionShape(Heads: 4, KvHeads: 4, SeqLen: 200));
using (var device = AttentionDevice.Create(AttentionBackend.IlgpuCpu))
{
    failures += Check("longformer on ILGPU", Longformer.HeadDim, Longformer.Pattern, (q, k, v, o, s) => Longformer.Forward(device, q, k, v, o, s), new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 70));
}

Console.WriteLine(failures == 0 ? "package consumer: all patterns match" : $"package consumer: {failures} pattern(s) differ");
return failures == 0 ? 0 : 1;

int Check(string name, int headDim, AttentionPattern pattern, Forward forward, AttentionShape shape)
{
    float[] Fill(int length) => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 3 - 1.5)).ToArray();
    float[] query = Fill(shape.Heads * shape.SeqLen * headDim), key = Fill(shape.KvHeads * shape.SeqLen * headDim), value = Fill(key.Length);
    var output = new float[query.Length];
    var expected = new float[query.Length];
    forward(query, key, value, output, shape);
    ReferenceAttention.Forward(pattern, query, key, value, expected, shape);
    double worst = expected.Zip(output, (e, a) => Math.Abs((double)e - a)).Max();
    Console.WriteLine($"{name}: max abs error {worst:E2}");
    return worst <= 1e-4 ? 0 : 1;
}

delegate void Forward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape);

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 100)]
static partial class WindowAttention;

[AttentionKernel(HeadDim = 32, Causal = false)]
[SlidingWindow(Left = 8, Right = 8)]
[Dilation(1, 2)]
[GlobalTokens(0, 1)]
static partial class Longformer;
