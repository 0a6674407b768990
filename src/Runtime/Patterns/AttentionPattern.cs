using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace SparseAttention
{
    /// <summary>
    /// A structured sparse attention pattern: which keys each query may see. A pattern is the union of its
    /// <see cref="Components"/> (window, stride, fixed factorized, block-sparse, global tokens), then the causal cut:
    /// <code>
    /// visible(i, j, h) = (any component contains (i, j, h)) AND (not Causal OR j &lt;= i)
    /// </code>
    /// A pattern with no component is dense. The runtime, the reference implementation and the generated kernels all ask
    /// this class, and the source generator compiles this same file, so they can never disagree. See docs/design.md §2.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed partial class AttentionPattern
    {
        private readonly PatternComponent[] _components;
        private readonly WindowComponent? _window;
        private readonly StridedComponent? _strided;
        private readonly GlobalTokensComponent? _globals;
        private readonly int[] _segmentStartBound;

        /// <summary>
        /// Creates a pattern from the classic components. Leave <paramref name="windowLeft"/> and <paramref name="windowRight"/>
        /// null for no sliding window, and <paramref name="stride"/> null for no strided component.
        /// </summary>
        /// <param name="causal">Whether keys after the query are always invisible.</param>
        /// <param name="windowLeft">Window steps visible before the query (FlashAttention's left).</param>
        /// <param name="windowRight">Window steps visible after the query (FlashAttention's right).</param>
        /// <param name="dilation">Window dilation, one value per head, repeating. Null or empty means 1.</param>
        /// <param name="globalTokens">Global token positions.</param>
        /// <param name="stride">Strided component: keys with <c>(i - j) mod stride == 0</c>.</param>
        /// <exception cref="ArgumentException">A value is out of range; the message says which and why.</exception>
        public AttentionPattern(
            bool causal,
            int? windowLeft = null,
            int? windowRight = null,
            IEnumerable<int>? dilation = null,
            IEnumerable<int>? globalTokens = null,
            int? stride = null)
            : this(causal, ClassicComponents(windowLeft, windowRight, dilation?.ToArray() ?? new int[0], globalTokens?.ToArray() ?? new int[0], stride))
        {
        }

        /// <summary>Entries the subtraction work buffer needs (see <see cref="SubtractAll"/>).</summary>
        private readonly int _subtractionWorkLength;

        /// <summary>Indices of the components that can see a row whole, in order (the others are never asked per row).</summary>
        private readonly int[] _rowCoverers;

        /// <summary>Per component, <see cref="PatternComponent.MergesNeighbours"/>, read once per row.</summary>
        private readonly bool[] _mergesNeighbours;

        /// <summary>Creates a pattern as the union of <paramref name="components"/> (at most one of each kind), then the causal cut.</summary>
        /// <exception cref="ArgumentException">Two components are of the same kind, or a block-sparse component was made for the other causal direction.</exception>
        public AttentionPattern(bool causal, IEnumerable<PatternComponent> components)
        {
            _components = (components ?? throw new ArgumentNullException(nameof(components))).OrderBy(component => component.Order).ToArray();
            for (int i = 1; i < _components.Length; i++)
            {
                if (_components[i].Order == _components[i - 1].Order)
                {
                    throw new ArgumentException("A pattern holds at most one component of each kind; got two " + _components[i].GetType().Name + ".", nameof(components));
                }
            }

            // Random blocks are drawn among earlier blocks when causal, so a component built for the other direction would
            // give a different pattern than its own definition.
            if (_components.OfType<BlockSparseComponent>().FirstOrDefault() is { } blockSparse && blockSparse.Causal != causal)
            {
                throw new ArgumentException("The BlockSparseComponent was created with causal: " + (blockSparse.Causal ? "true" : "false") + " but the pattern is " + (causal ? "causal" : "bidirectional") + "; create it with the pattern's causal flag.", nameof(components));
            }

            Neighborhood = _components.OfType<NeighborhoodComponent>().FirstOrDefault();
            if (causal && Neighborhood is not null)
            {
                throw new ArgumentException("A pattern with a neighbourhood is not causal as a whole: causality is per axis (NeighborhoodComponent's causalAxes).", nameof(causal));
            }

            Causal = causal;
            _window = _components.OfType<WindowComponent>().FirstOrDefault();
            _strided = _components.OfType<StridedComponent>().FirstOrDefault();
            _globals = _components.OfType<GlobalTokensComponent>().FirstOrDefault();
            DependsOnSequenceLength = _components.Any(component => component.DependsOnSequenceLength);
            _rowCoverers = Enumerable.Range(0, _components.Length).Where(c => _components[c].CanCoverRows).ToArray();
            _mergesNeighbours = _components.Select(component => component.MergesNeighbours).ToArray();

            // Where each component's segments can start in a row's list, and so how many a row can need.
            _segmentStartBound = new int[_components.Length + 1];
            long bound = 0;
            for (int c = 0; c < _components.Length; c++)
            {
                _segmentStartBound[c] = (int)bound;
                bound = Math.Min(bound + _components[c].MaxSegmentsAfter(new ArraySegment<PatternComponent>(_components, 0, c)), 1 << 20);
            }

            _segmentStartBound[_components.Length] = (int)bound;
            MaxSegmentsPerQuery = (int)Math.Max(1, bound);

            // Subtracting one cut writes at most the kept pieces plus MaxPieces of the cut's step before the bound is
            // checked; sizing the work buffer for that up front means it does not grow on a later call when a cut first
            // meets a piece (a steady-state decode must not allocate). Huge steps are left to grow on demand.
            long largestStep = _components.Length == 0 ? 1 : _components.Max(component => component.LargestSegmentStep);
            _subtractionWorkLength = (int)Math.Min(1 << 20, MaxSegmentsPerQuery + Math.Min(1024, KeySegmentMath.MaxPieces(largestStep)));
        }

        private static PatternComponent[] ClassicComponents(int? windowLeft, int? windowRight, int[] dilation, int[] globalTokens, int? stride)
        {
            string? problem = FindProblem(windowLeft, windowRight, dilation, globalTokens, stride, out string parameter);
            if (problem != null)
            {
                throw new ArgumentException(problem, parameter);
            }

            var components = new List<PatternComponent>();
            if (windowLeft.HasValue || windowRight.HasValue)
            {
                components.Add(new WindowComponent(windowLeft ?? 0, windowRight ?? 0, dilation));
            }

            if (stride is int value)
            {
                components.Add(new StridedComponent(value));
            }

            if (globalTokens.Length > 0)
            {
                components.Add(new GlobalTokensComponent(globalTokens));
            }

            return components.ToArray();
        }

        /// <summary>Whether keys after the query are always invisible.</summary>
        public bool Causal { get; }

        /// <summary>The components, in the pattern's order (window, strided, fixed factorized, block-sparse, global tokens).</summary>
        public IReadOnlyList<PatternComponent> Components => _components;

        /// <summary>Whether a component needs the sequence length to say what is visible (block-sparse): use the overloads that take it.</summary>
        public bool DependsOnSequenceLength { get; }

        /// <summary>Whether the pattern has a sliding-window component.</summary>
        public bool HasWindow => _window != null;

        /// <summary>Window steps visible before the query (0 when there is no window).</summary>
        public int WindowLeft => _window?.Left ?? 0;

        /// <summary>Window steps visible after the query, before the causal cut (0 when there is no window).</summary>
        public int WindowRight => _window?.Right ?? 0;

        /// <summary>The strided component's stride, or 0 when there is none.</summary>
        public int Stride => _strided?.Stride ?? 0;

        /// <summary>Per-head window dilations, repeating over heads; empty means 1 for every head.</summary>
        public IReadOnlyList<int> Dilations => _window?.Dilations ?? Array.Empty<int>();

        /// <summary>Global token positions, sorted and without duplicates.</summary>
        public IReadOnlyList<int> GlobalTokens => _globals?.Positions ?? Array.Empty<int>();

        /// <summary>True when the pattern has no component, so every (causal) pair is visible.</summary>
        public bool IsDense => _components.Length == 0;

        /// <summary>The largest dilation of any head.</summary>
        public int MaxDilation => _window?.MaxDilation ?? 1;

        /// <summary>The most segments <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/> can write for one query: size a buffer with it.</summary>
        public int MaxSegmentsPerQuery { get; }

        /// <summary>
        /// The most segments <see cref="GetKeySegments(int, int, int, Span{KeySegment}, int, out int)"/> writes from component
        /// <paramref name="component"/> on (at least 1: a covered row's one segment).
        /// </summary>
        internal int MaxSegmentsFrom(int component) => Math.Max(1, MaxSegmentsPerQuery - _segmentStartBound[component]);

        /// <summary>Heads h and h + HeadPeriod see the same keys (the least common period of the components, capped).</summary>
        public int HeadPeriod
        {
            get
            {
                long period = 1;
                foreach (PatternComponent component in _components)
                {
                    period = period / KeySegmentMath.Gcd(period, component.HeadPeriod) * component.HeadPeriod;
                    if (period >= int.MaxValue)
                    {
                        return int.MaxValue;
                    }
                }

                return (int)period;
            }
        }

        /// <summary>Creates a dense pattern.</summary>
        public static AttentionPattern Dense(bool causal = true) => new AttentionPattern(causal);

        /// <summary>Mistral-style causal sliding window of <paramref name="size"/> keys including the query.</summary>
        public static AttentionPattern SlidingWindow(int size)
        {
            string? problem = FindWindowSizeProblem(size);
            if (problem != null)
            {
                throw new ArgumentException(problem, nameof(size));
            }

            return new AttentionPattern(causal: true, windowLeft: size - 1, windowRight: 0);
        }

        /// <summary>The message for an impossible <c>SlidingWindow(Size = W)</c>, or null when W is valid.</summary>
        public static string? FindWindowSizeProblem(int size) => size >= 1 ? null
            : "SlidingWindow Size counts the keys a query sees, itself included, so it must be at least 1; got " + size + ".";

        /// <summary>
        /// Checks the classic pattern parameters and returns a message saying what to change, or null when they are valid.
        /// The generator reports the same messages as compile-time diagnostics.
        /// </summary>
        public static string? FindProblem(int? windowLeft, int? windowRight, IReadOnlyList<int> dilation, IReadOnlyList<int> globalTokens, int? stride, out string parameter)
        {
            parameter = "";
            if (windowLeft == null && windowRight == null && dilation.Count > 0)
            {
                foreach (int value in dilation)
                {
                    if (value < 1)
                    {
                        parameter = "dilation";
                        return "Dilation values must be 1 or more (1 means no dilation); got " + value + ".";
                    }
                }

                parameter = "dilation";
                return "Dilation spaces out the sliding window's keys, but the pattern has no sliding window; add one or drop the dilation.";
            }

            if (windowLeft != null || windowRight != null)
            {
                string? windowProblem = WindowComponent.FindProblem(windowLeft ?? 0, windowRight ?? 0, dilation, out parameter);
                if (windowProblem != null)
                {
                    return windowProblem;
                }
            }

            if (GlobalTokensComponent.FindProblem(globalTokens) is string globalProblem)
            {
                parameter = "globalTokens";
                return globalProblem;
            }

            if (stride is int value2 && StridedComponent.FindProblem(value2) is string strideProblem)
            {
                parameter = "stride";
                return strideProblem;
            }

            return null;
        }

        /// <summary>The window dilation of query head <paramref name="head"/> (1 without a window).</summary>
        public int DilationOf(int head) => _window?.DilationOf(head) ?? 1;

        /// <summary>Whether <paramref name="position"/> is a global token.</summary>
        public bool IsGlobal(int position) => _globals?.IsGlobal(position) ?? false;

        /// <summary>
        /// Whether query <paramref name="query"/> may attend key <paramref name="key"/> in query head <paramref name="head"/>,
        /// for a pattern whose components do not depend on the sequence length (see <see cref="DependsOnSequenceLength"/>).
        /// </summary>
        /// <exception cref="InvalidOperationException">The pattern needs the sequence length: use the overload that takes it.</exception>
        public bool IsVisible(int query, int key, int head = 0)
        {
            if (DependsOnSequenceLength)
            {
                throw new InvalidOperationException("This pattern's visibility depends on the sequence length (" + ToString() + "); call IsVisible(query, key, head, seqLength).");
            }

            return IsVisible(query, key, head, Math.Max(query, key) + 1);
        }

        /// <summary>
        /// Whether query <paramref name="query"/> may attend key <paramref name="key"/> in query head <paramref name="head"/> of a
        /// sequence of <paramref name="seqLength"/> tokens: the definition, docs/design.md §2, written directly.
        /// </summary>
        public bool IsVisible(int query, int key, int head, int seqLength) =>
            InStructure(query, key, head, seqLength) && (Mask is null || Mask(query, key, head));

        /// <summary>
        /// A compiled-in mask (<c>[AttentionMask]</c>) AND-ed with the structure, or null. The kernels evaluate it on the
        /// pairs the structure visits; <see cref="IsVisible(int, int, int, int)"/>, pair counts and pictures include it;
        /// key segments and tile plans describe the structure alone.
        /// </summary>
        public Func<int, int, int, bool>? Mask { get; private set; }

        /// <summary>This pattern with <paramref name="mask"/> AND-ed into its visibility (the same components).</summary>
        public AttentionPattern WithMask(Func<int, int, int, bool> mask) =>
            new AttentionPattern(Causal, _components) { Mask = mask ?? throw new ArgumentNullException(nameof(mask)) };

        /// <summary>The pattern's neighbourhood (<c>[Neighborhood]</c>), or null.</summary>
        public NeighborhoodComponent? Neighborhood { get; }

        /// <summary>
        /// This pattern on a grid of <paramref name="grid"/> lengths per axis (row-major tokens, last axis fastest): the same
        /// components and mask, its neighbourhood bound to the grid, for a call whose SeqLen is the grid's product.
        /// </summary>
        /// <exception cref="InvalidOperationException">The pattern has no neighbourhood.</exception>
        /// <exception cref="ArgumentException">The grid does not fit the neighbourhood (named on <c>grid</c>).</exception>
        public AttentionPattern WithGrid(IReadOnlyList<int> grid)
        {
            NeighborhoodComponent neighborhood = Neighborhood ?? throw new InvalidOperationException("This pattern has no neighbourhood, so a grid means nothing to it.");
            return new AttentionPattern(Causal, _components.Select(component => ReferenceEquals(component, neighborhood) ? neighborhood.WithGrid(grid) : component)) { Mask = Mask };
        }

#if !SPARSEATTENTION_GENERATOR
        /// <summary>
        /// <see cref="WithGrid"/> for a call: checks that <paramref name="grid"/> has one length per axis of the neighbourhood
        /// and holds <paramref name="seqLength"/> tokens, and returns the bound pattern, the same instance for the same grid
        /// (a GPU keeps its tile tables per pattern instance, and a warm call should find them).
        /// </summary>
        /// <exception cref="ArgumentException">The grid does not fit (named on <c>grid</c>).</exception>
        /// <exception cref="InvalidOperationException">The pattern has no neighbourhood.</exception>
        public AttentionPattern OnGrid(GridShape grid, int seqLength) => OnGrid(grid.Lengths, seqLength);
#endif

        /// <summary>As the overload taking a <c>GridShape</c>, the lengths as a span.</summary>
        public AttentionPattern OnGrid(ReadOnlySpan<int> grid, int seqLength)
        {
            NeighborhoodComponent neighborhood = Neighborhood ?? throw new InvalidOperationException("This pattern has no neighbourhood, so a grid means nothing to it.");
            long tokens = 1;
            foreach (int length in grid)
            {
                tokens *= Math.Max(0, length);
            }

            if (grid.Length != neighborhood.Axes || tokens != seqLength)
            {
                throw new ArgumentException($"grid must hold {neighborhood.Axes} length(s), one per axis of the neighbourhood, whose product is shape.SeqLen = {seqLength}; got [{string.Join(", ", grid.ToArray())}] ({tokens} tokens).", "grid");
            }

            lock (_boundToGrids)
            {
                foreach (AttentionPattern bound in _boundToGrids)
                {
                    if (SameLengths(grid, bound.Neighborhood!.Grid!))
                    {
                        return bound;
                    }
                }

                AttentionPattern created = WithGrid(grid.ToArray());
                if (_boundToGrids.Count == MaxBoundGrids)
                {
                    _boundToGrids.RemoveAt(0);
                }

                _boundToGrids.Add(created);
                return created;
            }
        }

        /// <summary>Element by element, so finding a bound pattern again allocates nothing (a warm Forward allocates nothing).</summary>
        private static bool SameLengths(ReadOnlySpan<int> grid, IReadOnlyList<int> bound)
        {
            if (grid.Length != bound.Count)
            {
                return false;
            }

            for (int axis = 0; axis < grid.Length; axis++)
            {
                if (grid[axis] != bound[axis])
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>Grids kept bound per pattern (a model uses a few: one per stage of a vision transformer).</summary>
        private const int MaxBoundGrids = 16;

        private readonly List<AttentionPattern> _boundToGrids = new();

        /// <summary>
        /// Whether the pattern's structure (its components and the causal cut, without <see cref="Mask"/>) lets query
        /// <paramref name="query"/> see key <paramref name="key"/>: what the kernels visit, and what the NaN/Inf policy
        /// calls visible (docs/design.md §4).
        /// </summary>
        public bool InStructure(int query, int key, int head, int seqLength)
        {
            if (query < 0 || key < 0 || query >= seqLength || key >= seqLength)
            {
                return false;
            }

            if (Causal && key > query)
            {
                return false;
            }

            if (_components.Length == 0)
            {
                return true;
            }

            foreach (PatternComponent component in _components)
            {
                if (component.CoversRow(query, head, seqLength) || component.Contains(query, key, head, seqLength))
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>
        /// The class of queries [<paramref name="queryFirst"/>, <paramref name="queryLast"/>] x keys [<paramref name="keyFirst"/>,
        /// <paramref name="keyLast"/>] in head <paramref name="head"/>: the union of the components' classes (full if any is full,
        /// empty if all are empty), then the causal cut. Empty and Full are exact; Partial means a per-pair test is needed.
        /// </summary>
        public TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            if (Causal && keyFirst > queryLast)
            {
                return TileClass.Empty;
            }

            TileClass union = TileClass.Empty;
            if (_components.Length == 0)
            {
                union = TileClass.Full;
            }

            foreach (PatternComponent component in _components)
            {
                TileClass tileClass = component.ClassifyTile(head, queryFirst, queryLast, keyFirst, keyLast, seqLength);
                if (tileClass == TileClass.Full)
                {
                    union = TileClass.Full;
                    break;
                }

                if (tileClass == TileClass.Partial)
                {
                    union = TileClass.Partial;
                }
            }

            // A mask can hide any pair, so with one a full tile is only partial (the kernels test each pair).
            return union == TileClass.Full && ((Causal && keyLast > queryFirst) || Mask is not null) ? TileClass.Partial : union;
        }

        /// <summary>
        /// Writes the keys that query <paramref name="query"/> of head <paramref name="head"/> sees in a sequence of
        /// <paramref name="seqLength"/> tokens as disjoint segments and returns how many it wrote. Every key of every
        /// segment is visible and every visible key is in exactly one segment, so a kernel needs no mask.
        /// The order is a contract (docs/design.md §2.3): a row that a component covers whole is one segment [0, last key];
        /// otherwise the components' segments come in component order, each component's keys less those of earlier
        /// components, in the order its kind documents (the window's one segment first). <paramref name="destination"/>
        /// needs <see cref="MaxSegmentsPerQuery"/> entries.
        /// </summary>
        public int GetKeySegments(int query, int head, int seqLength, Span<KeySegment> destination) =>
            GetKeySegments(query, head, seqLength, destination, 0, out _);

        /// <summary>
        /// As <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/>, writing only the segments of components from index
        /// <paramref name="fromComponent"/> on (still less the keys of the earlier ones): what a kernel that ran the earlier
        /// components as tiles has left. <paramref name="coveredBy"/> is the index of the first component that covers the row
        /// whole (the one segment is then [0, last key] whatever <paramref name="fromComponent"/> is), or -1.
        /// </summary>
        public int GetKeySegments(int query, int head, int seqLength, Span<KeySegment> destination, int fromComponent, out int coveredBy)
        {
            coveredBy = -1;
            if ((uint)query >= (uint)seqLength)
            {
                throw new ArgumentOutOfRangeException(nameof(query), "query must be in [0, seqLength).");
            }

            if (destination.Length < MaxSegmentsPerQuery)
            {
                throw new ArgumentException("destination needs " + MaxSegmentsPerQuery + " entries.", nameof(destination));
            }

            // Keys beyond this one are never visible to this query.
            int lastKey = Causal ? query : seqLength - 1;
            if (_components.Length == 0)
            {
                destination[0] = new KeySegment(0, 1, lastKey + 1);
                return 1;
            }

            foreach (int c in _rowCoverers)
            {
                if (_components[c].CoversRow(query, head, seqLength))
                {
                    coveredBy = c;
                    destination[0] = new KeySegment(0, 1, lastKey + 1);
                    return 1;
                }
            }

            // Each component's keys less those of the components before it. The earlier keys are read where they were
            // written (a per-thread buffer for components before fromComponent, destination for the rest), never copied:
            // this runs once per row in the tiled kernels' row tails, where a copy costs as much as the arithmetic.
            SegmentBuffers buffers = SegmentBuffers.ForThisThread(MaxSegmentsPerQuery, _subtractionWorkLength);
            Span<KeySegment> skipped = buffers.Earlier;
            int skippedCount = 0, count = 0;
            for (int c = 0; c < _components.Length; c++)
            {
                PatternComponent component = _components[c];
                Span<KeySegment> raw = buffers.Raw;
                int rawCount = component.WriteSegments(query, head, seqLength, lastKey, raw);
                Span<KeySegment> target = c >= fromComponent ? destination.Slice(count) : skipped.Slice(skippedCount);
                int written = SubtractAll(raw.Slice(0, rawCount), skipped.Slice(0, skippedCount), destination.Slice(0, count), target, buffers);
                if (written > 1 && _mergesNeighbours[c])
                {
                    written = MergeNeighbours(target.Slice(0, written));
                }

                if (c >= fromComponent)
                {
                    count += written;
                }
                else
                {
                    skippedCount += written;
                }
            }

            return count;
        }

        /// <summary>
        /// Writes <paramref name="pieces"/> less every key of <paramref name="removed"/> and <paramref name="alsoRemoved"/> to
        /// <paramref name="destination"/>.
        /// </summary>
        private static int SubtractAll(ReadOnlySpan<KeySegment> pieces, ReadOnlySpan<KeySegment> removed, ReadOnlySpan<KeySegment> alsoRemoved, Span<KeySegment> destination, SegmentBuffers buffers)
        {
            for (int p = 0; p < pieces.Length; p++)
            {
                destination[p] = pieces[p];
            }

            int count = pieces.Length;
            count = SubtractEach(destination, count, removed, buffers);
            return SubtractEach(destination, count, alsoRemoved, buffers);
        }

        /// <summary>Takes every cut in <paramref name="removed"/> out of the first <paramref name="count"/> pieces of <paramref name="pieces"/>, in place.</summary>
        private static int SubtractEach(Span<KeySegment> pieces, int count, ReadOnlySpan<KeySegment> removed, SegmentBuffers buffers)
        {
            foreach (KeySegment cut in removed)
            {
                // Most cuts miss every piece (a window far from the global columns): then nothing to rewrite.
                if (!AnyOverlaps(pieces.Slice(0, count), cut))
                {
                    continue;
                }

                int next = 0;
                for (int p = 0; p < count; p++)
                {
                    if (buffers.Work.Length - next < KeySegmentMath.MaxPieces(cut.Step))
                    {
                        Array.Resize(ref buffers.Work, (int)Math.Min(int.MaxValue / 2, 2L * buffers.Work.Length + KeySegmentMath.MaxPieces(cut.Step)));
                    }

                    next += KeySegmentMath.Subtract(pieces[p], cut, buffers.Work.AsSpan(next));
                }

                if (next > pieces.Length)
                {
                    throw new InvalidOperationException("A row's key segments outgrew MaxSegmentsPerQuery; this combination of components needs a larger bound.");
                }

                buffers.Work.AsSpan(0, next).CopyTo(pieces);
                count = next;
            }

            return count;
        }

        /// <summary>Whether a piece's range [Start, Last] meets <paramref name="cut"/>'s (a quick test before the exact one).</summary>
        private static bool AnyOverlaps(ReadOnlySpan<KeySegment> pieces, KeySegment cut)
        {
            if (cut.Count == 0)
            {
                return false;
            }

            foreach (KeySegment piece in pieces)
            {
                if (piece.Count > 0 && piece.Start <= cut.Last && cut.Start <= piece.Last)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>Merges single-key segments that follow each other into runs (global columns next to each other).</summary>
        private static int MergeNeighbours(Span<KeySegment> segments)
        {
            int count = 0;
            for (int s = 0; s < segments.Length; s++)
            {
                if (count > 0 && segments[count - 1].Step == 1 && segments[s].Step == 1 && segments[count - 1].Last == segments[s].Start - 1)
                {
                    KeySegment run = segments[count - 1];
                    segments[count - 1] = new KeySegment(run.Start, 1, run.Count + segments[s].Count);
                }
                else
                {
                    segments[count++] = segments[s];
                }
            }

            return count;
        }

        /// <summary>Per-thread buffers for <see cref="GetKeySegments(int, int, int, Span{KeySegment}, int, out int)"/>, so a warm call allocates nothing.</summary>
        private sealed class SegmentBuffers
        {
            [ThreadStatic]
            private static SegmentBuffers? t_instance;

            public KeySegment[] Earlier = new KeySegment[0];
            public KeySegment[] Raw = new KeySegment[0];
            public KeySegment[] Scratch = new KeySegment[0];
            public KeySegment[] Work = new KeySegment[0];

            public static SegmentBuffers ForThisThread(int maxSegments, int workLength)
            {
                SegmentBuffers buffers = t_instance ??= new SegmentBuffers();
                if (buffers.Earlier.Length < maxSegments)
                {
                    buffers.Earlier = new KeySegment[maxSegments];
                    buffers.Raw = new KeySegment[maxSegments];
                    buffers.Scratch = new KeySegment[maxSegments];
                }

                if (buffers.Work.Length < workLength)
                {
                    buffers.Work = new KeySegment[workLength];
                }

                return buffers;
            }
        }

        /// <summary>Describes the pattern in words, as the generated code's header comment does.</summary>
        public override string ToString()
        {
            var text = new StringBuilder();
            text.Append(Causal ? "causal" : "bidirectional");
            if (IsDense)
            {
                text.Append(", dense: every query sees ").Append(Causal ? "itself and every key before it" : "every key");
                return text.ToString();
            }

            foreach (PatternComponent component in _components)
            {
                text.Append(", ").Append(component.Describe(Causal));
            }

            return text.ToString();
        }

        /// <summary>A C# expression that constructs this pattern, for generated code.</summary>
        public string ToCSharp()
        {
            var text = new StringBuilder("new global::SparseAttention.AttentionPattern(causal: ").Append(Causal ? "true" : "false").Append(", components: new global::SparseAttention.PatternComponent[]");
            if (_components.Length == 0)
            {
                return text.Append(" { })").ToString();
            }

            text.Append("\n{\n");
            foreach (PatternComponent component in _components)
            {
                text.Append("    ").Append(component.ToCSharp()).Append(",\n");
            }

            return text.Append("})").ToString();
        }
    }
}
