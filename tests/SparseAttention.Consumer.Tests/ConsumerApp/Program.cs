// A user's program, written only from the README and docs/design.md: it declares its own patterns and checks the generated
// kernels against its own naive attention, which does not use anything from SparseAttention but the calls.
using SparseAttention;

var random = new Random(123);
var failures = 0;
failures += Check("mistral-like", MistralLike.HeadDim, MistralLike.Forward, (i, j, h) => j <= i && i - j < 64, new AttentionShape(8, 2, 300));
failures += Check("longformer-like", LongformerLike.HeadDim, LongformerLike.Forward,
    (i, j, h) => ((j - i) % 2 == 0 && j - i >= -2 * 16 && j - i <= 2 * 16) || i is 0 or 1 || j is 0 or 1, new AttentionShape(4, 4, 257));
failures += Check("strided", Strided.HeadDim, Strided.Forward, (i, j, h) => j <= i && (i - j < 32 || (i - j) % 32 == 0), new AttentionShape(2, 1, 400));
failures += Check("per-head-dilation", PerHead.HeadDim, PerHead.Forward,
    (i, j, h) => { int d = h % 2 == 0 ? 1 : 3; return j <= i && (i - j) % d == 0 && (i - j) / d <= 10; }, new AttentionShape(4, 2, 150));
// The generated ILGPU kernel, on ILGPU's CPU accelerator (the same code a GPU runs; named so it runs anywhere).
using (var device = AttentionDevice.Create(AttentionBackend.IlgpuCpu))
{
    failures += Check("longformer-like on " + device.Backend, LongformerLike.HeadDim, (q, k, v, o, shape) => LongformerLike.Forward(device, q, k, v, o, shape),
        (i, j, h) => ((j - i) % 2 == 0 && j - i >= -2 * 16 && j - i <= 2 * 16) || i is 0 or 1 || j is 0 or 1, new AttentionShape(4, 2, 130));
}

Console.WriteLine(failures == 0 ? "consumer: all patterns match" : $"consumer: {failures} pattern(s) differ");
return failures == 0 ? 0 : 1;

int Check(string name, int headDim, ForwardFn forward, Func<int, int, int, bool> visible, AttentionShape shape)
{
    float[] Fill(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 3 - 1.5)).ToArray();
    float[] q = Fill(shape.Heads * shape.SeqLen * headDim), k = Fill(shape.KvHeads * shape.SeqLen * headDim), v = Fill(k.Length);
    var output = new float[q.Length];
    forward(q, k, v, output, shape);
    double worst = 0;
    for (int h = 0; h < shape.Heads; h++)
    {
        int kv = h / (shape.Heads / shape.KvHeads);
        for (int i = 0; i < shape.SeqLen; i++)
        {
            var scores = new List<(int J, double S)>();
            for (int j = 0; j < shape.SeqLen; j++)
            {
                if (!visible(i, j, h)) continue;
                double s = 0;
                for (int d = 0; d < headDim; d++) s += q[(h * shape.SeqLen + i) * headDim + d] * (double)k[(kv * shape.SeqLen + j) * headDim + d];
                scores.Add((j, s / Math.Sqrt(headDim)));
            }

            double max = scores.Count == 0 ? 0 : scores.Max(x => x.S);
            double sum = scores.Sum(x => Math.Exp(x.S - max));
            for (int d = 0; d < headDim; d++)
            {
                double expected = scores.Count == 0 ? 0 : scores.Sum(x => Math.Exp(x.S - max) * v[(kv * shape.SeqLen + x.J) * headDim + d]) / sum;
                worst = Math.Max(worst, Math.Abs(expected - output[(h * shape.SeqLen + i) * headDim + d]));
            }
        }
    }

    Console.WriteLine($"{name}: max abs error {worst:E2}");
    return worst <= 1e-4 ? 0 : 1;
}

delegate void ForwardFn(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> o, AttentionShape shape);

[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 64)]
static partial class MistralLike;

[AttentionKernel(HeadDim = 32, Causal = false)]
[SlidingWindow(Left = 16, Right = 16)]
[Dilation(2)]
[GlobalTokens(0, 1)]
static partial class LongformerLike;

[AttentionKernel(HeadDim = 16)]
[SlidingWindow(Left = 31)]
[Strided(Stride = 32)]
static partial class Strided;

[AttentionKernel(HeadDim = 8)]
[SlidingWindow(Left = 10)]
[Dilation(1, 3)]
static partial class PerHead;
