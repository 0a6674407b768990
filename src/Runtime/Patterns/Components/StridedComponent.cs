using System;
using System.Collections.Generic;

namespace SparseAttention
{
    /// <summary>
    /// The Sparse Transformer's strided component: query i sees keys j with (i - j) mod Stride == 0. Segments: one run of
    /// step Stride. Tiles: bands over residue streams of step Stride, split around a dilation-1 window that ran first.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class StridedComponent : PatternComponent
    {
        /// <summary>Creates a strided component.</summary>
        /// <exception cref="ArgumentException"><paramref name="stride"/> is less than 1.</exception>
        public StridedComponent(int stride)
        {
            if (FindProblem(stride) is string problem)
            {
                throw new ArgumentException(problem, nameof(stride));
            }

            Stride = stride;
        }

        /// <summary>The message for an impossible stride, or null.</summary>
        public static string? FindProblem(int stride) => stride >= 1 ? null : "Strided Stride must be 1 or more; got " + stride + ".";

        /// <summary>The distance between keys of a query's run.</summary>
        public int Stride { get; }

        internal override int Order => 1;

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength) => ((long)query - key) % Stride == 0;

        /// <inheritdoc />
        public override int MaxSegments => 1;

        internal override long LargestSegmentStep => Stride;

        /// <inheritdoc />
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            destination[0] = KeySegmentMath.Run(query % Stride, lastKey, Stride);
            return destination[0].Count > 0 ? 1 : 0;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            if (Stride == 1)
            {
                return TileClass.Full;
            }

            // query - key takes every value in [queryFirst - keyLast, queryLast - keyFirst]: does one hold a multiple of Stride?
            long from = (long)queryFirst - keyLast, to = (long)queryLast - keyFirst;
            return KeySegmentMath.FloorDiv(to, Stride) * Stride >= from ? TileClass.Partial : TileClass.Empty;
        }

        /// <summary>
        /// Alone, one band over the whole stream. After a dilation-1 window (which holds window keys i - t, 0 &lt;= t &lt;= Left,
        /// at stream offsets 0, -1, ..., -(Left / Stride)), the keys before it and, bidirectional, the keys after it.
        /// </summary>
        internal override TileBands? GetTileBands(int head, bool causal, IReadOnlyList<PatternComponent> earlierTiled)
        {
            if (earlierTiled.Count == 0)
            {
                return new TileBands(Stride, (int.MaxValue, causal ? 0 : int.MaxValue));
            }

            if (earlierTiled.Count != 1 || earlierTiled[0] is not WindowComponent window || window.DilationOf(head) != 1)
            {
                return null;
            }

            var before = (Left: (long)int.MaxValue, Right: -(window.Left / Stride + 1L));
            return causal
                ? new TileBands(Stride, before)
                : new TileBands(Stride, before, (-(window.Right / Stride + 1L), int.MaxValue));
        }

        /// <inheritdoc />
        public override string? FindStreamingProblem() =>
            "the strided component sees keys at every multiple of the stride back to the start, so its cache grows with the stream; "
            + "remove [Strided] (keep the window and pin what must stay visible with [GlobalTokens])";

        internal override (long Back, long Forward) ReachPerLayer(bool causal) => (long.MaxValue, causal ? 0 : long.MaxValue);

        /// <inheritdoc />
        public override string Describe(bool causal) => "strided: keys at distance a multiple of " + Stride;

        /// <inheritdoc />
        public override string ToCSharp() => "new global::SparseAttention.StridedComponent(stride: " + Invariant(Stride) + ")";
    }
}
