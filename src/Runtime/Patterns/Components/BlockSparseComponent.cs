using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

namespace SparseAttention
{
    /// <summary>
    /// BigBird's block-sparse pattern (Zaheer et al. 2020). With qb = i / BlockSize, kb = j / BlockSize and nb blocks (the
    /// last may be partial), key j is visible to query i in head h when |qb - kb| &lt;= WindowBlocks, or qb or kb is a global
    /// block, or kb is one of the random blocks R(h, qb) (docs/patterns.md gives the generator, reproducible by anyone).
    /// Segments: the row's visible key blocks as ascending runs (a global row is covered whole). Tiles: blocks of
    /// BlockSize query rows, every visible key block a full rectangle (cut on the diagonal when causal).
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    sealed class BlockSparseComponent : PatternComponent
    {
        private readonly int[] _globalBlocks;
        private readonly bool _causal;
        private BlockTable? _table;

        /// <summary>Creates the component. <paramref name="causal"/> must be the pattern's: random blocks are drawn among earlier blocks then.</summary>
        /// <exception cref="ArgumentException">A value is out of range.</exception>
        public BlockSparseComponent(int blockSize, int windowBlocks, IEnumerable<int>? globalBlocks, int randomBlocks, long seed, bool causal)
        {
            _globalBlocks = globalBlocks?.ToArray() ?? new int[0];
            if (FindProblem(blockSize, windowBlocks, randomBlocks, out string parameter) is string problem)
            {
                throw new ArgumentException(problem, parameter);
            }

            BlockSize = blockSize;
            WindowBlocks = windowBlocks;
            RandomBlocks = randomBlocks;
            Seed = seed;
            _causal = causal;
        }

        /// <summary>The message for impossible values, or null; <paramref name="parameter"/> names the culprit.</summary>
        public static string? FindProblem(int blockSize, int windowBlocks, int randomBlocks, out string parameter)
        {
            parameter = "";
            if (blockSize < 1)
            {
                parameter = "blockSize";
                return "BlockSparse BlockSize is the number of positions per block and must be 1 or more; got " + blockSize + ".";
            }

            if (windowBlocks < 0)
            {
                parameter = "windowBlocks";
                return "BlockSparse WindowBlocks counts the neighbouring blocks on each side a block sees, so it must be 0 or more; got " + windowBlocks + ".";
            }

            if (randomBlocks < 0)
            {
                parameter = "randomBlocks";
                return "BlockSparse RandomBlocks counts the random key blocks each query block sees, so it must be 0 or more; got " + randomBlocks + ".";
            }

            return null;
        }

        /// <summary>Positions per block (b).</summary>
        public int BlockSize { get; }

        /// <summary>Neighbouring blocks seen on each side (w).</summary>
        public int WindowBlocks { get; }

        /// <summary>Global blocks as declared; a negative entry counts from the end (-1 is the last block).</summary>
        public IReadOnlyList<int> GlobalBlocks => _globalBlocks;

        /// <summary>Random key blocks per query block (r).</summary>
        public int RandomBlocks { get; }

        /// <summary>The random generator's seed (s).</summary>
        public long Seed { get; }

        /// <summary>Whether random blocks are drawn among earlier blocks only; it must match the pattern's causal flag.</summary>
        public bool Causal => _causal;

        internal override int Order => 3;

        /// <inheritdoc />
        public override bool DependsOnSequenceLength => true;

        /// <inheritdoc />
        public override int HeadPeriod => RandomBlocks > 0 ? int.MaxValue : 1;

        /// <summary>Blocks in a sequence of <paramref name="seqLength"/> tokens.</summary>
        public int BlockCount(int seqLength) => (int)((seqLength + (long)BlockSize - 1) / BlockSize);

        /// <summary>Whether block <paramref name="block"/> is global in a sequence of <paramref name="seqLength"/> tokens.</summary>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="seqLength"/> is below 1 or <paramref name="block"/> is not one of its blocks.</exception>
        public bool IsGlobalBlock(int block, int seqLength)
        {
            CheckBlock(block, seqLength, nameof(block));
            return Table(seqLength).IsGlobal[block];
        }

        private void CheckBlock(int block, int seqLength, string blockParameter)
        {
            if (seqLength < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(seqLength), seqLength, "seqLength must be 1 or more.");
            }

            if ((uint)block >= (uint)BlockCount(seqLength))
            {
                throw new ArgumentOutOfRangeException(blockParameter, block, blockParameter + " must be a block of the sequence: 0 to " + (BlockCount(seqLength) - 1) + " for seqLength " + seqLength + " and BlockSize " + BlockSize + ".");
            }
        }

        /// <summary>
        /// R(h, qb): the random key blocks of query block <paramref name="queryBlock"/> in head <paramref name="head"/>, written
        /// to <paramref name="destination"/> (at least RandomBlocks entries) in the order drawn; returns how many.
        /// </summary>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="head"/> is negative, <paramref name="seqLength"/> is below 1, or <paramref name="queryBlock"/> is not one of its blocks.</exception>
        /// <exception cref="ArgumentException"><paramref name="destination"/> holds fewer than RandomBlocks entries.</exception>
        public int GetRandomBlocks(int head, int queryBlock, int seqLength, Span<int> destination)
        {
            if (head < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(head), head, "head must be 0 or more.");
            }

            CheckBlock(queryBlock, seqLength, nameof(queryBlock));
            if (destination.Length < RandomBlocks)
            {
                throw new ArgumentException("destination needs RandomBlocks = " + RandomBlocks + " entries but holds " + destination.Length + ".", nameof(destination));
            }

            BlockTable table = Table(seqLength);
            return DrawRandomBlocks(head, queryBlock, table.Blocks, table.IsGlobal, destination, new int[table.Blocks]);
        }

        /// <inheritdoc />
        public override bool Contains(int query, int key, int head, int seqLength)
        {
            int queryBlock = query / BlockSize, keyBlock = key / BlockSize;
            if (Math.Abs((long)queryBlock - keyBlock) <= WindowBlocks)
            {
                return true;
            }

            BlockTable table = Table(seqLength);
            return table.IsGlobal[queryBlock] || table.IsGlobal[keyBlock] || table.IsRandom(head, queryBlock, keyBlock);
        }

        /// <inheritdoc />
        public override bool CoversRow(int query, int head, int seqLength) => Table(seqLength).IsGlobal[query / BlockSize];

        internal override bool CanCoverRows => true;

        /// <inheritdoc />
        public override int MaxSegments => 1 + _globalBlocks.Length + RandomBlocks;

        /// <summary>The row's key blocks, ascending, neighbours merged, cut at <paramref name="lastKey"/>.</summary>
        public override int WriteSegments(int query, int head, int seqLength, int lastKey, Span<KeySegment> destination)
        {
            BlockTable table = Table(seqLength);
            int queryBlock = query / BlockSize;
            int count = 0;
            int last = Math.Min(table.Blocks - 1, lastKey / BlockSize);
            int previous = -2;
            void Add(Span<KeySegment> destination, int block)
            {
                long first = (long)block * BlockSize;
                long end = Math.Min(lastKey, first + BlockSize - 1);
                if (block == previous + 1 && count > 0)
                {
                    KeySegment run = destination[count - 1];
                    destination[count - 1] = new KeySegment(run.Start, 1, (int)(end - run.Start + 1));
                }
                else
                {
                    destination[count++] = new KeySegment((int)first, 1, (int)(end - first + 1));
                }

                previous = block;
            }

            // Blocks in ascending order: the visible ones among window, global and random blocks.
            int windowFirst = Math.Max(0, queryBlock - WindowBlocks), windowLast = (int)Math.Min(last, (long)queryBlock + WindowBlocks);
            foreach (int block in table.SortedExtras(head, queryBlock))
            {
                if (block > last)
                {
                    break;
                }

                if (block < windowFirst)
                {
                    Add(destination, block);
                }
            }

            for (int block = windowFirst; block <= windowLast; block++)
            {
                Add(destination, block);
            }

            foreach (int block in table.SortedExtras(head, queryBlock))
            {
                if (block > last)
                {
                    break;
                }

                if (block > windowLast)
                {
                    Add(destination, block);
                }
            }

            return count;
        }

        /// <inheritdoc />
        public override TileClass ClassifyTile(int head, int queryFirst, int queryLast, int keyFirst, int keyLast, int seqLength)
        {
            BlockTable table = Table(seqLength);
            bool any = false, all = true;
            for (int queryBlock = queryFirst / BlockSize; queryBlock <= queryLast / BlockSize; queryBlock++)
            {
                for (int keyBlock = keyFirst / BlockSize; keyBlock <= keyLast / BlockSize; keyBlock++)
                {
                    bool visible = Math.Abs((long)queryBlock - keyBlock) <= WindowBlocks || table.IsGlobal[queryBlock] || table.IsGlobal[keyBlock] || table.IsRandom(head, queryBlock, keyBlock);
                    any |= visible;
                    all &= visible;
                }
            }

            return all ? TileClass.Full : any ? TileClass.Partial : TileClass.Empty;
        }

        internal override int BlockRows => BlockSize;

        internal override int MaxBlockRuns(int seqLength) => Math.Max(1, MaxSegments);

        /// <summary>The row block's key blocks as step-1 runs (the whole row for a global block); causal runs are cut on the diagonal.</summary>
        internal override int WriteBlockRuns(int head, int queryBlock, int seqLength, bool causal, Span<KeyRun> destination)
        {
            int lastRow = (int)Math.Min(seqLength - 1L, ((long)queryBlock + 1) * BlockSize - 1);
            int lastKey = causal ? lastRow : seqLength - 1;
            if (Table(seqLength).IsGlobal[queryBlock])
            {
                destination[0] = new KeyRun(1, 0, 0, lastKey, causal);
                return 1;
            }

            Span<KeySegment> segments = stackalloc KeySegment[MaxSegments];
            int count = WriteSegments(queryBlock * BlockSize, head, seqLength, lastKey, segments);
            for (int s = 0; s < count; s++)
            {
                destination[s] = new KeyRun(1, 0, segments[s].Start, segments[s].Last, causal);
            }

            return count;
        }

        /// <inheritdoc />
        public override string? FindStreamingProblem() =>
            "block-sparse attention's global and random blocks reach any distance back, so its cache grows with the stream; "
            + "decode needs a window: use [SlidingWindow] (and [GlobalTokens] for the positions that must stay visible)";

        internal override (long Back, long Forward) ReachPerLayer(bool causal) => (long.MaxValue, causal ? 0 : long.MaxValue);

        internal override bool IsGlobalPair(int query, int key, int head, int seqLength)
        {
            BlockTable table = Table(seqLength);
            return table.IsGlobal[query / BlockSize] || table.IsGlobal[key / BlockSize];
        }

        /// <inheritdoc />
        public override string Describe(bool causal) =>
            "block-sparse (BigBird): blocks of " + BlockSize + ", " + WindowBlocks + " neighbouring block(s) each side, global blocks "
            + (_globalBlocks.Length == 0 ? "none" : string.Join(", ", _globalBlocks)) + ", " + RandomBlocks + " random block(s) per block row (seed " + Seed + ")";

        /// <inheritdoc />
        public override string ToCSharp() =>
            "new global::SparseAttention.BlockSparseComponent(blockSize: " + Invariant(BlockSize) + ", windowBlocks: " + Invariant(WindowBlocks)
            + ", globalBlocks: " + IntArray(_globalBlocks) + ", randomBlocks: " + Invariant(RandomBlocks) + ", seed: " + Invariant(Seed) + "L, causal: " + (_causal ? "true" : "false") + ")";

        /// <summary>
        /// The random blocks of one (head, query block), drawn exactly as docs/patterns.md defines: a partial Fisher-Yates
        /// shuffle of the candidate blocks driven by SplitMix64 from a state mixed from the seed, head and block.
        /// </summary>
        private int DrawRandomBlocks(int head, int queryBlock, int blocks, bool[] isGlobal, Span<int> destination, int[] candidates)
        {
            if (isGlobal[queryBlock] || RandomBlocks == 0)
            {
                return 0;
            }

            int m = 0;
            int lastCandidate = _causal ? queryBlock : blocks - 1;
            for (int block = 0; block <= lastCandidate; block++)
            {
                if (Math.Abs((long)queryBlock - block) > WindowBlocks && !isGlobal[block])
                {
                    candidates[m++] = block;
                }
            }

            unchecked
            {
                ulong state = (ulong)Seed * 0x9E3779B97F4A7C15UL ^ (ulong)head * 0xBF58476D1CE4E5B9UL ^ (ulong)queryBlock * 0x94D049BB133111EBUL;
                int draws = Math.Min(RandomBlocks, m);
                for (int t = 0; t < draws; t++)
                {
                    state += 0x9E3779B97F4A7C15UL;
                    ulong z = state;
                    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                    z ^= z >> 31;
                    int k = t + (int)(z % (ulong)(m - t));
                    (candidates[t], candidates[k]) = (candidates[k], candidates[t]);
                    destination[t] = candidates[t];
                }

                return draws;
            }
        }

        /// <summary>
        /// The blocks of one sequence length: which are global, and each (head, query block)'s random blocks sorted, for
        /// heads drawn so far. Built on first use per length, then read without allocating; a call with another length or
        /// more heads replaces it (old readers keep the one they hold).
        /// </summary>
        private BlockTable Table(int seqLength)
        {
            BlockTable? table = Volatile.Read(ref _table);
            if (table is not null && table.SeqLength == seqLength)
            {
                return table;
            }

            table = new BlockTable(this, seqLength);
            Volatile.Write(ref _table, table);
            return table;
        }

        /// <summary>Ensures random blocks for heads 0 .. <paramref name="heads"/> - 1 are drawn for this length (call before a parallel run).</summary>
        internal void Prepare(int seqLength, int heads) => Table(seqLength).EnsureHeads(heads);

        private sealed class BlockTable
        {
            private readonly BlockSparseComponent _owner;
            private int[][] _sortedExtras = new int[0][];
            private readonly object _lock = new();

            public BlockTable(BlockSparseComponent owner, int seqLength)
            {
                _owner = owner;
                SeqLength = seqLength;
                Blocks = owner.BlockCount(seqLength);
                IsGlobal = new bool[Math.Max(1, Blocks)];
                foreach (int entry in owner._globalBlocks)
                {
                    long block = entry < 0 ? (long)Blocks + entry : entry;
                    if (block >= 0 && block < Blocks)
                    {
                        IsGlobal[block] = true;
                    }
                }
            }

            public int SeqLength { get; }

            public int Blocks { get; }

            public bool[] IsGlobal { get; }

            /// <summary>Global and random blocks of (head, query block) outside the window, ascending and distinct.</summary>
            public int[] SortedExtras(int head, int queryBlock)
            {
                int[][] extras = Volatile.Read(ref _sortedExtras);
                if (head * Blocks + queryBlock >= extras.Length)
                {
                    EnsureHeads(head + 1);
                    extras = Volatile.Read(ref _sortedExtras);
                }

                return extras[head * Blocks + queryBlock];
            }

            public bool IsRandom(int head, int queryBlock, int keyBlock) => Array.BinarySearch(SortedExtras(head, queryBlock), keyBlock) >= 0 && !IsGlobal[keyBlock];

            public void EnsureHeads(int heads)
            {
                lock (_lock)
                {
                    int[][] current = _sortedExtras;
                    if (current.Length >= heads * Blocks)
                    {
                        return;
                    }

                    var extras = new int[heads * Blocks][];
                    Array.Copy(current, extras, current.Length);
                    var candidates = new int[Math.Max(1, Blocks)];
                    var drawn = new int[Math.Max(1, _owner.RandomBlocks)];
                    for (int index = current.Length; index < extras.Length; index++)
                    {
                        int head = index / Blocks, queryBlock = index % Blocks;
                        int count = _owner.DrawRandomBlocks(head, queryBlock, Blocks, IsGlobal, drawn, candidates);
                        var set = new SortedSet<int>(drawn.Take(count));
                        for (int block = 0; block < Blocks; block++)
                        {
                            if (IsGlobal[block] && Math.Abs((long)queryBlock - block) > _owner.WindowBlocks)
                            {
                                set.Add(block);
                            }
                        }

                        extras[index] = set.ToArray();
                    }

                    Volatile.Write(ref _sortedExtras, extras);
                }
            }
        }
    }
}
