using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

public static unsafe partial class CpuAttention
{
    private sealed partial class TiledJob<TKernel, TScores>
    {
        /// <summary>Queries per neighbourhood tile: the kernel's own neighbourhood tile where the generator emitted one.</summary>
        internal static int NeighborhoodRows => TKernel.NeighborhoodTileRows > 0 ? TKernel.NeighborhoodTileRows : TKernel.TileRows;

        /// <summary>
        /// A neighbourhood pass's work item (see <see cref="NeighborhoodSchedule"/>): one chunk of one residue class's queries
        /// along each line of a block of neighbouring lines. For each line the item lays out the keys its queries see as one
        /// stream (its key lines column by column, kept by slot so a line gathers only the key lines the previous one did
        /// not have; in 1-D the class's residue stream), then runs the line's queries as tiles over it, each a band or, at
        /// the line's borders, a rectangle, and finishes the rows (tails, normalisation) tile by tile.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunNeighborhoodTiles(int head, int local)
        {
            NeighborhoodSchedule schedule = Plan.Neighborhood;
            schedule.ItemOf(local, out int firstLine, out int lineStep, out int lineCount, out int residue, out int chunk);
            int firstIndex = chunk * schedule.ChunkRows, classLength = schedule.ClassLength(residue);
            if (firstIndex >= classLength || lineCount == 0)
            {
                return;
            }

            int headDim = TKernel.HeadDim, tileRows = NeighborhoodRows, dilation = schedule.Dilation;
            int lastIndex = Math.Min(classLength, firstIndex + schedule.ChunkRows) - 1;
            // Sized for the band tile's rows, as every other pass asks, so a thread's scratch is not made again between passes.
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, TKernel.TileRows, headDim, TKernel.KeyTile);
            var tile = new BandTile
            {
                QueryStride = (int)(dilation * Layout.Query.Row),
                Probabilities = scratch.Probabilities.AsSpan(0, tileRows * TKernel.KeyTile),
                RowMax = scratch.RowMax.AsSpan(0, tileRows),
                RowSum = scratch.RowSum.AsSpan(0, tileRows),
                Accumulators = scratch.Accumulators.AsSpan(0, tileRows * headDim),
                Head = head,
                AlibiSlope = AlibiSlopeOf(head),
                QueryPositionStep = dilation,
            };

            if (!schedule.Gathers)
            {
                // One line, one key line: the class's residue stream, whose coordinates are the class indices.
                tile.KeyPanels = ref *StreamPanels(dilation, residue, Shape.KvHeadOf(head));
                tile.Values = ref *(ValuesOf(head) + residue * Layout.Value.Row);
                tile.ValueStride = (int)(dilation * Layout.Value.Row);
                tile.KeyPosition = Slice.PositionBase + residue;
                tile.KeyPositionStep = dilation;
                RunNeighborhoodRows(ref tile, schedule, head, 0, residue, firstIndex, lastIndex, origin: 0, keyLines: 1, classLength, scratch);
                return;
            }

            // The columns the chunk's queries see run from the first query's first to the last query's last (both move
            // forward along the line); every line of the block sees the same columns of its key lines.
            schedule.ColumnsOf(residue, firstIndex, out int origin, out _);
            schedule.ColumnsOf(residue, lastIndex, out int lastStart, out int lastCount);
            int columns = lastStart + lastCount - origin;
            var stream = new GatheredLines(scratch, schedule.MaxKeyLines, columns, headDim, TKernel.Lanes, TKernel.KeyTile);
            fixed (float* panels = scratch.GatheredPanels, values = scratch.GatheredValues)
            {
                tile.KeyPanels = ref *panels;
                tile.Values = ref *values;
                tile.ValueStride = headDim;
                for (int l = 0; l < lineCount; l++)
                {
                    int line = firstLine + l * lineStep;
                    int keyLines = schedule.Component.WriteKeyLines(line, Shape.SeqLen, scratch.KeyLineStarts, scratch.KeyLineSlots, scratch.KeyLineCounts);
                    // Within a block only the lead axis's key count can change (the slower axes' coordinates are the
                    // block's), so the key line count alone tells a new layout.
                    if (stream.NewLayout(keyLines))
                    {
                        new Span<float>(panels, stream.PanelFloats).Clear();
                        if (TScores.ModifiesScores)
                        {
                            scratch.GatheredPositions.AsSpan(0, stream.Length + TKernel.KeyTile).Clear();
                        }
                    }

                    for (int k = 0; k < keyLines; k++)
                    {
                        if (stream.Take(scratch.KeyLineSlots[k], scratch.KeyLineStarts[k]))
                        {
                            GatherKeyLine(head, scratch.KeyLineStarts[k] + residue + dilation * origin, dilation, scratch.KeyLineSlots[k], keyLines, columns, panels, values, scratch.GatheredPositions);
                        }
                    }

                    if (TScores.ModifiesScores)
                    {
                        tile.GatheredKeyPositions = scratch.GatheredPositions.AsSpan(0, stream.Length + TKernel.KeyTile);
                    }

                    RunNeighborhoodRows(ref tile, schedule, head, line * schedule.LineLength, residue, firstIndex, lastIndex, origin, keyLines, stream.Length, scratch);
                }
            }
        }

        /// <summary>Queries <paramref name="firstIndex"/> .. <paramref name="lastIndex"/> of the class on one line as tiles over the stream, each finished as it ends.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunNeighborhoodRows(ref BandTile tile, NeighborhoodSchedule schedule, int head, int lineStart, int residue, int firstIndex, int lastIndex, int origin, int keyLines, int streamLength, WorkerScratch scratch)
        {
            int dilation = schedule.Dilation;
            tile.QueryStep = keyLines;
            for (int index = firstIndex; index <= lastIndex;)
            {
                int rows = schedule.NextTile(residue, index, lastIndex, origin, keyLines, streamLength, NeighborhoodRows, out long left, out long right, out int keyFirst, out int keyLast);
                int position = lineStart + residue + dilation * index;
                StartRows(head, position, dilation, rows, scratch);
                tile.Query = ref *QueryRow(head, position);
                tile.Rows = rows;
                tile.FirstQuery = (index - origin) * keyLines;
                tile.Left = left;
                tile.Right = right;
                tile.KeyFirst = keyFirst;
                tile.KeyLast = keyLast;
                tile.QueryPosition = Slice.PositionBase + position;
                if (TKernel.NeighborhoodTileRows > 0)
                {
                    TKernel.AccumulateNeighborhoodTile<TScores>(ref tile);
                }
                else
                {
                    TKernel.AccumulateBandTile<TScores>(ref tile);
                }

                EndRows(head, position, dilation, rows, scratch);
                index += rows;
            }
        }

        /// <summary>
        /// Puts one key line's <paramref name="columns"/> keys (from token <paramref name="firstPosition"/>, a class step
        /// apart) into its slot of the stream: stream key c·keyLines + slot for column c. The key goes into its panel lane,
        /// scaled as the pack phase scales keys; its value row and position beside it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void GatherKeyLine(int head, int firstPosition, int dilation, int slot, int keyLines, int columns, float* panels, float* values, int[] positions)
        {
            int headDim = TKernel.HeadDim, lanes = TKernel.Lanes;
            float* keySource = _sourceKey + Shape.KvHeadOf(head) * _sourceKeyRows.Head, valueSource = ValuesOf(head);
            long keyRow = _sourceKeyRows.Row, valueRow = Layout.Value.Row;
            float scale = Scale;
            for (int column = 0; column < columns; column++)
            {
                long position = firstPosition + (long)dilation * column;
                int index = column * keyLines + slot;
                float* key = keySource + position * keyRow;
                float* lane = panels + (long)(index / lanes) * lanes * headDim + index % lanes;
                // Four elements a step through moving pointers (indexed, each element took seven instructions).
                for (int d = 0; d < headDim; d += 4, key += 4, lane += 4 * lanes)
                {
                    lane[0] = key[0] * scale;
                    lane[lanes] = key[1] * scale;
                    lane[2 * lanes] = key[2] * scale;
                    lane[3 * lanes] = key[3] * scale;
                }

                // HeadDim is a multiple of 8 wherever a tile kernel runs.
                float* value = valueSource + position * valueRow, destination = values + (long)index * headDim;
                for (int d = 0; d < headDim; d += 8)
                {
                    Vector256.Store(Vector256.Load(value + d), destination + d);
                }

                if (TScores.ModifiesScores)
                {
                    positions[index] = Slice.PositionBase + (int)position;
                }
            }
        }
    }

    /// <summary>
    /// The bookkeeping of a neighbourhood item's gathered stream: which key line each slot holds, and the layout (key lines
    /// per column) the slots were filled for. Lines are kept across the item's query lines while the layout holds.
    /// </summary>
    private ref struct GatheredLines
    {
        private readonly Span<int> _held;
        private readonly int _columns, _headDim, _lanes, _keyTile;
        private int _keyLines;

        public GatheredLines(WorkerScratch scratch, int maxKeyLines, int columns, int headDim, int lanes, int keyTile)
        {
            scratch.GrowGathered(maxKeyLines, columns * maxKeyLines, headDim, lanes, keyTile);
            _held = scratch.HeldLines.AsSpan(0, maxKeyLines);
            (_columns, _headDim, _lanes, _keyTile) = (columns, headDim, lanes, keyTile);
            _keyLines = -1;
        }

        /// <summary>Stream keys with the current layout.</summary>
        public readonly int Length => _columns * _keyLines;

        /// <summary>Floats of panels the current layout's stream uses, with the key tile of padding the kernel may read.</summary>
        public readonly int PanelFloats => (int)KeyPanels.FloatsPerKvHead(Length, 1, _headDim, _lanes, _keyTile);

        /// <summary>
        /// Starts a query line with <paramref name="keyLines"/> key lines: true when the layout changed, so every slot is
        /// empty and the caller clears the panels (their padding must read as zero).
        /// </summary>
        public bool NewLayout(int keyLines)
        {
            if (keyLines == _keyLines)
            {
                return false;
            }

            _keyLines = keyLines;
            _held.Slice(0, keyLines).Fill(-1);
            return true;
        }

        /// <summary>Claims <paramref name="slot"/> for the line starting at <paramref name="lineStart"/>: true when it must be gathered.</summary>
        public bool Take(int slot, int lineStart)
        {
            if (_held[slot] == lineStart)
            {
                return false;
            }

            _held[slot] = lineStart;
            return true;
        }
    }

    internal sealed partial class WorkerScratch
    {
        // A neighbourhood item's gathered stream (CpuAttention.Neighborhood.cs): the query line's key lines (first tokens,
        // slots, keys per leading axis), the line each slot holds, the panels, value rows and, for score modifiers, positions.
        public int[] KeyLineStarts = Array.Empty<int>();
        public int[] KeyLineSlots = Array.Empty<int>();
        public int[] KeyLineCounts = new int[NeighborhoodComponent.MaxAxes];
        public int[] HeldLines = Array.Empty<int>();
        public float[] GatheredPanels = Array.Empty<float>();
        public float[] GatheredValues = Array.Empty<float>();
        public int[] GatheredPositions = Array.Empty<int>();

        /// <summary>Grows the gathered-stream buffers for <paramref name="keyLines"/> key lines and <paramref name="streamLength"/> keys.</summary>
        public void GrowGathered(int keyLines, int streamLength, int headDim, int lanes, int keyTile)
        {
            if (KeyLineStarts.Length < keyLines)
            {
                KeyLineStarts = new int[keyLines];
                KeyLineSlots = new int[keyLines];
                HeldLines = new int[keyLines];
            }

            long valueFloats = (long)streamLength * headDim;
            if (GatheredValues.Length < valueFloats)
            {
                GatheredValues = GC.AllocateUninitializedArray<float>((int)valueFloats);
            }

            long panelFloats = KeyPanels.FloatsPerKvHead(streamLength, 1, headDim, lanes, keyTile);
            if (GatheredPanels.Length < panelFloats)
            {
                GatheredPanels = GC.AllocateUninitializedArray<float>((int)panelFloats);
            }

            if (GatheredPositions.Length < streamLength + keyTile)
            {
                GatheredPositions = new int[streamLength + keyTile];
            }
        }
    }
}
