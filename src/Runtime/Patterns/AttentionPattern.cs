using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace SparseAttention
{
    /// <summary>
    /// A structured sparse attention pattern: which keys each query may see. This one class is the meaning
    /// of every pattern attribute. The runtime, the reference implementation and the generated kernels all
    /// use it, and the source generator compiles this same file, so they can never disagree.
    /// </summary>
    /// <remarks>
    /// <code>
    /// visible(i, j) = (window(i,j) OR strided(i,j) OR global(i,j)) AND (not Causal OR j &lt;= i)
    /// </code>
    /// A pattern with no component at all is dense (causal or not). See docs/design.md §2.
    /// </remarks>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed partial class AttentionPattern
    {
        private readonly int[] _dilations;
        private readonly int[] _globalTokens;
        private readonly HashSet<int> _globalSet;

        /// <summary>
        /// Creates a pattern. Leave <paramref name="windowLeft"/> and <paramref name="windowRight"/> null for
        /// no sliding window, and <paramref name="stride"/> null for no strided component.
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
        {
            _dilations = dilation?.ToArray() ?? new int[0];
            int[] globals = globalTokens?.ToArray() ?? new int[0];
            string? problem = FindProblem(windowLeft, windowRight, _dilations, globals, stride, out string parameter);
            if (problem != null)
            {
                throw new ArgumentException(problem, parameter);
            }

            Causal = causal;
            HasWindow = windowLeft.HasValue || windowRight.HasValue;
            WindowLeft = windowLeft ?? 0;
            WindowRight = windowRight ?? 0;
            Stride = stride ?? 0;
            _globalTokens = globals.Distinct().OrderBy(position => position).ToArray();
            _globalSet = new HashSet<int>(_globalTokens);
            MaxDilation = _dilations.Length == 0 ? 1 : _dilations.Max();
        }

        /// <summary>Whether keys after the query are always invisible.</summary>
        public bool Causal { get; }

        /// <summary>Whether the pattern has a sliding-window component.</summary>
        public bool HasWindow { get; }

        /// <summary>Window steps visible before the query (0 when there is no window).</summary>
        public int WindowLeft { get; }

        /// <summary>Window steps visible after the query, before the causal cut (0 when there is no window).</summary>
        public int WindowRight { get; }

        /// <summary>The strided component's stride, or 0 when there is none.</summary>
        public int Stride { get; }

        /// <summary>Per-head window dilations, repeating over heads; empty means 1 for every head.</summary>
        public IReadOnlyList<int> Dilations => _dilations;

        /// <summary>Global token positions, sorted and without duplicates.</summary>
        public IReadOnlyList<int> GlobalTokens => _globalTokens;

        /// <summary>True when the pattern has no component, so every (causal) pair is visible.</summary>
        public bool IsDense => !HasWindow && Stride == 0 && _globalTokens.Length == 0;

        /// <summary>The largest dilation of any head.</summary>
        public int MaxDilation { get; }

        /// <summary>
        /// The most segments <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/> can write for one query: size a buffer with it.
        /// </summary>
        public int MaxSegmentsPerQuery => 3 + MaxDilation + _globalTokens.Length;

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
        /// Checks pattern parameters and returns a message saying what to change, or null when they are valid.
        /// The generator reports the same messages as compile-time diagnostics.
        /// </summary>
        public static string? FindProblem(int? windowLeft, int? windowRight, IReadOnlyList<int> dilation, IReadOnlyList<int> globalTokens, int? stride, out string parameter)
        {
            parameter = "";
            if (windowLeft < 0)
            {
                parameter = "windowLeft";
                return "SlidingWindow Left must be 0 or more (it counts window steps before the query); got " + windowLeft + ".";
            }

            if (windowRight < 0)
            {
                parameter = "windowRight";
                return "SlidingWindow Right must be 0 or more (it counts window steps after the query); got " + windowRight + ".";
            }

            if (windowLeft == null && windowRight == null && dilation.Count > 0)
            {
                parameter = "dilation";
                return "Dilation spaces out the sliding window's keys, but the pattern has no sliding window; add one or drop the dilation.";
            }

            foreach (int value in dilation)
            {
                if (value < 1)
                {
                    parameter = "dilation";
                    return "Dilation values must be 1 or more (1 means no dilation); got " + value + ".";
                }
            }

            foreach (int position in globalTokens)
            {
                if (position < 0)
                {
                    parameter = "globalTokens";
                    return "Global token positions are 0-based and cannot be negative; got " + position + ".";
                }
            }

            if (stride < 1)
            {
                parameter = "stride";
                return "Strided Stride must be 1 or more; got " + stride + ".";
            }

            return null;
        }

        /// <summary>The window dilation of query head <paramref name="head"/>.</summary>
        public int DilationOf(int head) => _dilations.Length == 0 ? 1 : _dilations[head % _dilations.Length];

        /// <summary>Whether <paramref name="position"/> is a global token.</summary>
        public bool IsGlobal(int position) => _globalSet.Contains(position);

        /// <summary>
        /// Whether query <paramref name="query"/> may attend key <paramref name="key"/> in query head
        /// <paramref name="head"/>: the pattern's definition, written directly from docs/design.md §2.
        /// </summary>
        public bool IsVisible(int query, int key, int head = 0)
        {
            if (query < 0 || key < 0)
            {
                return false;
            }

            if (Causal && key > query)
            {
                return false;
            }

            if (IsDense || IsGlobal(query) || IsGlobal(key))
            {
                return true;
            }

            if (HasWindow)
            {
                long offset = (long)key - query;
                long dilation = DilationOf(head);
                if (offset % dilation == 0 && offset >= -(long)WindowLeft * dilation && offset <= (long)WindowRight * dilation)
                {
                    return true;
                }
            }

            return Stride > 0 && ((long)query - key) % Stride == 0;
        }

        /// <summary>
        /// The pattern's band for query head <paramref name="head"/>, if it has one: the sliding window (or, for a
        /// dense pattern, the whole causal or bidirectional row), seen as a plain band over one residue class.
        /// Queries and keys with the same residue mod <paramref name="dilation"/> form a stream in which query m
        /// sees keys m - <paramref name="left"/> .. m + <paramref name="right"/>; tiled kernels run that band and
        /// treat everything else (strided runs, global columns, global rows) per row. For a non-global query the
        /// band's keys are exactly the first segment <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/> returns.
        /// </summary>
        public bool TryGetBand(int head, out int dilation, out long left, out long right)
        {
            if (IsDense)
            {
                dilation = 1;
                left = int.MaxValue;
                right = Causal ? 0 : int.MaxValue;
                return true;
            }

            dilation = DilationOf(head);
            left = WindowLeft;
            right = Causal ? 0 : WindowRight;
            return HasWindow;
        }

        /// <summary>
        /// The strided component as bands over residue streams of step <see cref="Stride"/>, for heads where that
        /// is exact: the head's window (if any) has dilation 1. Queries and keys with the same residue mod Stride
        /// form a stream in which query m sees the strided keys m - left .. m + right, less the ones the window
        /// already holds. Causal, or with no forward window, that is one band (<paramref name="before"/>); a
        /// bidirectional window splits it into the keys before and after the window (<paramref name="after"/>).
        /// A band's right may be negative: it starts before the query. The runs these bands cover are exactly the
        /// strided segments <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/> returns for a non-global query of such a head.
        /// </summary>
        public bool TryGetStridedBands(int head, out (long Left, long Right) before, out (long Left, long Right)? after)
        {
            before = (0, 0);
            after = null;
            if (Stride == 0 || IsDense || (HasWindow && DilationOf(head) != 1))
            {
                return false;
            }

            if (!HasWindow)
            {
                before = (int.MaxValue, Causal ? 0 : int.MaxValue);
                return true;
            }

            // Window keys i - t for 0 <= t <= Left sit at stream offsets 0, -1, ..., -(Left / Stride).
            before = (int.MaxValue, -(WindowLeft / Stride + 1L));
            if (!Causal)
            {
                after = (-(WindowRight / Stride + 1L), int.MaxValue);
            }

            return true;
        }

        /// <summary>
        /// Writes the keys that query <paramref name="query"/> of head <paramref name="head"/> sees in a
        /// sequence of <paramref name="seqLength"/> tokens, as disjoint segments in no particular order, and
        /// returns how many it wrote. Every key of every segment is visible and every visible key is in exactly
        /// one segment, so a kernel needs no mask. <paramref name="destination"/> needs
        /// <see cref="MaxSegmentsPerQuery"/> entries.
        /// </summary>
        public int GetKeySegments(int query, int head, int seqLength, Span<KeySegment> destination) =>
            GetKeySegments(query, head, seqLength, destination, out _);

        /// <summary>
        /// As <see cref="GetKeySegments(int, int, int, Span{KeySegment})"/>, and reports in
        /// <paramref name="firstGlobalSegment"/> the index of the first global-column segment: segments before it
        /// are the window's (first) and the strided runs, segments from it on the global columns.
        /// </summary>
        public int GetKeySegments(int query, int head, int seqLength, Span<KeySegment> destination, out int firstGlobalSegment)
        {
            firstGlobalSegment = 0;
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
            if (IsDense || IsGlobal(query))
            {
                destination[0] = new KeySegment(0, 1, lastKey + 1);
                firstGlobalSegment = 1;
                return 1;
            }

            int count = 0;

            // Window: keys query + t*D for t in [-Left, Right], cut to [0, lastKey].
            bool hasWindowSegment = false;
            long windowFirst = 0, windowLast = -1;
            int dilation = DilationOf(head);
            if (HasWindow)
            {
                long firstStep = Math.Max(-(long)WindowLeft, -(long)(query / dilation));
                long lastStep = Math.Min(WindowRight, (lastKey - (long)query) / dilation);
                windowFirst = query + firstStep * dilation;
                windowLast = query + lastStep * dilation;
                destination[count++] = new KeySegment((int)windowFirst, dilation, (int)(lastStep - firstStep + 1));
                hasWindowSegment = true;
            }

            // Strided: keys congruent to the query mod Stride, less those the window already holds.
            if (Stride > 0)
            {
                int firstStrided = query % Stride;
                if (!hasWindowSegment)
                {
                    count = AddRun(destination, count, firstStrided, lastKey, Stride);
                }
                else
                {
                    count = AddRun(destination, count, firstStrided, windowFirst - 1, Stride);
                    count = AddRun(destination, count, FirstAtOrAfter(windowLast + 1, query, Stride), lastKey, Stride);
                    if (dilation > 1)
                    {
                        count = AddStridedInsideDilatedWindow(destination, count, query, dilation, windowFirst, windowLast);
                    }
                }
            }

            // Global columns not already held by the window or the strided runs; neighbours merge into one run.
            int mergeFrom = count;
            firstGlobalSegment = count;
            foreach (int global in _globalTokens)
            {
                if (global > lastKey)
                {
                    break;
                }

                bool inWindow = hasWindowSegment && global >= windowFirst && global <= windowLast && ((long)global - query) % dilation == 0;
                bool inStrided = Stride > 0 && ((long)query - global) % Stride == 0;
                if (inWindow || inStrided)
                {
                    continue;
                }

                if (count > mergeFrom && destination[count - 1].Last == global - 1)
                {
                    KeySegment run = destination[count - 1];
                    destination[count - 1] = new KeySegment(run.Start, 1, run.Count + 1);
                }
                else
                {
                    destination[count++] = new KeySegment(global, 1, 1);
                }
            }

            return count;
        }

        /// <summary>
        /// Strided keys inside a dilated window's span that the window skips: keys query + Stride*u whose offset
        /// is not a multiple of the dilation. Offsets Stride*u are multiples of D exactly when u is a multiple of
        /// P = D / gcd(Stride, D), so the keys left over are P - 1 runs of step Stride*P.
        /// </summary>
        private int AddStridedInsideDilatedWindow(Span<KeySegment> destination, int count, int query, int dilation, long windowFirst, long windowLast)
        {
            long period = dilation / Gcd(Stride, dilation);
            long firstU = CeilDiv(windowFirst - query, Stride);
            long lastU = FloorDiv(windowLast - query, Stride);
            for (long residue = 1; residue < period; residue++)
            {
                long u = firstU + Mod(residue - firstU, period);
                if (u > lastU)
                {
                    continue;
                }

                long runCount = (lastU - u) / period + 1;
                destination[count++] = new KeySegment((int)(query + Stride * u), (int)(Stride * period), (int)runCount);
            }

            return count;
        }

        private static int AddRun(Span<KeySegment> destination, int count, long first, long last, long step)
        {
            if (first > last)
            {
                return count;
            }

            destination[count] = new KeySegment((int)first, (int)step, (int)((last - first) / step + 1));
            return count + 1;
        }

        /// <summary>The first position at or after <paramref name="from"/> congruent to <paramref name="anchor"/> mod <paramref name="step"/>.</summary>
        private static long FirstAtOrAfter(long from, long anchor, long step) => from + Mod(anchor - from, step);

        private static long Mod(long value, long modulus) => ((value % modulus) + modulus) % modulus;

        private static long FloorDiv(long value, long divisor) => value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor);

        private static long CeilDiv(long value, long divisor) => -FloorDiv(-value, divisor);

        private static long Gcd(long a, long b)
        {
            while (b != 0)
            {
                long t = a % b;
                a = b;
                b = t;
            }

            return a;
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

            if (HasWindow)
            {
                int right = Causal ? 0 : WindowRight;
                text.Append(", sliding window: ").Append(WindowLeft).Append(" step(s) back, ").Append(right).Append(" forward");
                if (Causal && WindowRight == 0)
                {
                    text.Append(" (Size = ").Append((long)WindowLeft + 1).Append(" keys including the query)");
                }

                if (MaxDilation > 1)
                {
                    text.Append(", dilation ").Append(string.Join(", ", _dilations)).Append(_dilations.Length > 1 ? " per head" : "");
                }
            }

            if (Stride > 0)
            {
                text.Append(", strided: keys at distance a multiple of ").Append(Stride);
            }

            if (_globalTokens.Length > 0)
            {
                text.Append(", global tokens at ").Append(string.Join(", ", _globalTokens));
            }

            return text.ToString();
        }
    }
}
