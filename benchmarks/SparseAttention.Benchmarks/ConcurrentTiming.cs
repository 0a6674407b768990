using System.Diagnostics;

namespace SparseAttention.Benchmarks;

/// <summary>
/// Runs the same work on several threads at once and times it from the first thread's start to the last thread's end,
/// each thread reading the clock itself. The probes (<see cref="FmaPeak"/>, <see cref="MemoryBandwidth"/>) use it for
/// their per-machine figures, which every "% of peak" and "% of bandwidth" divides by.
/// </summary>
/// <remarks>
/// The FMA peak was timed from the thread that starts the workers, which on a machine with as many cores as workers
/// reads the clock only when it is next scheduled after releasing them: a late start, a short time, a high rate. On the
/// 2-vCPU Zen 5 VM the two-thread peak read up to 507 and 515 GFLOP/s in quick runs where one thread read 222-232, and
/// in twelve alternating measurements 453 where one thread read 218 (1.04x two cores); timed here, 420-444 in the same
/// alternation and 417-460 in three quick runs. Every "% of peak" divides by it. The bandwidth probe went through
/// <c>Parallel.For</c>, which runs a late pool thread's share on the calling thread, i.e. one core's reads as the machine's.
/// </remarks>
public static class ConcurrentTiming
{
    /// <summary>
    /// Seconds from the earliest start to the latest end of <paramref name="work"/>(0 .. threads - 1), each on a thread of
    /// its own; each result is kept (a volatile store), so no part of the work can be left out.
    /// </summary>
    public static double Seconds(int threads, Func<int, float> work)
    {
        var starts = new long[threads];
        var ends = new long[threads];
        using var ready = new Barrier(threads);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int thread = t;
            workers[t] = new Thread(() =>
            {
                ready.SignalAndWait();
                starts[thread] = Stopwatch.GetTimestamp();
                float result = work(thread);
                ends[thread] = Stopwatch.GetTimestamp();
                s_sink = result;
            });
            workers[t].Start();
        }

        foreach (Thread worker in workers)
        {
            worker.Join();
        }

        return (ends.Max() - starts.Min()) / (double)Stopwatch.Frequency;
    }

    private static volatile float s_sink;
}
