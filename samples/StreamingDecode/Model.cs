using System.Numerics.Tensors;
using SparseAttention;

namespace StreamingDecode;

// Mistral's recipe at toy size: a causal sliding window, and four attention sinks pinned outside the rolling cache so
// the start of the stream stays in view however far the window has moved.
[AttentionKernel(HeadDim = 64)]
[SlidingWindow(Size = 256)]
[GlobalTokens(0, 1, 2, 3)]
public static partial class StreamingAttention;

/// <summary>
/// A small decoder with random weights: byte embedding, then per layer RMSNorm, Q/K/V projections (grouped-query: 8
/// query heads over 2 KV heads), attention against the layer's rolling KV cache, output projection and residual;
/// logits from the tied embedding, next token sampled from their softmax. Enough to drive the caches the way a real model does.
/// </summary>
public sealed class Model
{
    public const int Vocabulary = 256, Heads = 8, KvHeads = 2, HeadDim = StreamingAttention.HeadDim;
    public const int Width = Heads * HeadDim, KvWidth = KvHeads * HeadDim;

    private readonly Random _sampler;
    private readonly float[] _embedding;
    private readonly Layer[] _layers;
    private readonly float[] _x = new float[Width], _normed = new float[Width], _attention = new float[Width], _projected = new float[Width], _logits = new float[Vocabulary];

    public Model(int layers, int seed)
    {
        var random = new Random(seed);
        _sampler = new Random(seed + 1);
        _embedding = RandomMatrix(random, Vocabulary, Width);
        _layers = Enumerable.Range(0, layers).Select(_ => new Layer(random)).ToArray();
    }

    public IReadOnlyList<KvCache> Caches => _layers.Select(layer => layer.Cache).ToArray();

    /// <summary>Called with each layer's (layer, query [Heads, HeadDim], key/value [KvHeads, HeadDim], output) as it decodes.</summary>
    public Action<int, float[], float[], float[], float[]>? OnAttention { get; set; }

    /// <summary>Runs a prompt through every layer with Prefill, filling the caches, and returns the next token.</summary>
    public int Prefill(ReadOnlySpan<int> prompt)
    {
        int n = prompt.Length;
        var x = new float[n * Width];
        for (int t = 0; t < n; t++)
        {
            _embedding.AsSpan(prompt[t] * Width, Width).CopyTo(x.AsSpan(t * Width));
        }

        var shape = new AttentionShape(Heads, KvHeads, n);
        float[] query = new float[n * Width], key = new float[n * KvWidth], value = new float[n * KvWidth], output = new float[n * Width];
        var normed = new float[Width];
        var row = new float[Width];
        foreach (Layer layer in _layers)
        {
            // Project every token, written straight into the [heads, tokens, HeadDim] layout the kernels take.
            for (int t = 0; t < n; t++)
            {
                RmsNorm(x.AsSpan(t * Width, Width), normed);
                layer.Project(normed, row);
                Scatter(row, query, Heads, n, t);
                layer.ProjectKeyValue(normed, row.AsSpan(0, KvWidth), row.AsSpan(KvWidth, KvWidth));
                Scatter(row.AsSpan(0, KvWidth), key, KvHeads, n, t);
                Scatter(row.AsSpan(KvWidth, KvWidth), value, KvHeads, n, t);
            }

            StreamingAttention.Prefill(query, key, value, output, shape, layer.Cache);
            for (int t = 0; t < n; t++)
            {
                Gather(output, Heads, n, t, row);
                layer.Output(row, normed);
                TensorPrimitives.Add(x.AsSpan(t * Width, Width), normed, x.AsSpan(t * Width, Width));
            }
        }

        x.AsSpan((n - 1) * Width, Width).CopyTo(_x);
        return NextToken();
    }

    /// <summary>Feeds one token through every layer (append its keys and values, decode its query) and returns the next token.</summary>
    public int Step(int token)
    {
        _embedding.AsSpan(token * Width, Width).CopyTo(_x);
        for (int index = 0; index < _layers.Length; index++)
        {
            Layer layer = _layers[index];
            RmsNorm(_x, _normed);
            layer.Project(_normed, layer.Query);
            layer.ProjectKeyValue(_normed, layer.Key, layer.Value);
            layer.Cache.Append(layer.Key, layer.Value);
            StreamingAttention.Decode(layer.Query, layer.Cache, _attention);
            OnAttention?.Invoke(index, layer.Query, layer.Key, layer.Value, _attention);
            layer.Output(_attention, _projected);
            TensorPrimitives.Add(_x, _projected, _x);
        }

        return NextToken();
    }

    /// <summary>Samples the next token from softmax(logits), seeded, so the synthetic text varies as a real model's would.</summary>
    private int NextToken()
    {
        RmsNorm(_x, _normed);
        MatVec(_embedding, _normed, _logits);
        TensorPrimitives.SoftMax(_logits, _logits);
        float pick = _sampler.NextSingle(), cumulative = 0;
        for (int token = 0; token < Vocabulary; token++)
        {
            cumulative += _logits[token];
            if (pick < cumulative)
            {
                return token;
            }
        }

        return Vocabulary - 1;
    }

    private static void RmsNorm(ReadOnlySpan<float> x, Span<float> destination)
    {
        float scale = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / x.Length + 1e-6f);
        TensorPrimitives.Multiply(x, scale, destination);
    }

    /// <summary>destination[i] = dot(row i of <paramref name="matrix"/>, x): weights are stored one output per row.</summary>
    private static void MatVec(float[] matrix, ReadOnlySpan<float> x, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = TensorPrimitives.Dot(matrix.AsSpan(i * x.Length, x.Length), x);
        }
    }

    /// <summary>Writes one token's [heads, HeadDim] vector into a [heads, tokens, HeadDim] tensor.</summary>
    private static void Scatter(ReadOnlySpan<float> token, float[] tensor, int heads, int tokens, int t)
    {
        for (int head = 0; head < heads; head++)
        {
            token.Slice(head * HeadDim, HeadDim).CopyTo(tensor.AsSpan((head * tokens + t) * HeadDim));
        }
    }

    /// <summary>Reads one token's [heads, HeadDim] vector out of a [heads, tokens, HeadDim] tensor.</summary>
    public static void Gather(float[] tensor, int heads, int tokens, int t, Span<float> token)
    {
        for (int head = 0; head < heads; head++)
        {
            tensor.AsSpan((head * tokens + t) * HeadDim, HeadDim).CopyTo(token.Slice(head * HeadDim));
        }
    }

    private static float[] RandomMatrix(Random random, int rows, int columns)
    {
        var matrix = new float[rows * columns];
        float scale = 1f / MathF.Sqrt(columns);
        for (int i = 0; i < matrix.Length; i++)
        {
            matrix[i] = (float)(random.NextDouble() * 2 - 1) * scale * 1.7f;
        }

        return matrix;
    }

    private sealed class Layer(Random random)
    {
        private readonly float[] _wq = RandomMatrix(random, Width, Width), _wk = RandomMatrix(random, KvWidth, Width), _wv = RandomMatrix(random, KvWidth, Width), _wo = RandomMatrix(random, Width, Width);

        public KvCache Cache { get; } = StreamingAttention.CreateCache(KvHeads);

        public float[] Query { get; } = new float[Width];

        public float[] Key { get; } = new float[KvWidth];

        public float[] Value { get; } = new float[KvWidth];

        public void Project(ReadOnlySpan<float> x, Span<float> query) => MatVec(_wq, x, query);

        public void ProjectKeyValue(ReadOnlySpan<float> x, Span<float> key, Span<float> value)
        {
            MatVec(_wk, x, key);
            MatVec(_wv, x, value);
        }

        public void Output(ReadOnlySpan<float> attention, Span<float> destination) => MatVec(_wo, attention, destination);
    }
}
