using System;
using System.Threading;

namespace SparseAttention.Cpu;

/// <summary>
/// A fixed set of worker threads that run one job's numbered work items together with the calling thread,
/// taking items from a shared counter so uneven items balance themselves. Unlike Parallel.For it allocates
/// nothing per call. One job runs at a time; a call that finds the pool busy runs its items on its own thread.
/// </summary>
internal sealed class WorkerPool
{
    public static readonly WorkerPool Shared = new(Environment.ProcessorCount - 1);

    private readonly object _gate = new();
    private readonly SemaphoreSlim _start = new(0);
    private readonly int _workers;
    private bool _started;
    private Job? _job;
    private int _itemCount;
    private int _nextItem;
    private int _activeWorkers;
    private Exception? _failure;

    // Contiguous shares: participant p's share is items [front, end) packed in _shares[p] (front low, end high), taken from
    // the front by p and from the back by the others; _participants hands each thread of the run its share.
    private readonly long[] _shares;
    private int _shareCount;
    private int _participants;

    private WorkerPool(int workers)
    {
        _workers = Math.Max(0, workers);
        _shares = new long[_workers + 1];
    }

    /// <summary>Work the pool can run: items numbered 0 .. count - 1, in any order, on any thread.</summary>
    public abstract class Job
    {
        public abstract void Execute(int item);

        /// <summary>
        /// Whether each thread should first run one contiguous share of the items, in order, taking others' items (from
        /// the back of their shares) only when its own share is done: for items whose neighbours are neighbours in
        /// memory (decode's KV heads), so each thread streams one run instead of jumping between every other item.
        /// </summary>
        public virtual bool ContiguousShares => false;
    }

    /// <summary>Runs items 0 .. <paramref name="itemCount"/> - 1 of <paramref name="job"/> on up to <paramref name="threads"/> threads.</summary>
    public void Run(Job job, int itemCount, int threads)
    {
        int helpers = Math.Min(Math.Min(threads, itemCount) - 1, _workers);
        if (helpers <= 0 || !Monitor.TryEnter(_gate))
        {
            for (int item = 0; item < itemCount; item++)
            {
                job.Execute(item);
            }

            return;
        }

        try
        {
            EnsureStarted();
            _job = job;
            _itemCount = itemCount;
            _nextItem = -1;
            _failure = null;
            _activeWorkers = helpers;
            if (job.ContiguousShares)
            {
                _shareCount = helpers + 1;
                _participants = 0;
                for (int p = 0; p < _shareCount; p++)
                {
                    _shares[p] = Pack((int)((long)itemCount * p / _shareCount), (int)((long)itemCount * (p + 1) / _shareCount));
                }
            }

            _start.Release(helpers);
            RunItemsCatching(job);

            // Items are handed out one at a time, so the workers finish within one item of the caller: spin
            // for them rather than block, because a blocking wait can allocate on this thread.
            var spinner = new SpinWait();
            while (Volatile.Read(ref _activeWorkers) != 0)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
            _job = null;
            if (_failure is not null)
            {
                throw new AggregateException("An attention work item failed.", _failure);
            }
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    private void RunItems(Job job)
    {
        int item;
        if (job.ContiguousShares)
        {
            // A worker that finished early may take a second start of the same run: it then shares another's front.
            int own = (Interlocked.Increment(ref _participants) - 1) % _shareCount;
            while (Take(own, fromBack: false, out item))
            {
                job.Execute(item);
            }

            for (int step = 1; step < _shareCount; step++)
            {
                while (Take((own + step) % _shareCount, fromBack: true, out item))
                {
                    job.Execute(item);
                }
            }

            return;
        }

        while ((item = Interlocked.Increment(ref _nextItem)) < _itemCount)
        {
            job.Execute(item);
        }
    }

    private static long Pack(int front, int end) => (uint)front | ((long)end << 32);

    /// <summary>
    /// Takes an item of share <paramref name="share"/>, if any is left: its owner's next from the front, or, for another
    /// thread, its last from the back.
    /// </summary>
    private bool Take(int share, bool fromBack, out int item)
    {
        while (true)
        {
            long packed = Volatile.Read(ref _shares[share]);
            int front = (int)packed, end = (int)(packed >> 32);
            if (front >= end)
            {
                item = -1;
                return false;
            }

            long taken = fromBack ? Pack(front, end - 1) : Pack(front + 1, end);
            if (Interlocked.CompareExchange(ref _shares[share], taken, packed) == packed)
            {
                item = fromBack ? end - 1 : front;
                return true;
            }
        }
    }

    /// <summary>Runs items until none are left; a failure stops the others taking more and is rethrown by <see cref="Run"/>.</summary>
    private void RunItemsCatching(Job job)
    {
        try
        {
            RunItems(job);
        }
        catch (Exception exception)
        {
            _failure = exception;
            Interlocked.Exchange(ref _nextItem, _itemCount);
            for (int p = 0; p < _shareCount; p++)
            {
                Interlocked.Exchange(ref _shares[p], 0);
            }
        }
    }

    private void EnsureStarted()
    {
        if (_started)
        {
            return;
        }

        for (int i = 0; i < _workers; i++)
        {
            new Thread(WorkerLoop) { IsBackground = true, Name = "SparseAttention worker " + i }.Start();
        }

        _started = true;
    }

    private void WorkerLoop()
    {
        while (true)
        {
            WaitForStart();
            RunItemsCatching(_job!);
            Interlocked.Decrement(ref _activeWorkers);
        }
    }

    /// <summary>
    /// How long a worker that has finished its items keeps looking for the next run before it sleeps: 50 us. Calls come
    /// back to back in a model (decode runs one per layer, a few microseconds apart), and a worker woken from the
    /// semaphore starts tens of microseconds after the caller on a VM, so the caller ends up running the late worker's
    /// items: fp32 decode at 64K took 0.85-0.97x the time per token with the spin, Forward at 4K 0.99x. ONNX Runtime's and
    /// OpenMP's pools spin for the same reason (OpenMP for far longer).
    /// </summary>
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 20_000;

    /// <summary>Takes the next start: by spinning for <see cref="SpinTicks"/>, then by sleeping on the semaphore.</summary>
    private void WaitForStart()
    {
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
        var spinner = new SpinWait();
        while (System.Diagnostics.Stopwatch.GetTimestamp() < until)
        {
            if (_start.CurrentCount > 0 && _start.Wait(0))
            {
                return;
            }

            spinner.SpinOnce(sleep1Threshold: -1);
        }

        _start.Wait();
    }
}
