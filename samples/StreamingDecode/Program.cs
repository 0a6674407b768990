using System.Diagnostics;
using System.Globalization;
using SparseAttention;
using StreamingDecode;

// Streams a long synthetic sequence through a small stack of attention layers with random weights: a prompt through
// Prefill, then token after token through Decode, each layer with its own rolling KV cache. Prints tokens/s and the
// caches' memory as it goes (flat: the ring holds the window, sinks are pinned), and the stack's receptive field.
// `--tokens N` sets how many tokens to generate after the prompt (default 16384), `--layers L` the depth (default 4).
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
int tokens = Argument("--tokens", 16384), layers = Argument("--layers", 4);
const int PromptLength = 1000, ReportEvery = 2048;

AttentionPattern pattern = StreamingAttention.Pattern;
Console.WriteLine($"SparseAttention streaming decode: {layers} layers, {Model.Heads} query heads over {Model.KvHeads} KV heads, HeadDim {Model.HeadDim}, {Environment.ProcessorCount} cores, ISA {AttentionOptions.Default.ResolveIsa()}");
Console.WriteLine($"Pattern: {pattern}.");
var windowOnly = new AttentionPattern(causal: true, windowLeft: pattern.WindowLeft);
Console.WriteLine($"Receptive field of {layers} layers: window alone {windowOnly.ReceptiveField(layers)} tokens (W x k); with the sinks {pattern.ReceptiveField(layers)}: every token sees tokens 0-3 directly.");

// A check first: decode must equal the reference on the whole sequence, row by row, even past the window.
Console.WriteLine(SelfCheck(pattern, seqLen: 3 * 256 + 50));

var model = new Model(layers, seed: 7);
KvCache first = model.Caches[0];
long CacheBytes() => model.Caches.Sum(cache => cache.MemoryBytes);
Console.WriteLine($"Each layer's cache: {first.RingSlots} ring slots + {first.PinnedSlots} pinned per KV head = {first.MemoryBytes / 1024.0:F0} KiB; all {layers} layers {CacheBytes() / 1024.0:F0} KiB.");
Console.WriteLine();

var random = new Random(11);
int[] prompt = Enumerable.Range(0, PromptLength).Select(_ => random.Next(Model.Vocabulary)).ToArray();
long start = Stopwatch.GetTimestamp();
int token = model.Prefill(prompt);
double prefillSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
Console.WriteLine($"prompt of {PromptLength} tokens through Prefill: {prefillSeconds * 1000:F0} ms ({PromptLength / prefillSeconds:F0} tokens/s)");
Console.WriteLine($"{"position",10} {"tokens/s",9} {"cache KiB",10} {"last tokens",24}");

long intervalStart = Stopwatch.GetTimestamp(), streamStart = intervalStart;
var recent = new Queue<int>();
long bytesAtStart = CacheBytes();
for (int step = 1; step <= tokens; step++)
{
    token = model.Step(token);
    recent.Enqueue(token);
    if (recent.Count > 6)
    {
        recent.Dequeue();
    }

    if (step % ReportEvery == 0 || step == tokens)
    {
        double seconds = Stopwatch.GetElapsedTime(intervalStart).TotalSeconds;
        int inInterval = step % ReportEvery == 0 ? ReportEvery : step % ReportEvery;
        Console.WriteLine($"{first.Count,10:N0} {inInterval / seconds,9:F0} {CacheBytes() / 1024.0,10:F0} {string.Join(" ", recent),24}");
        intervalStart = Stopwatch.GetTimestamp();
    }
}

double total = Stopwatch.GetElapsedTime(streamStart).TotalSeconds;
bool flat = CacheBytes() == bytesAtStart;
Console.WriteLine();
Console.WriteLine($"{tokens:N0} tokens in {total:F1} s ({tokens / total:F0} tokens/s through {layers} layers); cache memory {(flat ? "constant" : "CHANGED")} at {CacheBytes() / 1024.0:F0} KiB from position {PromptLength:N0} to {first.Count:N0}.");
return flat ? 0 : 1;

int Argument(string name, int fallback)
{
    string? text = args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
    return text is null ? fallback : int.Parse(text, CultureInfo.InvariantCulture);
}

// Random queries, keys and values streamed token by token through a fresh cache; every decoded row is compared with
// ReferenceAttention over the whole sequence.
static string SelfCheck(AttentionPattern pattern, int seqLen)
{
    var random = new Random(3);
    var shape = new AttentionShape(Model.Heads, Model.KvHeads, seqLen);
    float[] query = Values(random, Model.Heads * seqLen * Model.HeadDim), key = Values(random, Model.KvHeads * seqLen * Model.HeadDim), value = Values(random, key.Length);

    // Decode row t into its place in a [Heads, SeqLen, HeadDim] output, laid out as Forward's would be.
    KvCache cache = StreamingAttention.CreateCache(Model.KvHeads);
    float[] tokenKey = new float[Model.KvWidth], tokenValue = new float[Model.KvWidth], tokenQuery = new float[Model.Width], output = new float[Model.Width];
    var decoded = new float[query.Length];
    for (int t = 0; t < seqLen; t++)
    {
        Model.Gather(key, Model.KvHeads, seqLen, t, tokenKey);
        Model.Gather(value, Model.KvHeads, seqLen, t, tokenValue);
        Model.Gather(query, Model.Heads, seqLen, t, tokenQuery);
        cache.Append(tokenKey, tokenValue);
        StreamingAttention.Decode(tokenQuery, cache, output);
        for (int head = 0; head < Model.Heads; head++)
        {
            output.AsSpan(head * Model.HeadDim, Model.HeadDim).CopyTo(decoded.AsSpan((head * seqLen + t) * Model.HeadDim));
        }
    }

    (int, int)[] everyRow = Enumerable.Range(0, Model.Heads).SelectMany(head => Enumerable.Range(0, seqLen).Select(t => (head, t))).ToArray();
    double worst = ReferenceAttention.MaxAbsoluteError(pattern, query, key, value, decoded, shape, everyRow);
    if (worst > 1e-4)
    {
        throw new InvalidOperationException($"Decode differs from the reference by {worst:E1}.");
    }

    return $"Self-check: {seqLen} random tokens decoded one by one match ReferenceAttention on the whole sequence at every row (max |error| {worst:E1}).";
}

static float[] Values(Random random, int length) => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
