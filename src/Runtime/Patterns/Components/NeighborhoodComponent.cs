using System;
using System.Collections.Generic;
using System.Linq;

namespace SparseAttention
{
    /// <summary>
    /// Neighbourhood attention (NAT, DiNAT; NATTEN's semantics) on a grid of 1 to 3 axes whose tokens are flattened
    /// row-major, last axis fastest. Per axis of length L with kernel size k, dilation d and a query coordinate x: the
    /// query's residue class is ρ = x mod d, its sub-sequence has Lρ = ceil((L - ρ) / d) positions and its index there is
    /// x' = x div d. Not causal on the axis: keys at ρ + d·(s + t), t = 0 .. k - 1, with s = clamp(x' - k/2, 0, Lρ - k)
    /// (the window shifts at the borders so every query sees k keys, NATTEN's get_window_start for L ≥ k·d), or all Lρ
    /// positions of the class when Lρ &lt; k. Causal on the axis: ρ + d·t' for max(0, x' - k + 1) ≤ t' ≤ x'. A key is
    /// visible when it is in the query's set on every axis.
    /// </summary>
    /// <remarks>
    /// Segments: for each combination of the leading axes' key coordinates, in ascending order, one run along the last axis
    /// (step = its dilation). A component made without a grid (<see cref="Grid"/> null) takes a 1-axis grid of the whole
    /// sequence; with more axes it must be bound to a grid first (<see cref="WithGrid"/>), as a call's grid binds it, and
    /// answers ArgumentException (named on <c>grid</c>) until it is.
    /// </remarks>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class NeighborhoodComponent : PatternComponent
    {
        /// <summary>The most axes: NATTEN's 1-D, 2-D and 3-D.</summary>
        public const int MaxAxes = 3;

        private readonly int[] _kernel;
        private readonly int[] _dilation;
        private readonly bool[] _causal;
        private readonly int[]? _grid;

        /// <summary>Creates the component; <paramref name="dilation"/> and <paramref name="causalAxes"/> default to 1 and false per axis.</summary>
        /// <exception cref="ArgumentException">A value is out of range (see <see cref="FindProblem"/>), named on the parameter at fault.</exception>
        public NeighborhoodComponent(IReadOnlyList<int> kernelSize, IReadOnlyList<int>? dilation = null, IReadOnlyList<bool>? causalAxes = null, IReadOnlyList<int>? grid = null)
        {
            if (kernelSize is null)
            {
                throw new ArgumentNullException(nameof(kernelSize));
            }

            int[] dilations = dilation?.ToArray() ?? Enumerable.Repeat(1, kernelSize.Count).ToArray();
            bool[] causal = causalAxes?.ToArray() ?? new bool[kernelSize.Count];
            if (FindProblem(kernelSize, dilations, causal, out string parameter) is string problem)
            {
                throw new ArgumentException(problem, parameter);
            }

            if (grid is not null && FindGridProblem(kernelSize.Count, grid) is string gridProblem)
            {
                throw new ArgumentException(gridProblem, nameof(grid));
            }

            _kernel = kernelSize.ToArray();
            _dilation = dilations;
            _causal = causal;
            _grid = grid?.ToArray();
        }

        /// <summary>The message for impossible values and the parameter at fault (kernelSize, dilation or causalAxes), or null.</summary>
        public static string? FindProblem(IReadOnlyList<int> kernelSize, IReadOnlyList<int> dilation, IReadOnlyList<bool> causalAxes, out string parameter)
        {
            parameter = "kernelSize";
            if (kernelSize.Count < 1 || kernelSize.Count > MaxAxes)
            {
                return "A neighbourhood has 1 to " + MaxAxes + " axes (one kernel size per axis); got " + kernelSize.Count + ".";
            }

            foreach (int size in kernelSize)
            {
                if (size < 1)
                {
                    return "Neighbourhood kernel sizes must be 1 or more (keys per axis); got " + size + ".";
                }
            }

            parameter = "dilation";
            if (dilation.Count != kernelSize.Count)
            {
                return "Dilation needs one value per axis of the neighbourhood (" + kernelSize.Count + "); got " + dilation.Count + ".";
            }

            foreach (int value in dilation)
            {
                if (value < 1)
                {
                    return "Neighbourhood dilations must be 1 or more (1 means none); got " + value + ".";
                }
            }

            parameter = "causalAxes";
            if (causalAxes.Count != kernelSize.Count)
            {
                return "CausalAxes needs one value per axis of the neighbourhood (" + kernelSize.Count + "); got " + causalAxes.Count + ".";
            }

            return null;
        }

        /// <summary>The message for a grid that does not fit <paramref name="axes"/> axes, or null.</summary>
        public static string? FindGridProblem(int axes, IReadOnlyList<int> grid)
        {
            if (grid.Count != axes)
            {
                return "The grid needs one length per axis of the neighbourhood (" + axes + "); got " + grid.Count + ".";
            }

            foreach (int length in grid)
            {
                if (length < 1)
                {
                    return "Grid lengths must be 1 or more; got " + length + ".";
                }
            }

            return grid.Aggregate(1L, (product, length) => product * length) > int.MaxValue ? "The grid holds more than int.MaxValue tokens." : null;
        }

        /// <summary>Keys per axis.</summary>
        public IReadOnlyList<int> KernelSize => _kernel;

        /// <summary>Dilation per axis.</summary>
        public IReadOnlyList<int> Dilation => _dilation;

        /// <summary>Whether each axis is causal (keys at or before the query's coordinate only).</summary>
        public IReadOnlyList<bool> CausalAxes => _causal;

        /// <summary>The grid the component is bound to (lengths per axis), or null: a 1-axis component then spans the sequence.</summary>
        public IReadOnlyList<int>? Grid => _grid;

        /// <summary>Axes of the neighbourhood.</summary>
        public int Axes => _kernel.Length;

        /// <summary>The same neighbourhood on <paramref name="grid"/>.</summary>
        /// <exception cref="ArgumentException">The grid has the wrong number of axes or a length below 1 (named on <c>grid</c>).</exception>
        public NeighborhoodComponent WithGrid(IReadOnlyList<int> grid) => new(_kernel, _dilation, _causal, grid);

        internal override int Order => 4;

        /// <inheritdoc />
        public override bool DependsOnSequenceLength => true;

        /// <inheritdoc />
        public override int MaxSegments
        {
            get
            {
                int segments = 1;
                for (int axis = 0; axis < _kernel.Length - 1; axis++)
                {
                    segments *= _kernel[axis];
                }

                return segments;
            }
        }

        internal override long LargestSegmentStep => _dilation[_dilation.Length - 1];

        /// <summary>
        /// The key coordinates a query at <paramref name="x"/> sees along one axis of length <paramref name="length"/>:
        /// first, first + dilation, ... (<paramref name="count"/> of them), by the definition above.
        /// </summary>
        public static void AxisKeys(int x, int length, int kernel, int dilation, bool causal, out int first, out int count)
        {
            int residue = x % dilation, index = x / dilation;
            int classLength = (length - residue + dilation - 1) / dilation;
            int start;
            if (causal)
            {
                start = Math.Max(0, index - kernel + 1);
                count = index - start + 1;
            }
            else if (classLength < kernel)
            {
                start = 0;
                count = classLength;
            }
            else
            {
                start = Math.Min(Math.Max(index - kernel / 2, 0), classLength - kernel);
                count = kernel;
            }

            first = residue + dilation * start;
        }

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength)
        {
            Span<int> grid = stackalloc int[MaxAxes];
            grid = grid.Slice(0, ReadGrid(seqLength, grid));
            for (int axis = grid.Length - 1; axis >= 0; axis--)
            {
                int x = query % grid[axis], y = key % grid[axis];
                query /= grid[axis];
                key /= grid[axis];
                AxisKeys(x, grid[axis], _kernel[axis], _dilation[axis], _causal[axis], out int first, out int count);
                if (y < first || (y - first) % _dilation[axis] != 0 || (y - first) / _dilation[axis] >= count)
                {
                    return false;
                }
            }

            return true;
        }

        /// <inheritdoc />
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            // One run along the last axis per key line of the query's line (WriteKeyLines: ascending, so the runs are too).
            Span<int> grid = stackalloc int[MaxAxes];
            int last = ReadGrid(seqLength, grid) - 1, length = grid[last];
            AxisKeys(query % length, length, _kernel[last], _dilation[last], _causal[last], out int first, out int count);
            Span<int> lineStarts = stackalloc int[MaxSegments];
            Span<int> slots = stackalloc int[MaxSegments];
            Span<int> counts = stackalloc int[MaxAxes];
            int lines = WriteKeyLines(query / length, seqLength, lineStarts, slots, counts), written = 0;
            for (int line = 0; line < lines; line++)
            {
                long start = (long)lineStarts[line] + first;
                if (start > lastKey)
                {
                    break;
                }

                int runCount = (int)Math.Min(count, (lastKey - start) / _dilation[last] + 1);
                destination[written++] = new KeySegment((int)start, _dilation[last], runCount);
            }

            return written;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            // Exact for Empty: a query whose keys' span (from the axes alone, no runs) misses the tile is skipped at once,
            // which is most of them when a GPU table asks about every tile; otherwise its runs are checked. Full is never
            // answered (it would need every row's runs to hold the whole tile); the tile then has a mask.
            Span<int> grid = stackalloc int[MaxAxes];
            int axes = ReadGrid(seqLength, grid);
            Span<KeySegment> runs = stackalloc KeySegment[MaxSegments];
            for (int query = queryFirst; query <= queryLast; query++)
            {
                long lowest = 0, highest = 0, stride = 1;
                for (int axis = axes - 1, remaining = query; axis >= 0; axis--)
                {
                    AxisKeys(remaining % grid[axis], grid[axis], _kernel[axis], _dilation[axis], _causal[axis], out int first, out int count);
                    lowest += first * stride;
                    highest += (first + (long)(count - 1) * _dilation[axis]) * stride;
                    remaining /= grid[axis];
                    stride *= grid[axis];
                }

                if (lowest > keyLast || highest < keyFirst)
                {
                    continue;
                }

                int written = WriteSegments(query, head, seqLength, seqLength - 1, runs);
                for (int s = 0; s < written; s++)
                {
                    KeySegment run = runs[s];
                    if (run.Start <= keyLast && run.Last >= keyFirst)
                    {
                        // The run's first key at or after keyFirst.
                        long at = run.Start >= keyFirst ? run.Start : run.Start + ((long)keyFirst - run.Start + run.Step - 1) / run.Step * run.Step;
                        if (at <= keyLast && at <= run.Last)
                        {
                            return TileClass.Partial;
                        }
                    }
                }
            }

            return TileClass.Empty;
        }

        /// <inheritdoc />
        public override string? FindStreamingProblem() =>
            _kernel.Length == 1 && _causal[0] ? null
            : _kernel.Length > 1 ? "a neighbourhood over " + _kernel.Length + " axes reaches whole grid rows ahead of the query; only a 1-D neighbourhood causal along its axis can be decoded token by token"
            : "a neighbourhood that is not causal along its axis sees keys after the query; declare CausalAxes = new[] { true } to decode it";

        internal override bool SeesOnlyEarlierKeys => _kernel.Length == 1 && _causal[0];

        internal override long StreamingReach => (long)(_kernel[0] - 1) * _dilation[0];

        internal override (long Back, long Forward) ReachPerLayer(bool causal)
        {
            if (_kernel.Length > 1)
            {
                return (long.MaxValue, long.MaxValue);
            }

            // A bordered window shifts: the first query sees k - 1 steps forward, the last k - 1 back.
            long reach = (long)(_kernel[0] - 1) * _dilation[0];
            return (reach, _causal[0] ? 0 : reach);
        }

        /// <inheritdoc />
        public override string Describe(bool causal)
        {
            string text = "neighbourhood " + string.Join(" x ", _kernel);
            if (_dilation.Any(value => value > 1))
            {
                text += ", dilation " + string.Join(" x ", _dilation);
            }

            if (_causal.Any(value => value))
            {
                text += ", causal along axes " + string.Join(", ", Enumerable.Range(0, _causal.Length).Where(axis => _causal[axis]));
            }

            return _grid is null ? text : text + " on a " + string.Join(" x ", _grid) + " grid";
        }

        /// <inheritdoc />
        public override string ToCSharp() =>
            "new global::SparseAttention.NeighborhoodComponent(kernelSize: " + IntArray(_kernel) + ", dilation: " + IntArray(_dilation) +
            ", causalAxes: new bool[] { " + string.Join(", ", _causal.Select(value => value ? "true" : "false")) + " }" +
            (_grid is null ? "" : ", grid: " + IntArray(_grid)) + ")";

        /// <summary>
        /// The grid a call of <paramref name="seqLength"/> tokens runs on (the bound grid, or the whole sequence as one
        /// axis), written to <paramref name="grid"/>; returns its axes. For schedules that walk the grid line by line.
        /// </summary>
        internal int WriteGrid(int seqLength, Span<int> grid) => ReadGrid(seqLength, grid);

        /// <summary>
        /// The key lines of query line <paramref name="line"/>, a line being the grid's tokens that differ only in the last
        /// axis's coordinate (line ℓ holds tokens ℓ·L .. ℓ·L + L - 1 for a last axis of length L): the first token of each
        /// line holding keys the line's queries see, ascending. Every query of a line sees the same key lines, because
        /// their leading coordinates are the same; only the columns within those lines depend on the last coordinate.
        /// Returns how many were written (M, at most <see cref="MaxSegments"/>).
        /// </summary>
        /// <remarks>
        /// Each key line also gets a slot in 0 .. M - 1 that depends only on the line itself and on how many keys the query
        /// line sees per leading axis (<paramref name="counts"/>): per axis, the key's index in its residue class modulo
        /// that count (a query sees count consecutive indices, so they take distinct values), combined like digits. A
        /// neighbouring query line with the same counts sees the same lines in the same slots but the one or few that
        /// slid in, which take the slots of those that slid out: a schedule that keeps key lines by slot gathers only those.
        /// </remarks>
        internal int WriteKeyLines(int line, int seqLength, Span<int> lineStarts, Span<int> slots, Span<int> counts)
        {
            Span<int> grid = stackalloc int[MaxAxes];
            int axes = ReadGrid(seqLength, grid), last = axes - 1;
            Span<int> first = stackalloc int[MaxAxes];
            Span<int> startIndex = stackalloc int[MaxAxes];
            Span<int> stride = stackalloc int[MaxAxes];
            int remaining = line, step = grid[last];
            for (int axis = last - 1; axis >= 0; axis--)
            {
                stride[axis] = step;
                int x = remaining % grid[axis];
                AxisKeys(x, grid[axis], _kernel[axis], _dilation[axis], _causal[axis], out first[axis], out counts[axis]);
                startIndex[axis] = first[axis] / _dilation[axis];
                remaining /= grid[axis];
                step *= grid[axis];
            }

            // An odometer over the leading axes, axis 0 slowest, so the lines come out ascending (WriteSegments relies on it).
            Span<int> at = stackalloc int[MaxAxes];
            at.Clear();
            int written = 0;
            while (true)
            {
                int start = 0, slot = 0;
                for (int axis = 0; axis < last; axis++)
                {
                    start += (first[axis] + at[axis] * _dilation[axis]) * stride[axis];
                    slot = slot * counts[axis] + (startIndex[axis] + at[axis]) % counts[axis];
                }

                lineStarts[written] = start;
                slots[written++] = slot;
                int carry = last - 1;
                while (carry >= 0 && ++at[carry] == counts[carry])
                {
                    at[carry] = 0;
                    carry--;
                }

                if (carry < 0)
                {
                    return written;
                }
            }
        }

        /// <summary>Writes the grid the component answers on (its own, or the whole sequence as one axis) and returns its axes.</summary>
        private int ReadGrid(int seqLength, Span<int> grid)
        {
            if (_grid is not null)
            {
                _grid.AsSpan().CopyTo(grid);
                return _grid.Length;
            }

            if (_kernel.Length > 1)
            {
                throw new ArgumentException("A neighbourhood over " + _kernel.Length + " axes needs the grid its tokens lie on: call the Forward overload that takes a GridShape (or bind the pattern with OnGrid/WithGrid).", "grid");
            }

            grid[0] = seqLength;
            return 1;
        }
    }
}
