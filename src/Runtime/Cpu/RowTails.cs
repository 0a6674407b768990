using System;

namespace SparseAttention.Cpu;

/// <summary>
/// The keys a tile plan leaves to the row kernel, per row: the segments of the components after a head's tiled prefix,
/// less the prefix's keys (or the whole row, where a later component covers it), as
/// <see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment}, int, out int)"/> writes them. They depend
/// only on the pattern, the sequence length and the head's class (heads h and h + HeadPeriod see the same keys), so they
/// are worked out once per class while the plan holds, in a parallel pass, instead of once per head on every call: the
/// union with the earlier keys taken out costs tens of nanoseconds a row, a few percent of a short call (Longformer at
/// n = 4096). See docs/design.md §7.
/// </summary>
internal sealed class RowTails
{
    /// <summary>The most segments the table holds (12 bytes each); a plan that needs more computes each row's tail as it goes.</summary>
    private const long MaxTableSegments = 1 << 20;

    /// <summary>A test on its own thread sets this to 0 to make its plans compute each row's tail as they go.</summary>
    [ThreadStatic]
    internal static long? TableLimitForTests;

    /// <summary>Rows per work item of the filling pass.</summary>
    private const int RowsPerItem = 256;

    private KeySegment[] _segments = Array.Empty<KeySegment>();
    private int[] _counts = Array.Empty<int>();
    private int[] _coveredBy = Array.Empty<int>();

    // Per row: the first row of the run of consecutive rows, within its filling item, whose tails (and coveredBy) are all
    // the same as this row's. A tile's rows share one tail when the last one's run starts at or before the first.
    private int[] _runStart = Array.Empty<int>();
    private int _classes, _seqLen, _stride;
    private AttentionPattern? _pattern;
    private int[] _tiledComponents = Array.Empty<int>();

    /// <summary>Whether the table is in use for the current plan.</summary>
    public bool InUse => _pattern is not null;

    /// <summary>Whether the table holds every row's tail (after <see cref="Fill"/> has run over <see cref="Items"/>).</summary>
    public bool Filled { get; set; }

    /// <summary>Work items of the filling pass.</summary>
    public int Items => _classes * ((_seqLen + RowsPerItem - 1) / RowsPerItem);

    /// <summary>
    /// Sizes the table for a new plan, or leaves it out of use: when no head has a row tail, when heads of one class would
    /// tile differently, or when it would be larger than <see cref="MaxTableSegments"/>.
    /// </summary>
    public void Plan(AttentionPattern pattern, int heads, int seqLen, int[] tiledComponents)
    {
        Clear();
        int components = pattern.Components.Count;
        int classes = Math.Min(heads, pattern.HeadPeriod);
        int stride = 1;
        bool anyTail = false;
        for (int head = 0; head < heads; head++)
        {
            int tiled = tiledComponents[head];
            if (tiled != tiledComponents[head % classes])
            {
                return;
            }

            if (tiled < components)
            {
                anyTail = true;
                stride = Math.Max(stride, pattern.MaxSegmentsFrom(tiled));
            }
        }

        long rows = (long)classes * seqLen;
        if (!anyTail || rows * stride > (TableLimitForTests ?? MaxTableSegments))
        {
            return;
        }

        CpuAttention.Grow(ref _segments, (int)(rows * stride));
        CpuAttention.Grow(ref _counts, (int)rows);
        CpuAttention.Grow(ref _coveredBy, (int)rows);
        CpuAttention.Grow(ref _runStart, (int)rows);
        CpuAttention.Grow(ref _tiledComponents, classes);
        Array.Copy(tiledComponents, _tiledComponents, classes);
        _pattern = pattern;
        _classes = classes;
        _seqLen = seqLen;
        _stride = stride;
    }

    /// <summary>Takes the table out of use (a prefill chunk's plan: its rows map keys to cache slots).</summary>
    public void Clear()
    {
        Filled = false;
        _pattern = null;
    }

    /// <summary>Fills one work item's rows of one head class; <paramref name="scratch"/> holds a row's full segment bound.</summary>
    public void Fill(int item, Span<KeySegment> scratch)
    {
        int blocks = (_seqLen + RowsPerItem - 1) / RowsPerItem;
        int headClass = item / blocks, first = item % blocks * RowsPerItem, end = Math.Min(_seqLen, first + RowsPerItem);
        int tiled = _tiledComponents[headClass];
        if (tiled >= _pattern!.Components.Count)
        {
            return;
        }

        for (int row = first; row < end; row++)
        {
            int at = headClass * _seqLen + row;
            int count = _pattern.GetKeySegments(row, headClass, _seqLen, scratch, tiled, out int coveredBy);
            scratch.Slice(0, count).CopyTo(_segments.AsSpan(at * _stride, _stride));
            _counts[at] = count;
            _coveredBy[at] = coveredBy;
            bool sameAsPrevious = row > first && _coveredBy[at - 1] == coveredBy
                && Get(headClass, row - 1, out _).SequenceEqual(Get(headClass, row, out _));
            _runStart[at] = sameAsPrevious ? _runStart[at - 1] : row;
        }
    }

    /// <summary>
    /// Whether rows <paramref name="first"/> .. first + rows - 1 of <paramref name="head"/> surely have one tail (the same
    /// segments and coveredBy); false may also mean the run was cut at a filling item's edge (the caller compares then).
    /// </summary>
    public bool SharedByRun(int head, int first, int rows) => _runStart[head % _classes * _seqLen + first + rows - 1] <= first;

    /// <summary>Row <paramref name="position"/>'s tail for <paramref name="head"/>; <paramref name="coveredBy"/> as GetKeySegments gives it.</summary>
    public ReadOnlySpan<KeySegment> Get(int head, int position, out int coveredBy)
    {
        int at = head % _classes * _seqLen + position;
        coveredBy = _coveredBy[at];
        return new ReadOnlySpan<KeySegment>(_segments, at * _stride, _counts[at]);
    }
}
