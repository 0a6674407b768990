using System.Diagnostics;
using System.Globalization;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// `-- --natten`: issue 18's table. 2-D neighbourhood attention (4 heads, fp32) on a 128 x 128 grid with a 13 x 13 kernel
/// at HeadDim 32 and 64, and on 56 x 56 with 7 x 7, each against the 1-D bidirectional sliding window with the same keys
/// per row (169 or 49) in the same run, as effective GFLOP/s (visible pairs x 4 x HeadDim / s, median of the rounds) and a
/// share of the FMA peak of the width that runs (`--isa`). Options: `--rounds N` (default 15), `--only I` (the I-th case alone,
/// from 0: to profile one).
/// </summary>
public static class NeighborhoodComparison
{
    private delegate void GridForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, GridShape grid, AttentionOptions? options);

    private delegate void WindowForward(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options);

    private sealed record Case(string Grid, int Side, int Kernel, int HeadDim, AttentionPattern Neighborhood, GridForward Forward, AttentionPattern Window, WindowForward WindowForward);

    private static readonly Case[] Cases =
    {
        new("128 x 128", 128, 13, 32, Neighborhood13HeadDim32.Pattern, Neighborhood13HeadDim32.Forward, Window169HeadDim32.Pattern, Window169HeadDim32.Forward),
        new("128 x 128", 128, 13, 64, Neighborhood13.Pattern, Neighborhood13.Forward, Window169.Pattern, Window169.Forward),
        new("56 x 56", 56, 7, 64, Neighborhood7.Pattern, Neighborhood7.Forward, Window49.Pattern, Window49.Forward),
    };

    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        int rounds = int.Parse(CommandLine.Argument(args, "--rounds") ?? "15", CultureInfo.InvariantCulture);
        KernelIsa isa = CommandLine.Isa(args);
        var options = new AttentionOptions { Isa = isa };
        int threads = Environment.ProcessorCount;
        double peak = FmaPeak.MeasureGflops(threads, isa);
        Console.WriteLine($"Neighbourhood attention vs the 1-D window with the same keys per row; {QuickComparison.RuntimeInfo()}");
        Console.WriteLine($"{FmaPeak.WidthName(isa)}, {threads} threads, FMA peak {peak:F1} GFLOP/s; 4 heads, fp32, dilation 1; median of {rounds} alternating rounds, best of 3 calls each; ratio: median of the rounds' GFLOP/s ratios (q1-q3).");
        Console.WriteLine();
        Console.WriteLine($"| grid | kernel | HeadDim | ms | GFLOP/s | % of peak | 1-D window ms | window GFLOP/s | ratio (q1-q3) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        string? only = CommandLine.Argument(args, "--only");
        foreach (Case c in only is null ? Cases : new[] { Cases[int.Parse(only, CultureInfo.InvariantCulture)] })
        {
            int n = c.Side * c.Side;
            var shape = new AttentionShape(4, 4, n);
            var inputs = new CaseInputs(shape, c.HeadDim);
            var grid = new GridShape(c.Side, c.Side);
            var output = new float[inputs.Query.Length];
            Func<double> Timer(Action call) => () =>
            {
                long start = Stopwatch.GetTimestamp();
                call();
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            };

            // Alternating rounds, best of 3 calls each: the ratio of one round's two times is steady where the times
            // themselves drift with the shared machine's load (the ratio of separate medians moved by 0.1 between runs).
            (double[] times, double[] windowTimes, _) = AlternatingRounds.Run(
                () => Timer(() => c.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, grid, options)),
                () => Timer(() => c.WindowForward(inputs.Query, inputs.Key, inputs.Value, output, shape, options)),
                rounds, calls: 3, peak: () => 0);
            double pairs = c.Neighborhood.OnGrid(grid, n).VisiblePairs(n, shape.Heads), windowPairs = c.Window.VisiblePairs(n, shape.Heads);
            double ms = AlternatingRounds.Quantile(times, 0.5), windowMs = AlternatingRounds.Quantile(windowTimes, 0.5);
            double gflops = pairs * 4.0 * c.HeadDim / (ms / 1e3) / 1e9;
            double windowGflops = windowPairs * 4.0 * c.HeadDim / (windowMs / 1e3) / 1e9;
            double[] ratios = AlternatingRounds.Ratios(windowTimes, times).Select(r => r * pairs / windowPairs).ToArray();
            Console.WriteLine($"| {c.Grid} | {c.Kernel} x {c.Kernel} | {c.HeadDim} | {ms:F1} | {gflops:F1} | {100 * gflops / peak:F1}% | {windowMs:F1} | {windowGflops:F1} | {AlternatingRounds.Quantile(ratios, 0.5):F2} ({AlternatingRounds.Quantile(ratios, 0.25):F2}-{AlternatingRounds.Quantile(ratios, 0.75):F2}) |");
        }

        return 0;
    }
}
