using System.Collections.Concurrent;
using SparseAttention.Cpu;

namespace SparseAttention.Runtime.Tests;

/// <summary>The worker pool's contiguous shares (decode's items): every item once, each thread's own share in order.</summary>
public class WorkerPoolTests
{
    /// <summary>Records which thread ran which item, in the order each thread ran them; items take a little while, so threads overlap.</summary>
    private sealed class RecordingJob(int items, bool contiguous, int failAt = -1) : WorkerPool.Job
    {
        public readonly int[] Runs = new int[items];
        public readonly ConcurrentDictionary<int, List<int>> ByThread = new();

        public override bool ContiguousShares => contiguous;

        public override void Execute(int item)
        {
            if (item == failAt)
            {
                throw new InvalidOperationException("item " + item);
            }

            Interlocked.Increment(ref Runs[item]);
            ByThread.GetOrAdd(Environment.CurrentManagedThreadId, _ => new List<int>()).Add(item);
            Thread.SpinWait(2000);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(33)]
    [InlineData(128)]
    public void ContiguousSharesRunEveryItemOnceAndEachThreadsOwnShareInOrder(int items)
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            var job = new RecordingJob(items, contiguous: true);
            WorkerPool.Shared.Run(job, items, Environment.ProcessorCount);

            Assert.All(job.Runs, runs => Assert.Equal(1, runs));
            foreach (List<int> ran in job.ByThread.Values)
            {
                // Its own share first, front to back (consecutive items), then what it took from the back of others' shares:
                // each share's from its end down, so an item above the one before only where it moved to another share.
                int own = 1;
                while (own < ran.Count && ran[own] == ran[own - 1] + 1)
                {
                    own++;
                }

                int ascents = Enumerable.Range(own + 1, Math.Max(0, ran.Count - own - 1)).Count(i => ran[i] > ran[i - 1]);
                Assert.True(ascents <= Math.Max(0, Environment.ProcessorCount - 2), $"thread ran {string.Join(",", ran)}");
            }
        }
    }

    [Fact]
    public void AFailingItemIsRethrownAndThePoolKeepsWorking()
    {
        var failing = new RecordingJob(40, contiguous: true, failAt: 13);
        // On the pool the failure comes wrapped; when another test holds the pool, the items run on this thread and it
        // comes as thrown.
        Exception thrown = Assert.ThrowsAny<Exception>(() => WorkerPool.Shared.Run(failing, 40, Environment.ProcessorCount));
        Assert.Contains("item 13", (thrown as AggregateException)?.InnerException?.Message ?? thrown.Message);

        var next = new RecordingJob(40, contiguous: true);
        WorkerPool.Shared.Run(next, 40, Environment.ProcessorCount);
        Assert.All(next.Runs, runs => Assert.Equal(1, runs));
    }
}
