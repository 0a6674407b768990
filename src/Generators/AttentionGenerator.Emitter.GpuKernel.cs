using System.Collections.Generic;
using System.Linq;
using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators;

public sealed partial class AttentionGenerator
{
    internal static partial class Emitter
    {
        private const string GpuKernelName = "AttendQueryBlock";
        private const string Ilgpu = "global::ILGPU.";
        private const string Float4Type = "global::ILGPU.Util.Float4";

        /// <summary>
        /// The ILGPU kernel's launch shape for one HeadDim: four warps own a block of 64 query rows (16 each); every lane
        /// owns four rows and, of each K/V tile, the keys <c>part, part + 8, ...</c> in QKᵀ and the float4 column chunks
        /// <c>part, part + 8, ...</c> in P·V (<c>part</c> = lane mod 8), so a lane's rows are the same in both phases and
        /// a row's softmax state lives in the eight lanes that share it. The generated code states these numbers to the
        /// runtime (<c>GpuAttentionKernel</c>), which launches and builds tile tables by them.
        /// </summary>
        internal readonly struct GpuKernelShape
        {
            public const int Warps = 4;
            public const int RowsPerLane = 4;
            public const int LanesPerRowSet = 8;
            public const int QueryRows = Warps * 16;
            public const int Threads = Warps * 32;

            /// <summary>Static shared memory a CUDA group may hold without the opt-in function attribute ILGPU 1.5.3 cannot set.</summary>
            public const int SharedFloatBudget = 48 * 1024 / 4;

            public GpuKernelShape(int headDim)
            {
                HeadDim = headDim;
                // Q in shared memory when it fits beside 32-key tiles (HeadDim <= 72); else Q is read from global memory,
                // where it stays in L1 (the group reads the same 64 rows for every tile), and the tiles keep the budget.
                QueryInShared = SharedFloats(headDim, 32, queryInShared: true) <= SharedFloatBudget;
                KeyTile = QueryInShared || SharedFloats(headDim, 32, queryInShared: false) <= SharedFloatBudget ? 32 : 16;
            }

            public int HeadDim { get; }

            /// <summary>Keys per shared-memory tile (32, or 16 above HeadDim 152).</summary>
            public int KeyTile { get; }

            /// <summary>Whether the block's (scaled) query rows are staged in shared memory once.</summary>
            public bool QueryInShared { get; }

            /// <summary>Float4 chunks per row.</summary>
            public int Chunks => HeadDim / 4;

            /// <summary>
            /// Float4s per key row in shared memory: one more than the row needs. Eight lanes read eight consecutive key rows
            /// at the same column; (HeadDim + 4) / 4 is odd, so the rows start on eight different groups of four banks.
            /// </summary>
            public int KeyStride => Chunks + 1;

            public int KeysPerLane => KeyTile / LanesPerRowSet;

            /// <summary>Float4 column chunks a lane may own in P·V (the last one only for some lanes when Chunks % 8 != 0).</summary>
            public int ChunksPerLane => (Chunks + LanesPerRowSet - 1) / LanesPerRowSet;

            /// <summary>Whether the lane's chunk <paramref name="j"/> exists only for some lanes (the last, when Chunks % 8 != 0): guarded by <c>ownsLastChunk</c>.</summary>
            public bool IsPartialChunk(int j) => Chunks % LanesPerRowSet != 0 && j == ChunksPerLane - 1;

            public int SharedBytes => 4 * SharedFloats(HeadDim, KeyTile, QueryInShared);

            /// <summary>Q (optional), padded K, V, the block's probabilities, one flag per key and the row-set scratch (a float4 per thread).</summary>
            private static int SharedFloats(int headDim, int keyTile, bool queryInShared) =>
                (queryInShared ? QueryRows * headDim : 0) + keyTile * (headDim + 4) + keyTile * headDim + QueryRows * keyTile + keyTile + 4 * Threads;
        }

        /// <summary>The kernel field, the launch constants and the ILGPU kernel of one HeadDim (or one declaration with user code).</summary>
        /// <param name="userCode">The declaration whose mask and score mod the kernel calls (its own copy), or null for the shared kernel.</param>
        private static void EmitGpuKernel(IndentedTextWriter writer, int headDim, Models.ScoresModel? userCode = null)
        {
            var shape = new GpuKernelShape(headDim);
            writer.Line("// ---- GPU (ILGPU) ---------------------------------------------------------------------------------------------");
            writer.Line();
            writer.Line("/// <summary>Keys per shared-memory K/V tile.</summary>");
            writer.Line("private const int GpuKeyTile = " + Invariant(shape.KeyTile) + ";");
            writer.Line();
            string construction = "new(" + GpuKernelName + "<global::SparseAttention.Gpu.ShuffleRowSets>, " + GpuKernelName + "<global::SparseAttention.Gpu.SharedMemoryRowSets>, headDim: " + Invariant(headDim) + ", GpuKeyTile, queryRowsPerGroup: " + Invariant(GpuKernelShape.QueryRows) + ", threadsPerGroup: " + Invariant(GpuKernelShape.Threads) + (userCode is null ? "" : ", runsUserCode: true") + ")";
            if (userCode is null)
            {
                writer.Line("/// <summary>The kernel, compiled once per accelerator on first use.</summary>");
                writer.Line("internal static readonly global::SparseAttention.Gpu.GpuAttentionKernel GpuKernel = " + construction + ";");
            }
            else
            {
                writer.Line("/// <summary>This declaration's own kernel, with its mask or score mod compiled in; compiled once per accelerator on first use.</summary>");
                writer.Line("private static readonly global::SparseAttention.Gpu.GpuAttentionKernel Gpu = " + construction + ";");
            }

            writer.Line();
            EmitGpuPairScore(writer, userCode);
            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// FlashAttention-2 on CUDA cores. Grid (query blocks, heads); a group of " + Invariant(GpuKernelShape.Threads) + " threads (4 warps) per block of " + Invariant(GpuKernelShape.QueryRows) + " query rows,");
            writer.Line("/// 16 rows per warp. For every key tile the pattern's tile table lists, K and V are staged in shared memory; each lane");
            writer.Line("/// scores its 4 rows x " + Invariant(shape.KeysPerLane) + " keys from 16-byte shared loads, takes the rows' tile max across the 8 lanes that share");
            writer.Line("/// them (shuffles), and writes its probabilities to the block's buffer; after a barrier each lane adds P·V into its 4 rows x");
            writer.Line("/// " + Invariant(shape.ChunksPerLane) + " float4 column chunk(s) of the output. Every per-lane value is a scalar local (the loops over the micro-tile are");
            writer.Line("/// written out here because ILGPU does not unroll), so it lives in registers. Scores are base 2 (log2(e) is in the scale).");
            writer.Line("/// Shared memory: " + Invariant(shape.SharedBytes) + " bytes per group" + (shape.QueryInShared ? ", the block's query rows included." : "; query rows are read from global memory (they stay in L1)."));
            writer.Line("/// </summary>");
            writer.Line("/// <remarks>perHead holds ALiBi's slopes (base 2) then the learned sink logits, one per query head, when the arguments say so;");
            writer.Line("/// logSumExp ([Heads, SeqLen]) is written when they ask for it. A block of long rows (a part, see GpuTileTable) writes its");
            writer.Line("/// rows to partial slots instead: outputs [grid heads, SlotsPerHead, HeadDim] then base-2 log-sum-exps [grid heads, SlotsPerHead].");
            writer.Line("/// In decode (arguments.RowsAreHeads) the grid's heads are KV heads and a block's rows the query heads of one, at one position.</remarks>");
            writer.Line("/// <typeparam name=\"TRowSets\">How the eight lanes that share rows reduce across them: shuffles, or shared memory on OpenCL.</typeparam>");
            using (writer.Block("private static void " + GpuKernelName + "<TRowSets>(" + ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + ArrayViewType + " output, global::ILGPU.ArrayView<int> tiles, " + ArrayViewType + " perHead, " + ArrayViewType + " logSumExp, " + ArrayViewType + " partials, global::SparseAttention.Gpu.GpuAttentionArguments arguments) where TRowSets : struct, global::SparseAttention.Gpu.IGpuRowSets"))
            {
                EmitGpuBlockSetup(writer, shape);
                writer.Line("// A warp whose 16 rows all lie past the block's rows (decode's GQA group of a few heads, a block's ragged end) skips");
                writer.Line("// each tile's arithmetic; it still stages tiles and meets the group barriers. Not on OpenCL, where the row-set");
                writer.Line("// reductions meet the whole group.");
                writer.Line("bool warpHasRows = !default(TRowSets).WarpsMayIdle || (thread >> 5) * 16 < rowCount;");
                using (writer.Block("for (int entryIndex = 0; entryIndex < entryCount; entryIndex++)"))
                {
                    EmitGpuStageTile(writer, shape);
                    using (writer.Block("if (warpHasRows)"))
                    {
                        EmitGpuScoreTile(writer, shape);
                        EmitGpuAddValues(writer, shape);
                    }
                }

                EmitGpuWriteRows(writer, shape);
            }
        }

        private static IEnumerable<int> Rows => Enumerable.Range(0, GpuKernelShape.RowsPerLane);

        private static readonly string[] Components = { "X", "Y", "Z", "W" };

        /// <summary>The per-block setup: indices, shared memory, the query rows, and each row's state.</summary>
        private static void EmitGpuBlockSetup(IndentedTextWriter writer, GpuKernelShape shape)
        {
            writer.Line("const int HeadDim = " + Invariant(shape.HeadDim) + ", Chunks = " + Invariant(shape.Chunks) + ", KeyStride = " + Invariant(shape.KeyStride) + ", BlockRows = " + Invariant(GpuKernelShape.QueryRows) + ";");
            writer.Line("// The views hold QueryRows query rows and KeyRows key rows per head: the whole sequence, or a slice of it whose");
            writer.Line("// first query and key sit at positions QueryStart and KeyStart (the pattern and the modifiers see positions).");
            writer.Line("int queryRows = arguments.QueryRows, keyRows = arguments.KeyRows;");
            writer.Line("int head = " + Ilgpu + "Grid.IdxY;");
            writer.Line("int thread = " + Ilgpu + "Group.IdxX, lane = thread & 31;");
            writer.Line("// part = lane mod 8: the keys part, part + 8, ... this lane scores and the float4 chunks part, part + 8, ... it accumulates.");
            writer.Line("int part = lane & 7;");
            writer.Line("int firstRow = (thread >> 5) * 16 + (lane >> 3) * 4; // the first of this lane's four rows, within the block");
            writer.Line();
            writer.Line("// This block in the tile table: its entries (key start, key step, class, mask offset) for every tile with a visible");
            writer.Line("// pair, and its rows rowStart + rowStep * i, i < rowCount, in the views (a residue stream has rowStep > 1; a part of");
            writer.Line("// long rows has rowStep 0, its rows listed in the table, and writes them to partial slots from partialSlot on).");
            writer.Line("int header = global::SparseAttention.Gpu.GpuTileTable.HeaderOf(head, " + Ilgpu + "Grid.IdxX, tiles[0]);");
            writer.Line("int firstEntry = tiles[header], entryCount = tiles[header + 1];");
            writer.Line("int rowStart = tiles[header + 2], rowStep = tiles[header + 3], rowCount = tiles[header + 4], partialSlot = tiles[header + 5];");
            writer.Line("int lastRow = " + MathType + ".Max(rowCount - 1, 0);");
            writer.Line("int maskWords = global::SparseAttention.Gpu.GpuTileTable.MaskWordsPerRow(GpuKeyTile);");
            writer.Line("long kvOffset = (long)(head / arguments.QueryHeadsPerKvHead) * keyRows * HeadDim;");
            if (shape.IsPartialChunk(shape.ChunksPerLane - 1))
            {
                writer.Line("// Chunks is not a multiple of 8: the lane's last chunk exists for parts below " + Invariant(shape.Chunks % GpuKernelShape.LanesPerRowSet) + " only.");
                writer.Line("bool ownsLastChunk = part + " + Invariant(8 * (shape.ChunksPerLane - 1)) + " < Chunks;");
            }

            writer.Line("// Rows past the end are computed on the last row's query (valid memory), like the others, and never written.");
            foreach (int r in Rows)
            {
                writer.Line("int row" + r + " = global::SparseAttention.Gpu.GpuTileTable.RowOf(tiles, rowStart, rowStep, " + MathType + ".Min(firstRow + " + r + ", lastRow));");
                writer.Line("long queryOffset" + r + " = ((long)head * queryRows + row" + r + ") * HeadDim;");
            }

            writer.Line("// The query head of each row: the grid's head, or, in decode (rows are the query heads of KV head `head`), the row's own.");
            foreach (int r in Rows)
            {
                writer.Line("int rowHead" + r + " = arguments.RowsAreHeads != 0 ? head * queryRows + row" + r + " : head;");
            }

            writer.Line();
            writer.Line("var keyTile = " + Ilgpu + "SharedMemory.Allocate<" + Float4Type + ">(GpuKeyTile * KeyStride);");
            writer.Line("var valueTile = " + Ilgpu + "SharedMemory.Allocate<" + Float4Type + ">(GpuKeyTile * Chunks);");
            writer.Line("// The block's probabilities, [BlockRows, GpuKeyTile]: written in the QKᵀ layout, read as float4s of keys in P·V.");
            writer.Line("var probabilities = " + Ilgpu + "SharedMemory.Allocate<" + Float4Type + ">(BlockRows * GpuKeyTile / 4);");
            writer.Line("var probabilityFloats = probabilities.Cast<float>();");
            writer.Line("// Keys of the tile whose value row holds a NaN or ±inf (staged as zeros, so an invisible key's 0 x value stays 0):");
            writer.Line("// marked with the entry's number + 1, so a mark of an earlier tile never needs clearing.");
            writer.Line("var nonFiniteValues = " + Ilgpu + "SharedMemory.Allocate<int>(GpuKeyTile);");
            writer.Line("// Where a backend has no warp shuffles (OpenCL in ILGPU 1.5.3), row-set reductions go through this (IGpuRowSets).");
            writer.Line("var rowSetScratch = " + Ilgpu + "SharedMemory.Allocate<" + Float4Type + ">(" + Invariant(GpuKernelShape.Threads) + ");");
            if (shape.QueryInShared)
            {
                writer.Line("var queryTile = " + Ilgpu + "SharedMemory.Allocate<" + Float4Type + ">(BlockRows * Chunks);");
                using (writer.Block("for (int index = thread; index < BlockRows * Chunks; index += " + Ilgpu + "Group.DimX)"))
                {
                    writer.Line("long source = ((long)head * queryRows + global::SparseAttention.Gpu.GpuTileTable.RowOf(tiles, rowStart, rowStep, " + MathType + ".Min(index / Chunks, lastRow))) * HeadDim + index % Chunks * 4;");
                    writer.Line("float scale = arguments.ScoreScale;");
                    writer.Line("queryTile[index] = new " + Float4Type + "(query[source] * scale, query[source + 1] * scale, query[source + 2] * scale, query[source + 3] * scale);");
                }
            }

            using (writer.Block("if (thread < GpuKeyTile)"))
            {
                writer.Line("nonFiniteValues[thread] = 0;");
            }

            writer.Line();
            writer.Line("// Each row's online-softmax state, kept alike by the eight lanes that share the row (the sum is this lane's share");
            writer.Line("// until the end), and its output columns of this lane.");
            foreach (int r in Rows)
            {
                writer.Line("float max" + r + " = float.NegativeInfinity, sum" + r + " = 0f;");
            }

            writer.Line("// NaN/Inf policy: a visible score that is not finite, or a visible key's value holding NaN or ±inf, makes the row NaN.");
            writer.Line("bool " + string.Join(", ", Rows.Select(r => "poisoned" + r + " = false")) + ";");
            foreach (int r in Rows)
            {
                writer.Line("float " + string.Join(", ", Enumerable.Range(0, shape.ChunksPerLane).SelectMany(j => Components.Select(c => Accumulator(r, j, c) + " = 0f"))) + ";");
            }

        }

        private static string Accumulator(int row, int chunk, string component) => "o" + row + "_" + chunk + component;

        /// <summary>One tile-table entry: its class, and K and V staged in shared memory between barriers.</summary>
        private static void EmitGpuStageTile(IndentedTextWriter writer, GpuKernelShape shape)
        {
            writer.Line("int entry = firstEntry + entryIndex * global::SparseAttention.Gpu.GpuTileTable.EntryInts;");
            writer.Line("int keyStart = tiles[entry], keyStep = tiles[entry + 1]; // the tile's keys: keyStart + keyStep * j");
            writer.Line("bool full = tiles[entry + 2] == (int)global::SparseAttention.TileClass.Full;");
            writer.Line("int maskBase = tiles[entry + 3];");
            writer.Line("int keyPosition = tiles[entry + 4]; // the position of the tile's first key (a ring's slots are not positions)");
            writer.Line();
            writer.Line("// Stage K and V once every lane is done with the previous tile. Rows past the end repeat the last key (valid");
            writer.Line("// memory) and are never visible; values that are not finite are staged as zeros and flagged per key.");
            writer.Line(Ilgpu + "Group.Barrier();");
            using (writer.Block("for (int index = thread; index < GpuKeyTile * Chunks; index += " + Ilgpu + "Group.DimX)"))
            {
                writer.Line("int tileRow = index / Chunks, chunk = index % Chunks;");
                writer.Line("long source = kvOffset + (long)" + MathType + ".Min(keyStart + keyStep * tileRow, keyRows - 1) * HeadDim + chunk * 4;");
                writer.Line("keyTile[tileRow * KeyStride + chunk] = new " + Float4Type + "(key[source], key[source + 1], key[source + 2], key[source + 3]);");
                writer.Line("float v0 = value[source], v1 = value[source + 1], v2 = value[source + 2], v3 = value[source + 3];");
                using (writer.Block("if (!(v0 - v0 == 0f && v1 - v1 == 0f && v2 - v2 == 0f && v3 - v3 == 0f))"))
                {
                    writer.Line("nonFiniteValues[tileRow] = entryIndex + 1;");
                    writer.Line("v0 = v0 - v0 == 0f ? v0 : 0f;");
                    writer.Line("v1 = v1 - v1 == 0f ? v1 : 0f;");
                    writer.Line("v2 = v2 - v2 == 0f ? v2 : 0f;");
                    writer.Line("v3 = v3 - v3 == 0f ? v3 : 0f;");
                }

                writer.Line("valueTile[index] = new " + Float4Type + "(v0, v1, v2, v3);");
            }

            writer.Line();
            writer.Line(Ilgpu + "Group.Barrier();");
            writer.Line();
        }

        /// <summary>
        /// QKᵀ for the lane's 4 rows x KeysPerLane keys, the pattern's visibility and the score modifiers, the rows' tile max
        /// across the eight lanes, the online-softmax step, and the probabilities into the block's buffer.
        /// </summary>
        private static void EmitGpuScoreTile(IndentedTextWriter writer, GpuKernelShape shape)
        {
            IEnumerable<int> keys = Enumerable.Range(0, shape.KeysPerLane);
            writer.Line("// QKᵀ: per column chunk, one float4 of each of the lane's rows and keys, 16 x " + Invariant(shape.KeysPerLane) + " FMAs.");
            foreach (int r in Rows)
            {
                writer.Line("float " + string.Join(", ", keys.Select(k => "s" + r + k + " = 0f")) + ";");
            }

            using (writer.Block("for (int chunk = 0; chunk < Chunks; chunk++)"))
            {
                foreach (int r in Rows)
                {
                    writer.Line(shape.QueryInShared
                        ? Float4Type + " q" + r + " = queryTile[(firstRow + " + r + ") * Chunks + chunk];"
                        : "long at" + r + " = queryOffset" + r + " + chunk * 4;");
                }

                foreach (int k in keys)
                {
                    writer.Line(Float4Type + " k" + k + " = keyTile[(part + " + Invariant(8 * k) + ") * KeyStride + chunk];");
                }

                foreach (int r in Rows)
                {
                    if (!shape.QueryInShared)
                    {
                        writer.Line("float q" + r + "X = query[at" + r + "], q" + r + "Y = query[at" + r + " + 1], q" + r + "Z = query[at" + r + " + 2], q" + r + "W = query[at" + r + " + 3];");
                    }

                    foreach (int k in keys)
                    {
                        string q(string c) => shape.QueryInShared ? "q" + r + "." + c : "q" + r + c;
                        // Left to right from the running score: each product is added to the sum so far, a mul.f32 and an add.f32
                        // ptxas contracts into one FMA (a + b * c + d * e would leave one product's add unfused).
                        writer.Line("s" + r + k + " = s" + r + k + " + " + string.Join(" + ", Components.Select(c => q(c) + " * k" + k + "." + c)) + ";");
                    }
                }
            }

            writer.Line();
            writer.Line("// Visibility (a full tile, or the row's mask bits), the NaN/Inf policy and the score modifiers, per pair.");
            foreach (int k in keys)
            {
                writer.Line("int key" + k + " = part + " + Invariant(8 * k) + ";");
                writer.Line("bool valueNonFinite" + k + " = nonFiniteValues[key" + k + "] == entryIndex + 1;");
            }

            foreach (int r in Rows)
            {
                writer.Line("int maskRow" + r + " = maskBase + (firstRow + " + r + ") * maskWords;");
                writer.Line("int position" + r + " = arguments.RowsAreHeads != 0 ? arguments.QueryStart : arguments.QueryStart + row" + r + ";");
                foreach (int k in keys)
                {
                    string pair = r.ToString() + k;
                    writer.Line("bool visible" + pair + " = keyStart + keyStep * key" + k + " < keyRows && (full || ((tiles[maskRow" + r + " + (key" + k + " >> 5)] >> (key" + k + " & 31)) & 1) != 0);");
                    writer.Line("s" + pair + " = GpuPairScore(s" + pair + (shape.QueryInShared ? "" : " * arguments.ScoreScale") + ", visible" + pair + ", position" + r + ", keyPosition + keyStep * key" + k + ", rowHead" + r + ", arguments, perHead);");
                    writer.Line("poisoned" + r + " |= float.IsNaN(s" + pair + ") || (visible" + pair + " && valueNonFinite" + k + ");");
                    writer.Line("s" + pair + " = float.IsNaN(s" + pair + ") ? float.NegativeInfinity : s" + pair + ";");
                }
            }

            writer.Line();
            writer.Line("// The rows' tile max across the eight lanes that share them, then the online-softmax step: a larger max rescales");
            writer.Line("// the row's sum and output columns; a row that has seen no visible key yet keeps max -inf and probabilities 0.");
            foreach (int r in Rows)
            {
                writer.Line("float tileMax" + r + " = " + Fold(keys.Select(k => "s" + r + k), (a, b) => MathType + ".Max(" + a + ", " + b + ")") + ";");
            }

            writer.Line(Float4Type + " tileMaxima = default(TRowSets).Max(new " + Float4Type + "(" + string.Join(", ", Rows.Select(r => "tileMax" + r)) + "), rowSetScratch, thread);");
            foreach (int r in Rows)
            {
                writer.Line("tileMax" + r + " = tileMaxima." + Components[r] + ";");
            }

            foreach (int r in Rows)
            {
                writer.Line("float newMax" + r + " = " + MathType + ".Max(max" + r + ", tileMax" + r + ");");
                writer.Line("float base" + r + " = newMax" + r + " == float.NegativeInfinity ? 0f : newMax" + r + ";");
                writer.Line("float correction" + r + " = global::SparseAttention.Gpu.GpuMath.Exp2(max" + r + " - base" + r + ");");
                writer.Line("max" + r + " = newMax" + r + ";");
                foreach (int k in keys)
                {
                    writer.Line("float p" + r + k + " = global::SparseAttention.Gpu.GpuMath.Exp2(s" + r + k + " - base" + r + ");");
                }

                writer.Line("sum" + r + " = sum" + r + " * correction" + r + " + " + string.Join(" + ", keys.Select(k => "p" + r + k)) + ";");
                for (int j = 0; j < shape.ChunksPerLane; j++)
                {
                    foreach (string c in Components)
                    {
                        writer.Line(Accumulator(r, j, c) + " *= correction" + r + ";");
                    }
                }

                foreach (int k in keys)
                {
                    writer.Line("probabilityFloats[(firstRow + " + r + ") * GpuKeyTile + key" + k + "] = p" + r + k + ";");
                }
            }

            writer.Line();
            writer.Line("// A warp's rows are its own (the buffer is per warp in effect): its lanes' probabilities are in the buffer before");
            writer.Line("// any of them reads another's, and the other warps need not wait.");
            writer.Line("default(TRowSets).WarpBarrier();");
        }

        private static string Fold(IEnumerable<string> values, System.Func<string, string, string> combine) => values.Aggregate(combine);

        /// <summary>P·V: four keys at a time, each row's four probabilities as one float4, each chunk of each key's value row as one.</summary>
        private static void EmitGpuAddValues(IndentedTextWriter writer, GpuKernelShape shape)
        {
            writer.Line();
            writer.Line("// P·V: " + Invariant(16 * shape.ChunksPerLane * 4) + " FMAs per four keys from " + Invariant(4 + 4 * shape.ChunksPerLane) + " 16-byte shared loads.");
            using (writer.Block("for (int key4 = 0; key4 < GpuKeyTile / 4; key4++)"))
            {
                foreach (int r in Rows)
                {
                    writer.Line(Float4Type + " p" + r + " = probabilities[(firstRow + " + r + ") * (GpuKeyTile / 4) + key4];");
                }

                for (int k = 0; k < 4; k++)
                {
                    for (int j = 0; j < shape.ChunksPerLane; j++)
                    {
                        bool guarded = shape.IsPartialChunk(j);
                        string chunk = "part + " + Invariant(8 * j);
                        // A lane without the last chunk reads chunk 0 instead (valid memory) into accumulators it never writes.
                        string index = "(key4 * 4 + " + k + ") * Chunks + " + (guarded ? "(ownsLastChunk ? " + chunk + " : 0)" : chunk);
                        writer.Line(Float4Type + " v" + k + "_" + j + " = valueTile[" + index + "];");
                        foreach (int r in Rows)
                        {
                            string p = "p" + r + "." + Components[k];
                            writer.Line(string.Join(" ", Components.Select(c => Accumulator(r, j, c) + " += " + p + " * v" + k + "_" + j + "." + c + ";")));
                        }
                    }
                }
            }
        }

        /// <summary>The rows' sums and poison across the eight lanes; the normalised output chunks, the log-sum-exp.</summary>
        private static void EmitGpuWriteRows(IndentedTextWriter writer, GpuKernelShape shape)
        {
            writer.Line();
            writer.Line("// A non-finite value shows as NaN or ±inf in an accumulator (0 x inf is NaN too); x - x is 0 only for a finite x.");
            foreach (int r in Rows)
            {
                string finite = string.Join(" && ", Enumerable.Range(0, shape.ChunksPerLane).SelectMany(j => Components.Select(c => Accumulator(r, j, c) + " - " + Accumulator(r, j, c) + " == 0f")));
                writer.Line("float rowPoison" + r + " = poisoned" + r + " || !(" + finite + ") ? 1f : 0f;");
            }

            writer.Line("// The four rows' sums, and their poison as a float (0 or 1), summed over the row set as the maxima are.");
            writer.Line(Float4Type + " sums = default(TRowSets).Sum(new " + Float4Type + "(" + string.Join(", ", Rows.Select(r => "sum" + r)) + "), rowSetScratch, thread);");
            writer.Line(Float4Type + " poison = default(TRowSets).Sum(new " + Float4Type + "(" + string.Join(", ", Rows.Select(r => "rowPoison" + r)) + "), rowSetScratch, thread);");
            foreach (int r in Rows)
            {
                writer.Line("sum" + r + " = sums." + Components[r] + ";");
                writer.Line("bool rowPoisoned" + r + " = poison." + Components[r] + " != 0f;");
            }

            foreach (int r in Rows)
            {
                writer.Line();
                using (writer.Block("if (firstRow + " + r + " < rowCount && partialSlot >= 0)"))
                {
                    writer.Line("// A part of long rows: the row normalised over this part's keys (no sink) and its base-2 log-sum-exp, for the merge.");
                    writer.Line("long slot = (long)head * tiles[2] + partialSlot + firstRow + " + r + ";");
                    writer.Line("float normalizer = rowPoisoned" + r + " ? float.NaN : sum" + r + " > 0f ? 1f / sum" + r + " : 0f;");
                    EmitGpuStoreRow(writer, shape, r, "slot * HeadDim", "partials");
                    using (writer.Block("if (part == 0)"))
                    {
                        writer.Line("partials[(long)" + Ilgpu + "Grid.DimY * tiles[2] * HeadDim + slot] = rowPoisoned" + r + " ? float.NaN : sum" + r + " > 0f ? max" + r + " + global::SparseAttention.Gpu.GpuMath.Log2(sum" + r + ") : float.NegativeInfinity;");
                    }
                }

                using (writer.Block("else if (firstRow + " + r + " < rowCount)"))
                {
                    writer.Line("// A row that saw no key is written as zeros; a learned sink joins the denominator of a row that saw one, with no value.");
                    writer.Line("float denominator = sum" + r + ";");
                    using (writer.Block("if (arguments.Sinks != 0 && sum" + r + " > 0f)"))
                    {
                        writer.Line("denominator += global::SparseAttention.Gpu.GpuMath.Exp2(perHead[arguments.Heads + rowHead" + r + "] * 1.44269504088896341f - max" + r + ");");
                    }

                    writer.Line("float normalizer = rowPoisoned" + r + " ? float.NaN : denominator > 0f ? 1f / denominator : 0f;");
                    EmitGpuStoreRow(writer, shape, r, "queryOffset" + r);
                    using (writer.Block("if (arguments.WriteLogSumExp != 0 && part == 0)"))
                    {
                        writer.Line("// ln(denominator) with its max: (max + log2(sum)) ln 2; -inf for a row that saw no key.");
                        writer.Line("logSumExp[(long)head * queryRows + row" + r + "] = rowPoisoned" + r + " ? float.NaN : sum" + r + " > 0f ? (max" + r + " + global::SparseAttention.Gpu.GpuMath.Log2(denominator)) * 0.693147180559945309f : float.NegativeInfinity;");
                    }
                }
            }
        }

        /// <summary>The lane's output chunks of row <paramref name="r"/>, times <c>normalizer</c>, to the row at <paramref name="rowOffset"/> of <paramref name="target"/>.</summary>
        private static void EmitGpuStoreRow(IndentedTextWriter writer, GpuKernelShape shape, int r, string rowOffset, string target = "output")
        {
            for (int j = 0; j < shape.ChunksPerLane; j++)
            {
                bool guarded = shape.IsPartialChunk(j);
                string at = rowOffset + " + (part + " + Invariant(8 * j) + ") * 4";
                string store = string.Join(" ", Enumerable.Range(0, 4).Select(c => target + "[" + at + (c == 0 ? "" : " + " + c) + "] = " + Accumulator(r, j, Components[c]) + " * normalizer;"));
                writer.Line(guarded ? "if (ownsLastChunk) { " + store + " }" : store);
            }
        }

        /// <summary>
        /// The score of one pair as the softmax sees it: -inf for a pair the structure hides; NaN for one that makes the row
        /// NaN (a raw score that is not finite, or a score mod's NaN or +inf); otherwise the raw score with softcap, ALiBi,
        /// then the declaration's mask and score mod (docs/design.md §2.4), at the pair's absolute positions.
        /// </summary>
        private static void EmitGpuPairScore(IndentedTextWriter writer, Models.ScoresModel? userCode)
        {
            writer.Line("/// <summary>One pair's base-2 score for the softmax: -inf hidden, NaN poisons the row (see the kernel).</summary>");
            using (writer.Block("private static float GpuPairScore(float raw, bool visible, int position, int keyPosition, int head, global::SparseAttention.Gpu.GpuAttentionArguments arguments, " + ArrayViewType + " perHead)"))
            {
                using (writer.Block("if (!visible)"))
                {
                    writer.Line("return float.NegativeInfinity;");
                }

                using (writer.Block("if (!(raw > float.NegativeInfinity && raw < float.PositiveInfinity))"))
                {
                    writer.Line("return float.NaN;");
                }

                writer.Line("float score = raw;");
                using (writer.Block("if (arguments.SoftcapBase2 != 0f)"))
                {
                    writer.Line("score = global::SparseAttention.Gpu.GpuMath.Softcap(score, arguments.SoftcapBase2);");
                }

                using (writer.Block("if (arguments.Alibi != 0)"))
                {
                    writer.Line("int distance = position - keyPosition;");
                    writer.Line("score -= perHead[head] * (distance < 0 ? -distance : distance);");
                }

                if (userCode?.MaskMethod is { } mask)
                {
                    writer.Line("// The mask can only hide a pair the structure shows; the pair's value still counts for the NaN/Inf policy.");
                    using (writer.Block("if (!" + mask + "(position, keyPosition, head))"))
                    {
                        writer.Line("return float.NegativeInfinity;");
                    }
                }

                if (userCode?.ScoreModMethod is { } mod)
                {
                    writer.Line("// The score mod sees natural units, as its author wrote it; its NaN or +inf poisons the row, its -inf hides the key.");
                    writer.Line("score = " + mod + "(score * global::SparseAttention.Cpu.VectorMath.Ln2, position, keyPosition, head) * global::SparseAttention.Cpu.VectorMath.Log2E;");
                    using (writer.Block("if (!(score < float.PositiveInfinity))"))
                    {
                        writer.Line("return float.NaN;");
                    }
                }

                writer.Line("return score;");
            }
        }
    }
}
