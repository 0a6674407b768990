using System;
using System.Collections.Generic;
using System.Linq;

namespace SparseAttention
{
    /// <summary>
    /// The sliding window (Mistral, Longformer): query i sees keys i + t·D for t in [-Left, Right], D the head's dilation.
    /// Segments: one, the window's keys in ascending order. Tiles: one band over residue streams of step D.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class WindowComponent : PatternComponent
    {
        private readonly int[] _dilations;

        /// <summary>Creates a window of <paramref name="left"/> steps back and <paramref name="right"/> forward.</summary>
        /// <param name="left">Window steps visible before the query (FlashAttention's left).</param>
        /// <param name="right">Window steps visible after the query (FlashAttention's right).</param>
        /// <param name="dilations">Per-head dilations, repeating over heads; empty means 1.</param>
        /// <exception cref="ArgumentException">A value is out of range.</exception>
        public WindowComponent(int left, int right, IEnumerable<int>? dilations = null)
        {
            _dilations = dilations?.ToArray() ?? new int[0];
            string? problem = FindProblem(left, right, _dilations, out string parameter);
            if (problem != null)
            {
                throw new ArgumentException(problem, parameter);
            }

            Left = left;
            Right = right;
            MaxDilation = _dilations.Length == 0 ? 1 : _dilations.Max();
        }

        /// <summary>The message for impossible window values, or null; <paramref name="parameter"/> names the culprit.</summary>
        public static string? FindProblem(int left, int right, IReadOnlyList<int> dilations, out string parameter)
        {
            parameter = "";
            if (left < 0)
            {
                parameter = "windowLeft";
                return "SlidingWindow Left must be 0 or more (it counts window steps before the query); got " + left + ".";
            }

            if (right < 0)
            {
                parameter = "windowRight";
                return "SlidingWindow Right must be 0 or more (it counts window steps after the query); got " + right + ".";
            }

            foreach (int value in dilations)
            {
                if (value < 1)
                {
                    parameter = "dilation";
                    return "Dilation values must be 1 or more (1 means no dilation); got " + value + ".";
                }
            }

            return null;
        }

        /// <summary>Window steps before the query.</summary>
        public int Left { get; }

        /// <summary>Window steps after the query (before the causal cut).</summary>
        public int Right { get; }

        /// <summary>Per-head dilations, repeating; empty means 1.</summary>
        public IReadOnlyList<int> Dilations => _dilations;

        /// <summary>The largest dilation of any head.</summary>
        public int MaxDilation { get; }

        internal override int Order => 0;

        /// <inheritdoc />
        public override int HeadPeriod => Math.Max(1, _dilations.Length);

        /// <summary>The dilation of query head <paramref name="head"/>.</summary>
        public int DilationOf(int head) => _dilations.Length == 0 ? 1 : _dilations[head % _dilations.Length];

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength)
        {
            long offset = (long)key - query;
            long dilation = DilationOf(head);
            return offset % dilation == 0 && offset >= -(long)Left * dilation && offset <= (long)Right * dilation;
        }

        /// <inheritdoc />
        public override int MaxSegments => 1;

        internal override long LargestSegmentStep => MaxDilation;

        /// <inheritdoc />
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            // A pattern asks with 0 <= query <= lastKey, so int division rounds the right way and no product passes lastKey;
            // this runs once per row in the tiled kernels' row tails, so it avoids 64-bit division (and any, undilated).
            int dilation = DilationOf(head);
            int back = Math.Min(Left, dilation == 1 ? query : query / dilation);
            int forward = Math.Min(Right, dilation == 1 ? lastKey - query : (lastKey - query) / dilation);
            destination[0] = new KeySegment(query - back * dilation, dilation, back + forward + 1);
            return 1;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            // Over the block's pairs, key - query takes every value in [lowest, highest].
            long lowest = (long)keyFirst - queryLast, highest = (long)keyLast - queryFirst;
            long dilation = DilationOf(head);
            long reachBack = (long)Left * dilation, reachForward = (long)Right * dilation;
            if (dilation == 1 && lowest >= -reachBack && highest <= reachForward)
            {
                return TileClass.Full;
            }

            long from = Math.Max(lowest, -reachBack), to = Math.Min(highest, reachForward);
            return from <= to && KeySegmentMath.FloorDiv(to, dilation) * dilation >= from ? TileClass.Partial : TileClass.Empty;
        }

        internal override TileBands? GetTileBands(int head, bool causal, IReadOnlyList<PatternComponent> earlierTiled) =>
            earlierTiled.Count == 0 ? new TileBands(DilationOf(head), (Left, causal ? 0 : Right)) : null;

        /// <inheritdoc />
        public override string? FindStreamingProblem() => null;

        internal override long StreamingReach => (long)Left * MaxDilation;

        internal override (long Back, long Forward) ReachPerLayer(bool causal) => ((long)Left * MaxDilation, causal ? 0 : (long)Right * MaxDilation);

        /// <inheritdoc />
        public override string Describe(bool causal)
        {
            int right = causal ? 0 : Right;
            string text = "sliding window: " + Left + " step(s) back, " + right + " forward";
            if (causal && Right == 0)
            {
                text += " (Size = " + ((long)Left + 1) + " keys including the query)";
            }

            if (MaxDilation > 1)
            {
                text += ", dilation " + string.Join(", ", _dilations) + (_dilations.Length > 1 ? " per head" : "");
            }

            return text;
        }

        /// <inheritdoc />
        public override string ToCSharp() =>
            "new global::SparseAttention.WindowComponent(left: " + Invariant(Left) + ", right: " + Invariant(Right) + ", dilations: " + IntArray(_dilations) + ")";
    }
}
