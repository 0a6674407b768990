using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;

namespace SparseAttention.Benchmarks;

/// <summary>
/// The before/after comparison (`-- --before-after OTHER/SparseAttention.Benchmarks.dll`): this build and another build of
/// this program, loaded side by side in one process (the other in its own AssemblyLoadContext), run the same cases in
/// alternating rounds. On a shared VM whose speed drifts by tens of percent between runs, separate processes cannot
/// resolve a 3% difference; calls a few milliseconds apart see the same machine, so the per-round ratio stays steady
/// while the absolute times wander. The other build must have <see cref="StandardCase.CreateTimer"/>. Each build's
/// timer allocates its own inputs, so a case bound by reading memory (decode, whose caches are 1 GiB) also compares
/// where the two builds' buffers landed: eight runs of one decode change read 0.90-1.08 (BENCHMARKS.md, twenty-third
/// session). For those, alternate the two versions over the same caches in one build instead.
/// </summary>
public static class BeforeAfterComparison
{
    public static int Run(string[] args)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string otherPath = Path.GetFullPath(CommandLine.Argument(args, "--before-after") ?? throw new ArgumentException("--before-after needs the path of the other build's SparseAttention.Benchmarks.dll."));
        string[] cases = (CommandLine.Argument(args, "--cases") ?? "swa-4k-w512,lf-4k,lf-dil-4k").Split(',');
        int rounds = int.Parse(CommandLine.Argument(args, "--rounds") ?? "30", CultureInfo.InvariantCulture);
        int threads = int.Parse(CommandLine.Argument(args, "--threads") ?? Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        string isa = CommandLine.Argument(args, "--isa") ?? "Auto";
        int calls = int.Parse(CommandLine.Argument(args, "--calls") ?? "3", CultureInfo.InvariantCulture);

        var context = new OtherBuildContext(otherPath);
        Assembly other = context.LoadFromAssemblyPath(otherPath);
        MethodInfo otherFactory = other.GetType(typeof(StandardCase).FullName!, throwOnError: true)!.GetMethod(nameof(StandardCase.CreateTimer))
            ?? throw new InvalidOperationException($"{otherPath} has no StandardCase.CreateTimer(name, threads, isa): add it to that build first.");

        Console.WriteLine($"Before/after: {otherPath} (before) against this build (after), {threads} thread(s), ISA {isa}, {rounds} rounds per case, best of {calls} call(s) per build per round.");
        Console.WriteLine("Each round times both builds back to back on fresh inputs, the order alternating; the ratio is after / before.");
        Console.WriteLine();
        Console.WriteLine("Times in ms; GFLOP/s = visible pairs x 4 x HeadDim / best time, and its % of this ISA's FMA peak (the highest of one measurement per round).");
        Console.WriteLine($"{"case",-16} {"before best",11} {"after best",10} {"before med",10} {"after med",9} {"ratio med",9} {"ratio q1",8} {"ratio q3",8} {"rounds after slower",19} {"peak",6} {"before GFLOP/s (%)",18} {"after GFLOP/s (%)",17}");
        foreach (string name in cases)
        {
            Func<double> Before() => (Func<double>)otherFactory.Invoke(null, new object[] { name, threads, isa })!;
            Func<double> After() => StandardCase.CreateTimer(name, threads, isa);
            if (name == cases[0])
            {
                // Both runtimes must really be loaded: the other build's from its own folder, not ours twice.
                Before();
                Console.WriteLine($"(runtime before: {RuntimeLocation(context)}; after: {RuntimeLocation(AssemblyLoadContext.Default)})");
            }

            (double[] beforeTimes, double[] afterTimes, double peak) = AlternatingRounds.Run(Before, After, rounds, calls, () => FmaPeak.MeasureGflops(threads, Enum.Parse<KernelIsa>(isa, ignoreCase: true)));
            double beforeGflops = StandardCase.Get(name).Gflops(beforeTimes.Min() / 1000), afterGflops = StandardCase.Get(name).Gflops(afterTimes.Min() / 1000);
            double[] ratios = AlternatingRounds.Ratios(afterTimes, beforeTimes);
            Console.WriteLine($"{name,-16} {beforeTimes.Min(),11:F2} {afterTimes.Min(),10:F2} {AlternatingRounds.Quantile(beforeTimes, 0.5),10:F2} {AlternatingRounds.Quantile(afterTimes, 0.5),9:F2} {AlternatingRounds.Quantile(ratios, 0.5),9:F3} {AlternatingRounds.Quantile(ratios, 0.25),8:F3} {AlternatingRounds.Quantile(ratios, 0.75),8:F3} {ratios.Count(r => r > 1),12} of {rounds} {peak,6:F0} {beforeGflops,9:F1} ({100 * beforeGflops / peak,5:F1}%) {afterGflops,8:F1} ({100 * afterGflops / peak,5:F1}%)");
        }

        return 0;
    }

    private static string RuntimeLocation(AssemblyLoadContext context) =>
        context.Assemblies.FirstOrDefault(a => a.GetName().Name == "SparseAttention.Runtime")?.Location ?? "not loaded";

    /// <summary>The other build's assemblies, resolved from its own folder (its runtime library has the same name as ours).</summary>
    private sealed class OtherBuildContext(string mainAssemblyPath) : AssemblyLoadContext("before", isCollectible: false)
    {
        private readonly AssemblyDependencyResolver _resolver = new(mainAssemblyPath);

        protected override Assembly? Load(AssemblyName name) =>
            _resolver.ResolveAssemblyToPath(name) is { } path ? LoadFromAssemblyPath(path) : null;

        protected override IntPtr LoadUnmanagedDll(string name) =>
            _resolver.ResolveUnmanagedDllToPath(name) is { } path ? LoadUnmanagedDllFromPath(path) : IntPtr.Zero;
    }
}
