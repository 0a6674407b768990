using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// BenchmarkDotNet over docs/design.md's standard cases: the generated kernel per case, with MemoryDiagnoser for the
/// zero-allocation target. Effective GFLOP/s = visible pairs x 4 x 64 / mean time (pairs are printed by the
/// quick comparison and in BENCHMARKS.md).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RuntimeMoniker.Net10_0, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class StandardCaseBenchmarks
{
    private CaseInputs _inputs = null!;
    private StandardCase _case = null!;

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    /// <summary>
    /// Every standard case, or the comma-separated names in SPARSE_BENCH_CASES (BenchmarkDotNet's --filter matches
    /// methods, not parameter values; the variable reaches the child processes it launches).
    /// </summary>
    public static IEnumerable<string> Cases =>
        Environment.GetEnvironmentVariable("SPARSE_BENCH_CASES") is { Length: > 0 } names
            ? names.Split(',').Select(name => StandardCase.Get(name).Name)
            : StandardCase.All.Select(c => c.Name);

    [GlobalSetup]
    public void Setup()
    {
        _case = StandardCase.Get(Case);
        _inputs = new CaseInputs(_case.Shape, _case.HeadDim);
    }

    [Benchmark]
    public void Generated() => _case.Forward(_inputs.Query, _inputs.Key, _inputs.Value, _inputs.Output, _case.Shape, AttentionOptions.Default);
}
