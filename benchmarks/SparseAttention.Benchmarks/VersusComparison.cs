using System.Globalization;

namespace SparseAttention.Benchmarks;

/// <summary>
/// The ratio targets (`-- --versus bigbird-16k:bidir-16k-w512,fixed-16k-l128:swa-16k-w512`): each pair of cases timed in
/// alternating rounds in one process, reported as the ratio of their effective GFLOP/s (first / second). The quick
/// comparison times each case once after the other, and on this VM the machine's speed can change by 50% between two
/// cases; here both sides of every ratio see the same machine.
/// </summary>
public static class VersusComparison
{
    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string pairs = CommandLine.Argument(args, "--versus") ?? "bigbird-16k:bidir-16k-w512,fixed-16k-l128:swa-16k-w512";
        int rounds = int.Parse(CommandLine.Argument(args, "--rounds") ?? "20", CultureInfo.InvariantCulture);
        int calls = int.Parse(CommandLine.Argument(args, "--calls") ?? "2", CultureInfo.InvariantCulture);
        int threads = int.Parse(CommandLine.Argument(args, "--threads") ?? Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        string isa = CommandLine.Argument(args, "--isa") ?? "Auto";
        Console.WriteLine($"Versus: {threads} thread(s), ISA {isa} ({new AttentionOptions { Isa = Enum.Parse<KernelIsa>(isa, ignoreCase: true) }.ResolveIsa()}), {rounds} rounds per pair, best of {calls} call(s) per case per round.");
        Console.WriteLine("GFLOP/s = visible pairs x 4 x HeadDim / s; the ratio is the first case's GFLOP/s over the second's, per round.");
        Console.WriteLine();
        Console.WriteLine("'peak' is this ISA's FMA peak, the highest of one measurement per round; best GFLOP/s are shown with their % of it.");
        Console.WriteLine($"{"first",-16} {"second",-16} {"peak",6} {"first best (%)",16} {"second best (%)",16} {"ratio med",9} {"ratio q1",8} {"ratio q3",8}");
        foreach (string pair in pairs.Split(','))
        {
            string[] names = pair.Split(':');
            StandardCase first = StandardCase.Get(names[0]), second = StandardCase.Get(names[1]);
            (double[] firstMs, double[] secondMs, double peak) = AlternatingRounds.Run(
                () => StandardCase.CreateTimer(first.Name, threads, isa), () => StandardCase.CreateTimer(second.Name, threads, isa), rounds, calls,
                () => FmaPeak.MeasureGflops(threads, Enum.Parse<KernelIsa>(isa, ignoreCase: true)));
            double[] firstGflops = firstMs.Select(ms => first.Gflops(ms / 1000)).ToArray();
            double[] secondGflops = secondMs.Select(ms => second.Gflops(ms / 1000)).ToArray();
            double[] ratios = AlternatingRounds.Ratios(firstGflops, secondGflops);
            Console.WriteLine($"{first.Name,-16} {second.Name,-16} {peak,6:F0} {firstGflops.Max(),8:F1} ({100 * firstGflops.Max() / peak,4:F1}%) {secondGflops.Max(),8:F1} ({100 * secondGflops.Max() / peak,4:F1}%) {AlternatingRounds.Quantile(ratios, 0.5),9:F3} {AlternatingRounds.Quantile(ratios, 0.25),8:F3} {AlternatingRounds.Quantile(ratios, 0.75),8:F3}");
        }

        return 0;
    }
}
