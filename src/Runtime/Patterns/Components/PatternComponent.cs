using System;
using System.Collections.Generic;

namespace SparseAttention
{
    /// <summary>How much of a (query tile, key tile) block a pattern makes visible.</summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    enum TileClass
    {
        /// <summary>No pair is visible: the block is skipped.</summary>
        Empty = 0,

        /// <summary>Some pairs are visible: each needs a per-pair test (or the kernel's own band arithmetic).</summary>
        Partial = 1,

        /// <summary>Every pair is visible: no mask at all.</summary>
        Full = 2,
    }

    /// <summary>
    /// One part of a pattern's union: a sliding window, a stride, global tokens, the fixed factorized pattern, block-sparse
    /// blocks. An <see cref="AttentionPattern"/> is the union of its components, then the causal cut (docs/design.md §2).
    /// Every component answers the same questions, and everything that needs a pattern's meaning (kernels, decode, the
    /// reference, pair counts, pictures, the generator) asks them through <see cref="AttentionPattern"/>, so a new kind is
    /// one new file. All answers are before the causal cut; the pattern applies it.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    abstract class PatternComponent
    {
        /// <summary>
        /// Where this kind sits in a pattern's component order, which is the order of its key segments: band components
        /// (window, stride) first, because tile kernels run them first, then block components, then global tokens.
        /// </summary>
        internal abstract int Order { get; }

        /// <summary>Whether the component's keys depend on the sequence length (it then needs it to answer anything).</summary>
        public virtual bool DependsOnSequenceLength => false;

        /// <summary>Heads h and h + HeadPeriod see the same keys: pair counts and tables are computed once per residue.</summary>
        public virtual int HeadPeriod => 1;

        /// <summary>Whether key <paramref name="key"/> is in the component's set for query <paramref name="query"/> of head <paramref name="head"/>.</summary>
        public abstract bool Contains(int query, int key, int head, int seqLength);

        /// <summary>Whether the component makes every key visible to <paramref name="query"/> (a global row).</summary>
        public virtual bool CoversRow(int query, int head, int seqLength) => false;

        /// <summary>Whether <see cref="CoversRow"/> can ever be true; a pattern asks only such components, once per row.</summary>
        internal virtual bool CanCoverRows => false;

        /// <summary>Whether the pattern merges this component's single keys that end up next to each other into runs.</summary>
        internal virtual bool MergesNeighbours => false;

        /// <summary>The most segments <see cref="WriteSegments"/> writes for one query.</summary>
        public abstract int MaxSegments { get; }

        /// <summary>
        /// Steps of the runs this component's segments can have, the worst for cutting others: a later component's piece
        /// loses at most this many gaps per segment removed (<see cref="KeySegmentMath.MaxPieces"/>).
        /// </summary>
        internal virtual long LargestSegmentStep => 1;

        /// <summary>
        /// The most segments this component adds after the keys of <paramref name="earlier"/> components are taken out.
        /// Each earlier segment can cut a piece into <see cref="KeySegmentMath.MaxPieces"/> of its step.
        /// </summary>
        internal virtual long MaxSegmentsAfter(IReadOnlyList<PatternComponent> earlier)
        {
            long bound = MaxSegments;
            foreach (PatternComponent component in earlier)
            {
                for (int s = 0; s < component.MaxSegments && bound < 1 << 20; s++)
                {
                    bound *= KeySegmentMath.MaxPieces(component.LargestSegmentStep);
                }
            }

            return Math.Min(bound, 1 << 20);
        }

        /// <summary>
        /// Writes the component's keys for <paramref name="query"/> among positions 0 .. <paramref name="lastKey"/> as
        /// disjoint segments, in the order the kind documents, and returns how many it wrote.
        /// </summary>
        public abstract int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination);

        /// <summary>
        /// The class of the block queries [<paramref name="queryFirst"/>, <paramref name="queryLast"/>] x keys
        /// [<paramref name="keyFirst"/>, <paramref name="keyLast"/>] for this component alone. Partial may be answered for a
        /// block that is in fact empty or full (it only costs a per-pair test); Empty and Full must be exact.
        /// </summary>
        public abstract TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength);

        /// <summary>
        /// The band the tile kernel runs for this component in <paramref name="head"/>, if it has one: queries and keys with
        /// the same residue mod <see cref="TileBands.Step"/> form a stream in which query m sees stream keys m - Left .. m +
        /// Right of each band, less the keys of the <paramref name="earlierTiled"/> components (which ran before). Null when
        /// the component's keys cannot be written as such bands after those.
        /// </summary>
        internal virtual TileBands? GetTileBands(int head, bool causal, IReadOnlyList<PatternComponent> earlierTiled) => null;

        /// <summary>
        /// Query rows per block when the component runs as block tiles (a block of rows sees the same runs of keys), or 0.
        /// Block components run as tiles only as a pattern's first component.
        /// </summary>
        internal virtual int BlockRows => 0;

        /// <summary>The most runs <see cref="WriteBlockRuns"/> writes.</summary>
        internal virtual int MaxBlockRuns(int seqLength) => 0;

        /// <summary>
        /// The key runs query block <paramref name="queryBlock"/> (rows BlockRows x queryBlock onwards) sees, as runs of
        /// residue streams, after the causal cut when <paramref name="causal"/>: every key of a run is visible to every row
        /// of the block, except that a run marked <see cref="KeyRun.CausalCut"/> also drops keys after each row.
        /// </summary>
        internal virtual int WriteBlockRuns(int head, int queryBlock, int seqLength, bool causal, Span<KeyRun> destination) => 0;

        /// <summary>Keys in the component's gathered stream for <paramref name="head"/> (runs with step 0 index it), or 0.</summary>
        internal virtual int GatheredLength(int head, int seqLength) => 0;

        /// <summary>The position of key <paramref name="index"/> of <paramref name="head"/>'s gathered stream.</summary>
        internal virtual int GatheredPosition(int head, int index) => throw new NotSupportedException(GetType().Name + " has no gathered stream.");

        /// <summary>Heads with the same group share one gathered stream.</summary>
        internal virtual int GatherGroup(int head) => 0;

        /// <summary>
        /// Null when a rolling KV cache can serve this component, else why not and what to change (SPA0011's reason).
        /// </summary>
        public abstract string? FindStreamingProblem();

        /// <summary>
        /// Whether the component shows a query no key after it, whatever the pattern's causal flag (a 1-D neighbourhood that
        /// is causal along its axis): a pattern of only such components streams like a causal one.
        /// </summary>
        internal virtual bool SeesOnlyEarlierKeys => false;

        /// <summary>How far back (in positions) a streamed query can reach through this component: the ring it needs.</summary>
        internal virtual long StreamingReach => 0;

        /// <summary>Positions a rolling cache must keep pinned for this component (global tokens), ascending.</summary>
        internal virtual IReadOnlyList<int> PinnedPositions => Array.Empty<int>();

        /// <summary>How far back and forward one layer of this component reaches; <see cref="long.MaxValue"/> for unbounded.</summary>
        internal abstract (long Back, long Forward) ReachPerLayer(bool causal);

        /// <summary>The component in words, for <see cref="AttentionPattern.ToString"/> and generated headers.</summary>
        public abstract string Describe(bool causal);

        /// <summary>A C# expression that constructs this component, for generated code.</summary>
        public abstract string ToCSharp();

        /// <summary>Whether a (query, key) pair seen through this component is drawn as a "global" pair in pictures.</summary>
        internal virtual bool IsGlobalPair(int query, int key, int head, int seqLength) => false;

        internal static string Invariant(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

        internal static string IntArray(IReadOnlyList<int> values)
        {
            var text = new System.Text.StringBuilder("new int[] {");
            for (int i = 0; i < values.Count; i++)
            {
                text.Append(i == 0 ? " " : ", ").Append(Invariant(values[i]));
            }

            return text.Append(values.Count > 0 ? " }" : "}").ToString();
        }
    }

    /// <summary>
    /// A component's bands for the tile kernel: over residue streams of <see cref="Step"/>, query m sees stream keys
    /// m - Left .. m + Right of each band (a band may be shifted wholly before or after the query).
    /// </summary>
    internal sealed class TileBands
    {
        public TileBands(int step, params (long Left, long Right)[] bands)
        {
            Step = step;
            Bands = bands;
        }

        public int Step { get; }

        public (long Left, long Right)[] Bands { get; }
    }

    /// <summary>
    /// A run of keys a block of query rows sees: stream keys <see cref="First"/> .. <see cref="Last"/> of the residue
    /// stream (positions Residue, Residue + Step, ...), or of the component's gathered stream when Step is 0. With <see cref="CausalCut"/> (only in step-1 streams) each row also
    /// drops the keys after itself.
    /// </summary>
    internal readonly struct KeyRun
    {
        public KeyRun(int step, int residue, int first, int last, bool causalCut)
        {
            Step = step;
            Residue = residue;
            First = first;
            Last = last;
            CausalCut = causalCut;
        }

        public int Step { get; }

        public int Residue { get; }

        public int First { get; }

        public int Last { get; }

        public bool CausalCut { get; }
    }
}
