using System;
using System.Collections.Generic;
using System.Linq;

namespace SparseAttention
{
    /// <summary>
    /// Global tokens (Longformer, attention sinks): a global token's row sees every key and its column is seen by every
    /// query. Segments: the global columns, ascending, neighbours merged into runs once earlier components' keys are out.
    /// Never a band: the tiled kernels add global columns per row and compute global rows whole.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class GlobalTokensComponent : PatternComponent
    {
        private readonly int[] _positions;

        /// <summary>Creates the component; duplicates are ignored.</summary>
        /// <exception cref="ArgumentException">A position is negative.</exception>
        public GlobalTokensComponent(IEnumerable<int> positions)
        {
            int[] values = positions?.ToArray() ?? throw new ArgumentNullException(nameof(positions));
            if (FindProblem(values) is string problem)
            {
                throw new ArgumentException(problem, "globalTokens");
            }

            _positions = values.Distinct().OrderBy(position => position).ToArray();
        }

        /// <summary>The message for an impossible position, or null.</summary>
        public static string? FindProblem(IReadOnlyList<int> positions)
        {
            foreach (int position in positions)
            {
                if (position < 0)
                {
                    return "Global token positions are 0-based and cannot be negative; got " + position + ".";
                }
            }

            return null;
        }

        /// <summary>The global positions, ascending and distinct.</summary>
        public IReadOnlyList<int> Positions => _positions;

        internal override int Order => 9;

        /// <summary>Whether <paramref name="position"/> is a global token (most positions are past the last one: one compare).</summary>
        public bool IsGlobal(int position) => _positions.Length > 0 && position <= _positions[_positions.Length - 1] && LowerBound(position) is int at && _positions[at] == position;

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength) => IsGlobal(query) || IsGlobal(key);

        /// <inheritdoc />
        public override bool CoversRow(int query, int head, int seqLength) => IsGlobal(query);

        internal override bool CanCoverRows => true;

        /// <summary>Global columns next to each other (0, 1, 2 as sinks) read as one run.</summary>
        internal override bool MergesNeighbours => true;

        /// <inheritdoc />
        public override int MaxSegments => _positions.Length;

        /// <summary>Single positions are never cut into more pieces, so earlier components only remove some.</summary>
        internal override long MaxSegmentsAfter(IReadOnlyList<PatternComponent> earlier) => _positions.Length;

        /// <summary>One segment per global column up to <paramref name="lastKey"/>; the pattern merges neighbours.</summary>
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            int count = 0;
            foreach (int position in _positions)
            {
                if (position > lastKey)
                {
                    break;
                }

                destination[count++] = new KeySegment(position, 1, 1);
            }

            return count;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            int rows = CountIn(queryFirst, queryLast), columns = CountIn(keyFirst, keyLast);
            if (rows == queryLast - queryFirst + 1 || columns == keyLast - keyFirst + 1)
            {
                return TileClass.Full;
            }

            return rows > 0 || columns > 0 ? TileClass.Partial : TileClass.Empty;
        }

        /// <summary>Global positions in [first, last].</summary>
        public int CountIn(int first, int last)
        {
            int from = LowerBound(first), to = LowerBound(last + 1L);
            return to - from;
        }

        private int LowerBound(long value)
        {
            int low = 0, high = _positions.Length;
            while (low < high)
            {
                int middle = (low + high) >> 1;
                if (_positions[middle] < value)
                {
                    low = middle + 1;
                }
                else
                {
                    high = middle;
                }
            }

            return low;
        }

        /// <inheritdoc />
        public override string? FindStreamingProblem() => null;

        internal override long StreamingReach => _positions.Length > 0 ? _positions[_positions.Length - 1] : 0;

        internal override IReadOnlyList<int> PinnedPositions => _positions;

        internal override (long Back, long Forward) ReachPerLayer(bool causal) => (long.MaxValue, causal ? 0 : long.MaxValue);

        internal override bool IsGlobalPair(int query, int key, int head, int seqLength) => Contains(query, key, head, seqLength);

        /// <inheritdoc />
        public override string Describe(bool causal) => "global tokens at " + string.Join(", ", _positions);

        /// <inheritdoc />
        public override string ToCSharp() => "new global::SparseAttention.GlobalTokensComponent(" + IntArray(_positions) + ")";
    }
}
