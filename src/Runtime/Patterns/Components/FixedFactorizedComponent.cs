using System;
using System.Collections.Generic;

namespace SparseAttention
{
    /// <summary>
    /// The Sparse Transformer's fixed factorized pattern (Child et al. 2019, §4.3): query i sees key j when both are in the
    /// same block of <see cref="Block"/> positions, or when j is a summary position, one of the last <see cref="Summary"/>
    /// of its block. With <see cref="VaryByHead"/>, head h uses summary group g = h mod (Block / Summary): positions with
    /// Block - Summary·(g+1) &lt;= j mod Block &lt; Block - Summary·g.
    /// Segments: the query's own block, then each summary column (step Block) without the own block's key.
    /// Tiles: blocks of Block query rows; the own block as a (causal) rectangle, the summary positions of the head's group
    /// gathered into one stream in which block B sees a prefix (causal) or all but its own block's.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class FixedFactorizedComponent : PatternComponent
    {
        /// <summary>Creates the component.</summary>
        /// <exception cref="ArgumentException">Block or Summary is out of range, or VaryByHead with Block not a multiple of Summary.</exception>
        public FixedFactorizedComponent(int block, int summary, bool varyByHead = false)
        {
            if (FindProblem(block, summary, varyByHead, out string parameter) is string problem)
            {
                throw new ArgumentException(problem, parameter);
            }

            Block = block;
            Summary = summary;
            VaryByHead = varyByHead;
        }

        /// <summary>The message for impossible values, or null; <paramref name="parameter"/> names the culprit.</summary>
        public static string? FindProblem(int block, int summary, bool varyByHead, out string parameter)
        {
            parameter = "";
            if (block < 1)
            {
                parameter = "block";
                return "FixedFactorized Block is the number of positions per block and must be 1 or more; got " + block + ".";
            }

            if (summary < 1 || summary > block)
            {
                parameter = "summary";
                return "FixedFactorized Summary counts the summary positions at the end of each block, so it must be from 1 to Block (" + block + "); got " + summary + ".";
            }

            if (varyByHead && block % summary != 0)
            {
                parameter = "varyByHead";
                return "FixedFactorized VaryByHead gives each head its own group of Summary positions, so Block (" + block + ") must be a multiple of Summary (" + summary + "); change one or drop VaryByHead.";
            }

            return null;
        }

        /// <summary>Positions per block (l).</summary>
        public int Block { get; }

        /// <summary>Summary positions per block (c).</summary>
        public int Summary { get; }

        /// <summary>Whether heads cycle through the Block / Summary summary groups.</summary>
        public bool VaryByHead { get; }

        internal override int Order => 2;

        /// <inheritdoc />
        public override int HeadPeriod => VaryByHead ? Block / Summary : 1;

        /// <summary>The first position within a block of head <paramref name="head"/>'s summary group (it spans Summary positions).</summary>
        public int SummaryOffset(int head) => Block - Summary * ((VaryByHead ? head % (Block / Summary) : 0) + 1);

        /// <summary>Whether <paramref name="key"/> is a summary position for head <paramref name="head"/>.</summary>
        public bool IsSummary(int key, int head)
        {
            int offset = key % Block - SummaryOffset(head);
            return offset >= 0 && offset < Summary;
        }

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength) => query / Block == key / Block || IsSummary(key, head);

        /// <inheritdoc />
        public override int MaxSegments => 1 + 2 * Summary;

        internal override long LargestSegmentStep => Block;

        /// <inheritdoc />
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            long blockFirst = (long)query / Block * Block;
            long blockLast = Math.Min(lastKey, blockFirst + Block - 1);
            int count = 0;
            KeySegment own = KeySegmentMath.Run(blockFirst, blockLast, 1);
            if (own.Count > 0)
            {
                destination[count++] = own;
            }

            int offset = SummaryOffset(head);
            for (int column = offset; column < offset + Summary; column++)
            {
                KeySegment run = KeySegmentMath.Run(column, lastKey, Block);
                count += own.Count > 0 ? KeySegmentMath.Subtract(run, own, destination.Slice(count)) : run.Count > 0 ? Write(destination, count, run) : 0;
            }

            return count;
        }

        private static int Write(Span<KeySegment> destination, int index, KeySegment segment)
        {
            destination[index] = segment;
            return 1;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            long firstQueryBlock = queryFirst / Block, lastQueryBlock = queryLast / Block;
            long firstKeyBlock = keyFirst / Block, lastKeyBlock = keyLast / Block;
            bool ownFull = firstQueryBlock == lastQueryBlock && firstKeyBlock == lastKeyBlock && firstQueryBlock == firstKeyBlock;
            bool ownAny = firstQueryBlock <= lastKeyBlock && firstKeyBlock <= lastQueryBlock;

            // Summary keys: every key of the range, or some.
            int offset = SummaryOffset(head);
            bool summaryAll = firstKeyBlock == lastKeyBlock && keyFirst % Block >= offset && keyLast % Block < offset + Summary;
            bool summaryAny = keyLast - keyFirst + 1 >= Block || SummaryIn(keyFirst, keyLast, offset);
            if (ownFull || summaryAll)
            {
                return TileClass.Full;
            }

            return ownAny || summaryAny ? TileClass.Partial : TileClass.Empty;
        }

        /// <summary>Whether [first, last] (shorter than a block) holds a position whose offset in its block is in [offset, offset + Summary).</summary>
        private bool SummaryIn(int first, int last, int offset)
        {
            long summaryStart = (long)first / Block * Block + offset;
            return (summaryStart <= last && summaryStart + Summary - 1 >= first)
                || (summaryStart + Block <= last && summaryStart + Block + Summary - 1 >= first);
        }

        internal override int BlockRows => Block;

        internal override int MaxBlockRuns(int seqLength) => 3;

        /// <summary>
        /// The own block as a step-1 run (cut causally), then the gathered summary stream (index u = block·Summary + t ↔
        /// position block·Block + offset + t): causal rows of block B see u &lt; B·Summary (every earlier block's summaries);
        /// bidirectional ones also those after their own block's.
        /// </summary>
        internal override int WriteBlockRuns(int head, int queryBlock, int seqLength, bool causal, Span<KeyRun> destination)
        {
            long first = (long)queryBlock * Block;
            int count = 0;
            destination[count++] = new KeyRun(1, 0, (int)first, (int)Math.Min(seqLength - 1L, first + Block - 1), causal);
            int gathered = GatheredLength(head, seqLength);
            int ownStart = queryBlock * Summary;
            if (ownStart > 0)
            {
                destination[count++] = new KeyRun(0, 0, 0, Math.Min(ownStart, gathered) - 1, false);
            }

            if (!causal && ownStart + Summary < gathered)
            {
                destination[count++] = new KeyRun(0, 0, ownStart + Summary, gathered - 1, false);
            }

            return count;
        }

        internal override int GatheredLength(int head, int seqLength)
        {
            int offset = SummaryOffset(head);
            int fullBlocks = seqLength / Block;
            int tail = seqLength % Block;
            return fullBlocks * Summary + Math.Max(0, Math.Min(Summary, tail - offset));
        }

        internal override int GatheredPosition(int head, int index) => index / Summary * Block + SummaryOffset(head) + index % Summary;

        internal override int GatherGroup(int head) => VaryByHead ? head % (Block / Summary) : 0;

        /// <inheritdoc />
        public override string? FindStreamingProblem() =>
            "the fixed factorized pattern's summary positions stay visible to every later block, so its cache grows with the stream; "
            + "decode needs a window: use [SlidingWindow] (and [GlobalTokens] for the positions that must stay visible)";

        internal override (long Back, long Forward) ReachPerLayer(bool causal) => (long.MaxValue, causal ? 0 : long.MaxValue);

        /// <inheritdoc />
        public override string Describe(bool causal) =>
            "fixed factorized: blocks of " + Block + ", the last " + Summary + " position(s) of every block visible to all" + (VaryByHead ? " (a different group of " + Summary + " per head)" : "");

        /// <inheritdoc />
        public override string ToCSharp() =>
            "new global::SparseAttention.FixedFactorizedComponent(block: " + Invariant(Block) + ", summary: " + Invariant(Summary) + ", varyByHead: " + (VaryByHead ? "true" : "false") + ")";
    }
}
