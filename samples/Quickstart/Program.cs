using System.Diagnostics;
using System.Globalization;
using SparseAttention;
using Quickstart;

// Runs each declared pattern at n = 4096, 8 heads, HeadDim 64 on the CPU, then one on the device AttentionDevice
// picks (a GPU when there is one), checks sampled rows against the reference implementation, and prints a table. Exits with 1 if any pattern is off by more than the tolerance.
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
const int SeqLen = 4096, Heads = 8, HeadDim = 64, SampledRows = 48;
const double Tolerance = 1e-4;
var shape = new AttentionShape(Heads, Heads, SeqLen);
var random = new Random(2024);
float[] query = RandomValues(Heads * SeqLen * HeadDim), key = RandomValues(query.Length), value = RandomValues(query.Length);
var output = new float[query.Length];

var cases = new (string Name, AttentionPattern Pattern, ScoreModifiers Scores, ForwardFn Forward)[]
{
    ("dense causal", DenseCausal.Pattern, DenseCausal.Scores, DenseCausal.Forward),
    ("mistral window 512", MistralWindow.Pattern, MistralWindow.Scores, MistralWindow.Forward),
    ("longformer dilated + 2 global", LongformerDilated.Pattern, LongformerDilated.Scores, LongformerDilated.Forward),
    ("sparse transformer strided 64", SparseTransformerStrided.Pattern, SparseTransformerStrided.Scores, SparseTransformerStrided.Forward),
    ("sparse transformer fixed 128/8", SparseTransformerFixed.Pattern, SparseTransformerFixed.Scores, SparseTransformerFixed.Forward),
    ("bigbird 64, 1+2 global+3 random", BigBird.Pattern, BigBird.Scores, BigBird.Forward),
    ("gemma2 local 4096 + softcap 50", Gemma2Local.Pattern, Gemma2Local.Scores, Gemma2Local.Forward),
};

Console.WriteLine($"SparseAttention quickstart: n = {SeqLen}, {Heads} heads, HeadDim {HeadDim}, {Environment.ProcessorCount} cores, ISA {AttentionOptions.Default.ResolveIsa()}");
Console.WriteLine();
Console.WriteLine($"{"pattern",-32} {"visible pairs",14} {"ms",9} {"GFLOP/s",9} {"vs dense",9} {"max error",10}");
double denseMilliseconds = 0;
bool allCorrect = true;
foreach (var (name, pattern, scores, forward) in cases)
{
    double milliseconds = Time(() => forward(query, key, value, output, shape));
    if (denseMilliseconds == 0)
    {
        denseMilliseconds = milliseconds;
    }

    long pairs = pattern.VisiblePairs(SeqLen, Heads);
    double gflops = pairs * 4.0 * HeadDim / (milliseconds * 1e6);
    forward(query, key, value, output, shape);
    double error = MaxErrorOnSampledRows(pattern, scores, output);
    allCorrect &= error <= Tolerance;
    Console.WriteLine($"{name,-32} {pairs,14:N0} {milliseconds,9:F2} {gflops,9:F1} {denseMilliseconds / milliseconds,8:F2}x {error,10:E2}{(error <= Tolerance ? "" : "  <-- over tolerance")}");
}

// The same kernel through AttentionDevice: CUDA, else an OpenCL GPU, else these SIMD CPU kernels. With a GPU this
// call copies the tensors over and back on every call; keep them on the device and use the ArrayView overload instead.
using (AttentionDevice device = AttentionDevice.Create())
{
    double milliseconds = Time(() => MistralWindow.Forward(device, query, key, value, output, shape));
    double error = MaxErrorOnSampledRows(MistralWindow.Pattern, MistralWindow.Scores, output);
    allCorrect &= error <= Tolerance;
    Console.WriteLine($"{"mistral window 512, on device",-32} {"",14} {milliseconds,9:F2} {"",9} {"",9} {error,10:E2}  device: {device.Name}");
}

Console.WriteLine();
Console.WriteLine($"Receptive field of 32 stacked '{cases[1].Name}' layers: {MistralWindow.Pattern.ReceptiveField(32)} tokens.");
Console.WriteLine(allCorrect ? $"All patterns match the reference within {Tolerance:E0}." : $"Some pattern differs from the reference by more than {Tolerance:E0}.");
return allCorrect ? 0 : 1;

float[] RandomValues(int length)
{
    var values = new float[length];
    for (int i = 0; i < length; i++)
    {
        values[i] = (float)(random.NextDouble() * 3 - 1.5);
    }

    return values;
}

// Best of five runs after two seconds of warm-up calls: the least disturbed measurement on a shared machine. The warm-up
// is that long because .NET compiles each pattern's code more than once: quickly at first, then optimised once it has
// been called often enough and the process has been quiet for a moment. Timed after a single warm-up call (or after one
// second of them), the 15 ms window pattern ran partly on the first, slower code: 0.7x its steady speed on a Zen 5.
static double Time(Action run)
{
    long warmUpStart = Stopwatch.GetTimestamp();
    do
    {
        run();
    }
    while (Stopwatch.GetElapsedTime(warmUpStart).TotalSeconds < 2);

    double best = double.MaxValue;
    for (int i = 0; i < 5; i++)
    {
        long start = Stopwatch.GetTimestamp();
        run();
        best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }

    return best;
}

// The reference is O(n) per row, so it checks a sample: first and last rows, global rows, and random ones.
double MaxErrorOnSampledRows(AttentionPattern pattern, ScoreModifiers scores, float[] actual)
{
    var rows = new (int Head, int Position)[SampledRows];
    for (int sample = 0; sample < SampledRows; sample++)
    {
        rows[sample] = (sample % Heads, sample switch { 0 => 0, 1 => 1, 2 => SeqLen - 1, 3 => 2, _ => random.Next(SeqLen) });
    }

    return ReferenceAttention.MaxAbsoluteError(pattern, scores, query, key, value, actual, shape, rows);
}

delegate void ForwardFn(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape);
