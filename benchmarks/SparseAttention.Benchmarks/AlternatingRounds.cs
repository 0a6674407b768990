namespace SparseAttention.Benchmarks;

/// <summary>
/// Times two things in alternating rounds, each round on fresh timers (fresh inputs), the order flipping every round.
/// On a shared VM whose speed drifts by tens of percent between runs, two measurements a few milliseconds apart see the
/// same machine, so the per-round ratio stays steady while the absolute times wander; where arrays land (their alignment
/// to cache lines) moves a case by a few percent too, so each round draws new addresses for both.
/// </summary>
public static class AlternatingRounds
{
    /// <summary>
    /// Best-of-<paramref name="calls"/> times (ms) of both, per round, after about a second of warm-up each, and the
    /// highest <paramref name="peak"/> measured once per round: the best times come from the machine's best moments, so
    /// the peak they are judged against is its best moment over the same rounds.
    /// </summary>
    public static (double[] First, double[] Second, double Peak) Run(Func<Func<double>> first, Func<Func<double>> second, int rounds, int calls, Func<double> peak)
    {
        double highestPeak = 0;
        WarmUp(first());
        WarmUp(second());
        var firstTimes = new double[rounds];
        var secondTimes = new double[rounds];
        for (int round = 0; round < rounds; round++)
        {
            highestPeak = Math.Max(highestPeak, peak());
            Func<double> a = first(), b = second();
            if (round % 2 == 0)
            {
                firstTimes[round] = BestOf(a, calls);
                secondTimes[round] = BestOf(b, calls);
            }
            else
            {
                secondTimes[round] = BestOf(b, calls);
                firstTimes[round] = BestOf(a, calls);
            }
        }

        return (firstTimes, secondTimes, highestPeak);
    }

    public static double[] Ratios(double[] numerators, double[] denominators) => numerators.Zip(denominators, (n, d) => n / d).ToArray();

    public static double Quantile(double[] values, double q)
    {
        double[] sorted = values.Order().ToArray();
        double at = q * (sorted.Length - 1);
        int below = (int)Math.Floor(at);
        return below + 1 < sorted.Length ? sorted[below] + (at - below) * (sorted[below + 1] - sorted[below]) : sorted[below];
    }

    /// <summary>Runs a timer for about a second so its kernels are past tiered compilation before timing.</summary>
    private static void WarmUp(Func<double> run)
    {
        double spent = 0;
        for (int call = 0; call < 3 || spent < 1000; call++)
        {
            spent += run();
        }
    }

    private static double BestOf(Func<double> run, int calls)
    {
        double best = double.MaxValue;
        for (int call = 0; call < calls; call++)
        {
            best = Math.Min(best, run());
        }

        return best;
    }
}
