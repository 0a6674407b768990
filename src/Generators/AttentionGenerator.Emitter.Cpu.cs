using System.Globalization;
using System.Linq;
using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators;

public sealed partial class AttentionGenerator
{
    internal static partial class Emitter
    {
        /// <summary>Keys the row kernel scores per online-softmax step: the max and the rescale are paid once per tile.</summary>
        public const int RowKeyTile = 64;

        /// <summary>Dimensions per iteration of the emitted QKᵀ loop (the rest of the d-loop is a counted loop).</summary>
        private const int DimensionUnroll = 4;

        private const string ScalarKernelName = "ScalarRowKernel";
        private const string UnsafeType = "global::System.Runtime.CompilerServices.Unsafe";
        private const string MemoryMarshalType = "global::System.Runtime.InteropServices.MemoryMarshal";
        private const string MathType = "global::System.Math";
        private const string MathFType = "global::System.MathF";

        /// <summary>The score-modifier type parameter every kernel method takes (a declaration's modifiers, or none).</summary>
        private const string ScoresConstraint = "    where TScores : global::SparseAttention.Cpu.IScoreModifier";

        /// <summary>
        /// A vector instruction set a kernel is emitted for, with its tile shape. Register budgets: QKᵀ holds
        /// TileRows x (KeyTile / Lanes) score accumulators and PV TileRows x PvGroup output accumulators, plus a
        /// few loads: 24 + 5 of AVX-512's 32 registers, 12 + 3 of AVX2's and SSE's 16 (NEON has 32). Where the machine has 32
        /// registers (<c>VectorRegisters.ThirtyTwo</c>: AVX-512's encoding at every width, ARM64), the 256- and 128-bit
        /// kernels' P·V passes take <see cref="PvGroupWith32Registers"/> output vectors, 24 accumulators as on Vector512: half
        /// as many passes over the value rows. On a Zen 4, forced Vector256 took 0.91-0.98x and forced Vector128 0.88-0.96x the
        /// time on causal-16k, swa-16k-w4096, swa-4k-w512 and lf-4k; the same four-vector passes with 16 registers (AVX-512
        /// off in the JIT) spill and took 1.23-1.44x, so such machines keep PvGroup. Six rows on every width:
        /// the 256- and 128-bit tiles ran 4 rows (8 accumulators) until measured; 6 rows took 0.90x (Vector256, 16 registers)
        /// and 0.95x (Vector128) the time on swa-16k-w4096 (design §7). A neighbourhood's tiles have fewer
        /// (<see cref="NeighborhoodTileRows"/>): its rows move by a column of keys, so six of them span many keys few rows see.
        /// BlockTiles: key tiles per full block (<see cref="BlockKeys"/>), 4 on the narrow widths (64 and 32 keys: Zen 1,
        /// 0.94-0.97x and 0.90-0.91x the time of the 4K cases), 1 on Vector512, whose 64-key tiles are already that long
        /// (two tiles a block: 0.98-1.00x on a Zen 5).
        /// </summary>
        internal sealed record CpuTarget(string Name, int Lanes, int TileRows, int KeyTile, int PvGroup, int PvGroupWith32Registers, int BlockTiles = 1)
        {
            public string KernelName => Name + "Kernel";

            public string VectorType => "global::System.Runtime.Intrinsics." + Name + "<float>";

            public string Vector => "global::System.Runtime.Intrinsics." + Name;

            public int Panels => KeyTile / Lanes;

            /// <summary>
            /// Keys of a full block (<see cref="BlockTiles"/> key tiles every row sees whole): scored tile by tile, then one
            /// softmax step and one P·V pass per output group over all of them (see EmitFullBlocks).
            /// </summary>
            public int BlockKeys => KeyTile * BlockTiles;

            /// <summary>
            /// Rows of a neighbourhood tile. Six rows of a k-key neighbourhood row span (k + 5) columns of keys for k each;
            /// fewer rows waste less but reuse each key load less. Four took 0.90-0.95x the time of six on the NATTEN grids at
            /// every width (windows took 1.02-1.07x, so they keep six); on Vector128's 8-key tiles three took 0.93x the time
            /// of four at 7 x 7 and 1.04x at 13 x 13, and NAT's usual kernel is 7 x 7.
            /// </summary>
            public int NeighborhoodTileRows => Lanes == 4 ? 3 : 4;

            public string Describe(int headDim) => Name + " (" + Invariant(headDim / Lanes) + " x " + Invariant(Lanes) + " floats, tiles of " + Invariant(TileRows) + " queries x " + Invariant(KeyTile) + " keys)";

            /// <summary>Whether a row of <paramref name="headDim"/> floats is a whole number of these vectors.</summary>
            public bool Fits(int headDim) => headDim % Lanes == 0;
        }

        /// <summary>
        /// Widest first. HeadDim is a multiple of 8, so the 4- and 8-lane targets always fit; when the 16-lane
        /// one does not (HeadDim = 8, 24, ...) no Vector512 kernel is emitted and Vector512 runs the Vector256 one.
        /// </summary>
        internal static readonly CpuTarget[] CpuTargets =
        {
            new("Vector512", Lanes: 16, TileRows: 6, KeyTile: 64, PvGroup: 4, PvGroupWith32Registers: 4),
            new("Vector256", Lanes: 8, TileRows: 6, KeyTile: 16, PvGroup: 2, PvGroupWith32Registers: 4, BlockTiles: 4),
            new("Vector128", Lanes: 4, TileRows: 6, KeyTile: 8, PvGroup: 2, PvGroupWith32Registers: 4, BlockTiles: 4),
        };

        private static void EmitVectorKernel(IndentedTextWriter writer, CpuTarget target, int headDim, bool neighborhoodTile)
        {
            writer.Line("/// <summary>" + target.Name + " kernel: HeadDim = " + Invariant(headDim) + " is " + Invariant(headDim / target.Lanes) + " x " + Invariant(target.Lanes) + " floats; tiles of " + Invariant(target.TileRows) + " queries x " + Invariant(target.KeyTile) + " keys.</summary>");
            using (writer.Block("internal readonly struct " + target.KernelName + " : global::SparseAttention.Cpu.IAttentionTileKernel"))
            {
                writer.Line("public static int HeadDim => " + Invariant(headDim) + ";");
                writer.Line("public static int ScratchLength => " + Invariant(RowKeyTile) + ";");
                writer.Line("public static int Lanes => " + Invariant(target.Lanes) + ";");
                writer.Line("public static int TileRows => " + Invariant(target.TileRows) + ";");
                writer.Line("public static int KeyTile => " + Invariant(target.KeyTile) + ";");
                if (neighborhoodTile)
                {
                    writer.Line("public static int NeighborhoodTileRows => " + Invariant(target.NeighborhoodTileRows) + ";");
                }

                writer.Line();
                EmitVectorAccumulateRow(writer, target, headDim);
                writer.Line();
                EmitBandTile(writer, target, headDim, "AccumulateBandTile", FullBlocks(target));
                if (FullBlocks(target))
                {
                    writer.Line();
                    EmitFullBlocks(writer, target, headDim);
                }
                if (neighborhoodTile)
                {
                    // The same kernel with fewer rows, for a neighbourhood's tiles (CpuTarget).
                    writer.Line();
                    writer.Line("// AccumulateBandTile with " + Invariant(target.NeighborhoodTileRows) + " rows, for a neighbourhood's tiles: its rows move by a column of keys, so fewer");
                    writer.Line("// rows leave fewer of the tile's keys unseen by most rows.");
                    EmitBandTile(writer, target with { TileRows = target.NeighborhoodTileRows }, headDim, "AccumulateNeighborhoodTile", fullBlocks: false);
                }
            }
        }

        /// <summary>
        /// The row kernel: the query row and the output accumulator live in named vector locals (the HeadDim loop
        /// unrolled), keys are scored a tile at a time, probabilities come from the vector exp, values are
        /// accumulated by broadcast + FMA. Used for keys outside the band and for global rows.
        /// </summary>
        private static void EmitVectorAccumulateRow(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            writer.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]");
            writer.Line("public static void AccumulateRow<TScores>(ref float query, ref float keys, ref float values, global::System.ReadOnlySpan<global::SparseAttention.KeySegment> segments, in global::SparseAttention.Cpu.ScoreRow row, float scale, global::System.Span<float> scratch, ref float runningMax, ref float runningSum, global::System.Span<float> accumulator)");
            using (writer.Block(ScoresConstraint))
            {
                EmitRowRegisters(writer, target, headDim);
                using (writer.Block("for (int segmentIndex = 0; segmentIndex < segments.Length; segmentIndex++)"))
                {
                    writer.Line("global::SparseAttention.KeySegment segment = segments[segmentIndex];");
                    using (writer.Block("for (int tileStart = 0; tileStart < segment.Count; tileStart += " + Invariant(RowKeyTile) + ")"))
                    {
                        writer.Line("int tileCount = " + MathType + ".Min(" + Invariant(RowKeyTile) + ", segment.Count - tileStart);");
                        writer.Line("int firstKey = segment.Start + tileStart * segment.Step;");
                        writer.Line();
                        EmitRowScores(writer, target, headDim);
                        EmitRowScoreModifiers(writer, "scores");
                        writer.Line();
                        EmitRowRescale(writer, target, headDim);
                        writer.Line();
                        EmitRowProbabilities(writer, target);
                        writer.Line();
                        EmitRowValues(writer, target, headDim);
                    }
                }

                for (int i = 0; i < headDim / target.Lanes; i++)
                {
                    writer.Line(target.Vector + ".StoreUnsafe(output" + Invariant(i) + ", ref output, " + Invariant(i * target.Lanes) + ");");
                }

                EmitPoisonOnMinusInfinity(writer);
            }
        }

        /// <summary>The row kernel's registers: the query scaled once and the row's output so far, for the whole row.</summary>
        private static void EmitRowRegisters(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            int vectors = headDim / target.Lanes;
            string v = target.Vector, vt = target.VectorType;
            writer.Line("// The query row, scaled once, and the row's output so far stay in registers for the whole row.");
            writer.Line("ref float output = ref " + MemoryMarshalType + ".GetReference(accumulator);");
            for (int i = 0; i < vectors; i++)
            {
                writer.Line(vt + " query" + Invariant(i) + " = " + v + ".LoadUnsafe(ref query, " + Invariant(i * target.Lanes) + ") * scale;");
            }

            for (int i = 0; i < vectors; i++)
            {
                writer.Line(vt + " output" + Invariant(i) + " = " + v + ".LoadUnsafe(ref output, " + Invariant(i * target.Lanes) + ");");
            }

            writer.Line("ref float scores = ref " + MemoryMarshalType + ".GetReference(scratch);");
            EmitMinusInfinityComment(writer);
            writer.Line("bool sawMinusInfinity = false;");
        }

        /// <summary>A row tile's scores: one unrolled dot product per key, and the tile's max.</summary>
        private static void EmitRowScores(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            writer.Line("// Scores: one unrolled dot product per key.");
            writer.Line("float tileMax = float.NegativeInfinity;");
            writer.Line("int position = firstKey;");
            using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
            {
                writer.Line("ref float keyRow = ref " + UnsafeType + ".Add(ref keys, (nint)position * " + Invariant(headDim) + ");");
                writer.Line(vt + " dot = query0 * " + v + ".LoadUnsafe(ref keyRow, 0);");
                for (int i = 1; i < headDim / target.Lanes; i++)
                {
                    writer.Line("dot = " + v + ".FusedMultiplyAdd(query" + Invariant(i) + ", " + v + ".LoadUnsafe(ref keyRow, " + Invariant(i * target.Lanes) + "), dot);");
                }

                writer.Line("float score = global::SparseAttention.Cpu.VectorMath.SumAcross(dot);");
                writer.Line(UnsafeType + ".Add(ref scores, k) = score;");
                writer.Line("tileMax = " + MathFType + ".Max(tileMax, score);");
                writer.Line("sawMinusInfinity |= global::SparseAttention.Cpu.VectorMath.Poisons<TScores>(score);");
            }
        }

        /// <summary>
        /// A row tile's score modifiers (none for most declarations: the JIT drops the block), after the raw scores were
        /// checked for -inf (the NaN/Inf policy is about q·k) and before the max, which is taken again over what they left.
        /// </summary>
        private static void EmitRowScoreModifiers(IndentedTextWriter writer, string scores)
        {
            using (writer.Block("if (TScores.ModifiesScores)"))
            {
                writer.Line("global::System.Span<float> modified = " + MemoryMarshalType + ".CreateSpan(ref " + scores + ", tileCount);");
                writer.Line("global::SparseAttention.Cpu.ScoreMath.Modify<TScores>(modified, row.Site(segmentIndex, segment, tileStart));");
                writer.Line("tileMax = float.NegativeInfinity;");
                using (writer.Block("foreach (float score in modified)"))
                {
                    writer.Line("tileMax = " + MathFType + ".Max(tileMax, score);");
                }
            }
        }

        /// <summary>
        /// The max the row kernels subtract. Only modifiers can leave a row's max at -inf after a tile (every key masked so
        /// far): 2^(-inf - -inf) would be NaN, so they subtract 0 then and each masked key gets weight 0. Without modifiers
        /// the test folds away.
        /// </summary>
        private const string RowSoftmaxMax = "(TScores.ModifiesScores && runningMax == float.NegativeInfinity ? 0f : runningMax)";

        /// <summary>The online softmax step: a larger max rescales the sum and output accumulated so far.</summary>
        private static void EmitRowRescale(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            writer.Line("// Online softmax (base 2, log2(e) is in the scale): a larger max shrinks what was accumulated by 2^(oldMax - newMax).");
            using (writer.Block("if (tileMax > runningMax)"))
            {
                writer.Line("float correction = global::SparseAttention.Cpu.VectorMath.Exp2(runningMax - tileMax);");
                writer.Line("runningSum *= correction;");
                for (int i = 0; i < headDim / target.Lanes; i++)
                {
                    writer.Line("output" + Invariant(i) + " *= correction;");
                }

                writer.Line("runningMax = tileMax;");
            }
        }

        /// <summary>The tile's probabilities 2^(score - max), a vector at a time, added to the running sum.</summary>
        private static void EmitRowProbabilities(IndentedTextWriter writer, CpuTarget target)
        {
            string v = target.Vector, vt = target.VectorType;
            writer.Line("// Probabilities p = 2^(score - max) a vector at a time; lanes past the tile hold -inf and give 0.");
            using (writer.Block("for (int k = tileCount; k % " + Invariant(target.Lanes) + " != 0; k++)"))
            {
                writer.Line(UnsafeType + ".Add(ref scores, k) = float.NegativeInfinity;");
            }

            writer.Line(vt + " maxVector = " + v + ".Create(" + RowSoftmaxMax + ");");
            writer.Line(vt + " sumVector = " + vt + ".Zero;");
            using (writer.Block("for (int k = 0; k < tileCount; k += " + Invariant(target.Lanes) + ")"))
            {
                writer.Line(vt + " probability = global::SparseAttention.Cpu.VectorMath.Exp2(" + v + ".LoadUnsafe(ref scores, (nuint)k) - maxVector);");
                writer.Line(v + ".StoreUnsafe(probability, ref scores, (nuint)k);");
                writer.Line("sumVector += probability;");
            }

            writer.Line("runningSum += " + v + ".Sum(sumVector);");
        }

        /// <summary>The tile's values: each probability broadcast and FMA'd into the output registers.</summary>
        private static void EmitRowValues(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            writer.Line("// Values: broadcast each probability and FMA it into the accumulators.");
            writer.Line("position = firstKey;");
            using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
            {
                writer.Line("ref float valueRow = ref " + UnsafeType + ".Add(ref values, (nint)position * " + Invariant(headDim) + ");");
                writer.Line(vt + " weight = " + v + ".Create(" + UnsafeType + ".Add(ref scores, k));");
                for (int i = 0; i < headDim / target.Lanes; i++)
                {
                    writer.Line("output" + Invariant(i) + " = " + v + ".FusedMultiplyAdd(weight, " + v + ".LoadUnsafe(ref valueRow, " + Invariant(i * target.Lanes) + "), output" + Invariant(i) + ");");
                }
            }
        }

        /// <summary>
        /// Why the kernels look for -inf scores: NaN and +inf scores reach the row's sum through the max and 2^x on their
        /// own, but a -inf score would only get weight 0 and vanish, so it is caught explicitly.
        /// </summary>
        private static void EmitMinusInfinityComment(IndentedTextWriter writer)
        {
            writer.Line("// NaN/Inf policy: a non-finite visible score makes the row NaN. NaN and +inf carry through the max and 2^x by");
            writer.Line("// themselves; a -inf score (an infinite input or an overflowing q·k) would only get weight 0, so it poisons the sum.");
        }

        /// <summary>The end of a row kernel: a -inf score seen in this call poisons the row's running sum.</summary>
        private static void EmitPoisonOnMinusInfinity(IndentedTextWriter writer)
        {
            writer.Line();
            using (writer.Block("if (sawMinusInfinity)"))
            {
                writer.Line("runningSum = float.NaN;");
            }
        }

        /// <summary>
        /// The band tile kernel (FlashAttention-2 on the CPU): for TileRows queries of one residue stream it walks
        /// the key tiles their band covers. Scores come from a register-blocked QKᵀ against transposed key panels
        /// (broadcast one query element, FMA into TileRows x Panels accumulators). Only boundary tiles mask; full
        /// tiles accumulate PV blocked over rows, boundary tiles per row over each row's own keys, so an
        /// invisible key's value is never multiplied in. Loop indices are native ints and rows advance by ref,
        /// so every load is one addressing mode.
        /// </summary>
        private static void EmitBandTile(IndentedTextWriter writer, CpuTarget target, int headDim, string name, bool fullBlocks)
        {
            string v = target.Vector;
            int rows = target.TileRows, lanes = target.Lanes, keyTile = target.KeyTile;
            writer.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]");
            writer.Line("public static void " + name + "<TScores>(ref global::SparseAttention.Cpu.BandTile tile)");
            using (writer.Block(ScoresConstraint))
            {
                EmitBandTileSetup(writer, target, headDim);
                using (writer.Block("for (long keyStart = firstVisible / " + Invariant(lanes) + " * " + Invariant(lanes) + "; keyStart <= lastVisible; keyStart += " + Invariant(keyTile) + ")"))
                {
                    if (fullBlocks)
                    {
                        string blockKeys = Invariant(target.BlockKeys);
                        writer.Line("// Keys every row sees, in whole blocks of " + blockKeys + ": through AccumulateFullBlocks (one softmax step and one P·V pass per");
                        writer.Line("// output group for all " + blockKeys + "), then on, tile by tile, with what is left of the band.");
                        using (writer.Block("if (!TScores.Alibi && !TScores.CallsUserCode && keyStart >= fullFrom && keyStart + " + Invariant(target.BlockKeys - 1) + " <= fullTo)"))
                        {
                            writer.Line("long blocks = (fullTo - keyStart + 1) / " + blockKeys + ";");
                            writer.Line("AccumulateFullBlocks<TScores>(ref tile, keyStart, blocks, ref rowState);");
                            writer.Line("keyStart += blocks * " + blockKeys + ";");
                            using (writer.Block("if (keyStart > lastVisible)"))
                            {
                                writer.Line("break;");
                            }
                        }

                        writer.Line();
                    }

                    writer.Line("bool full = keyStart >= fullFrom && keyStart + " + Invariant(keyTile - 1) + " <= fullTo;");
                    writer.Line();
                    EmitTileScores(writer, target, headDim);
                    EmitTileOnlineSoftmax(writer, target, headDim);
                    EmitTileCommonValues(writer, target, headDim);
                    EmitTileBoundaryValues(writer, target, headDim);
                }

                for (int t = 0; t < rows; t++)
                {
                    writer.Line(UnsafeType + ".Add(ref rowSum, " + Invariant(t) + ") = " + v + ".Sum(rowSumVector" + Invariant(t) + ");");
                }
            }
        }

        /// <summary>
        /// Whether the kernel scores runs of full key tiles as blocks (AccumulateFullBlocks): the narrow targets, whose
        /// tiles are 16 and 8 keys, so that per tile their P·V passes loaded, rescaled and stored the output accumulators
        /// for 16 or 8 keys each, and each row took its max and rescale per tile.
        /// </summary>
        private static bool FullBlocks(CpuTarget target) => target.BlockTiles > 1 && SoftmaxThroughTileCall(target);

        /// <summary>
        /// AccumulateFullBlocks: blocks of BlockKeys keys that every row of the tile sees whole (no mask), scored a key tile
        /// at a time into a block of scores on the stack, then one softmax step for the block (TileSoftmax.UpdateFullBlock)
        /// and one P·V pass per output group over all its keys. Not inlined: a method of its own gets the registers the
        /// band kernel's boundary state would take.
        /// </summary>
        private static void EmitFullBlocks(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, panels = target.Panels, lanes = target.Lanes, keyTile = target.KeyTile, blockKeys = target.BlockKeys;
            writer.Line("/// <summary>Adds <paramref name=\"blocks\"/> blocks of " + Invariant(blockKeys) + " keys from <paramref name=\"keyStart\"/> on, which every row of the tile sees, to the rows' state.</summary>");
            writer.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.NoInlining | global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]");
            writer.Line("private static void AccumulateFullBlocks<TScores>(ref global::SparseAttention.Cpu.BandTile tile, long keyStart, long blocks, ref global::SparseAttention.Cpu.TileRowState<" + vt + "> rowState)");
            using (writer.Block(ScoresConstraint))
            {
                writer.Line("int rows = tile.Rows;");
                writer.Line("ref float keyPanels = ref tile.KeyPanels;");
                writer.Line("ref float values = ref tile.Values;");
                writer.Line("nint valueStride = tile.ValueStride;");
                writer.Line("ref float rowMax = ref " + MemoryMarshalType + ".GetReference(tile.RowMax);");
                writer.Line("ref float accumulators = ref " + MemoryMarshalType + ".GetReference(tile.Accumulators);");
                writer.Line("// The block's scores, then its probabilities: row t's " + Invariant(blockKeys) + " at t x " + Invariant(blockKeys) + ".");
                writer.Line("global::System.Span<float> block = stackalloc float[" + Invariant(rows * blockKeys) + "];");
                writer.Line("ref float probabilities = ref " + MemoryMarshalType + ".GetReference(block);");
                writer.Line("// Rows past the tile's end repeat its last row (as in AccumulateBandTile); their results are never read.");
                for (int t = 0; t < rows; t++)
                {
                    string r = Invariant(t);
                    string rowIndex = t == 0 ? "0" : MathType + ".Min(" + r + ", rows - 1)";
                    writer.Line("ref float queryRow" + r + " = ref " + UnsafeType + ".Add(ref tile.Query, (nint)" + rowIndex + " * tile.QueryStride);");
                }

                using (writer.Block("for (long blocksEnd = keyStart + blocks * " + Invariant(blockKeys) + "; keyStart < blocksEnd; keyStart += " + Invariant(blockKeys) + ")"))
                {
                    using (writer.Block("for (int tileOffset = 0; tileOffset < " + Invariant(blockKeys) + "; tileOffset += " + Invariant(keyTile) + ")"))
                    {
                        for (int t = 0; t < rows; t++)
                        {
                            for (int p = 0; p < panels; p++)
                            {
                                writer.Line(vt + " score" + Invariant(t) + "_" + Invariant(p) + " = " + vt + ".Zero;");
                            }
                        }

                        writer.Line("ref float panelColumn = ref " + UnsafeType + ".Add(ref keyPanels, (nint)((keyStart + tileOffset) / " + Invariant(lanes) + ") * " + Invariant(headDim * lanes) + ");");
                        EmitTileScoreLoop(writer, target, headDim, panels);
                        writer.Line("ref float tileScores = ref " + UnsafeType + ".Add(ref probabilities, tileOffset);");
                        for (int t = 0; t < rows; t++)
                        {
                            for (int p = 0; p < panels; p++)
                            {
                                writer.Line(v + ".StoreUnsafe(score" + Invariant(t) + "_" + Invariant(p) + ", ref tileScores, " + Invariant(t * blockKeys + p * lanes) + ");");
                            }
                        }
                    }

                    writer.Line();
                    using (writer.Block("if (TScores.SoftcapBase2 != 0f)"))
                    {
                        writer.Line("global::SparseAttention.Cpu.BandTile.ApplySoftcap<TScores>(ref probabilities, " + Invariant(rows * blockKeys) + ");");
                    }

                    writer.Line("global::SparseAttention.Cpu.TileSoftmax.UpdateFullBlock<TScores>(ref probabilities, " + Invariant(rows) + ", " + Invariant(blockKeys) + ", ref rowMax, ref rowState);");
                    for (int t = 0; t < rows; t++)
                    {
                        writer.Line("float rescale" + Invariant(t) + " = rowState.Rescale" + Invariant(t) + ";");
                    }

                    writer.Line();
                    writer.Line("// O = O x rescale + P V over the block's keys.");
                    EmitValuePasses(writer, target, headDim, blockKeys, "0", Invariant(blockKeys - 1), "(nint)keyStart * valueStride");
                }
            }
        }

        /// <summary>The band tile's setup: the band's limits, the range of key tiles every row sees whole, row state and query rows.</summary>
        private static void EmitBandTileSetup(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows;
            int vectors = headDim / target.Lanes;
            writer.Line("int rows = tile.Rows;");
            writer.Line("long firstQuery = tile.FirstQuery, queryStep = tile.QueryStep;");
            writer.Line("// The band: row t sits at stream coordinate q_t = firstQuery + t x queryStep and sees stream keys q_t - left .. q_t + right,");
            writer.Line("// within [firstKey, lastKey] (queryStep is 1 but for a neighbourhood's gathered stream, where each row moves by a column of keys).");
            writer.Line("long left = tile.Left, right = tile.Right;");
            writer.Line("long firstKey = tile.KeyFirst, lastKey = tile.KeyLast;");
            writer.Line("long lastQuery = firstQuery + (rows - 1) * queryStep;");
            writer.Line("// Row t sees stream keys [max(firstKey, q_t - left), min(lastKey, q_t + right)]; a key tile inside every row's range needs no mask.");
            writer.Line("long firstVisible = " + MathType + ".Max(firstKey, firstQuery - left);");
            writer.Line("long lastVisible = " + MathType + ".Min(lastKey, lastQuery + right);");
            writer.Line("long fullFrom = " + MathType + ".Max(firstKey, lastQuery - left);");
            writer.Line("long fullTo = " + MathType + ".Min(lastKey, firstQuery + right);");
            writer.Line("ref float keyPanels = ref tile.KeyPanels;");
            writer.Line("ref float values = ref tile.Values;");
            writer.Line("nint valueStride = tile.ValueStride;");
            writer.Line("ref float rowMax = ref " + MemoryMarshalType + ".GetReference(tile.RowMax);");
            writer.Line("ref float rowSum = ref " + MemoryMarshalType + ".GetReference(tile.RowSum);");
            writer.Line("ref float probabilities = ref " + MemoryMarshalType + ".GetReference(tile.Probabilities);");
            writer.Line("ref float accumulators = ref " + MemoryMarshalType + ".GetReference(tile.Accumulators);");
            writer.Line(vt + " minusInfinity = " + v + ".Create(float.NegativeInfinity);");
            writer.Line("// Running sums stay vectors (rescaled and added lane-wise) and are reduced once, after the last key tile.");
            bool stateInMemory = SoftmaxThroughTileCall(target);
            if (stateInMemory)
            {
                writer.Line("// (The sums live in rowState, which a full tile's softmax step takes by reference.)");
                writer.Line("global::SparseAttention.Cpu.TileRowState<" + vt + "> rowState = default;");
            }

            for (int t = 0; t < rows; t++)
            {
                string sum = "rowSumVector" + Invariant(t), initial = v + ".CreateScalar(" + UnsafeType + ".Add(ref rowSum, " + Invariant(t) + "))";
                if (stateInMemory)
                {
                    writer.Line("ref " + vt + " " + sum + " = ref rowState.Sum" + Invariant(t) + ";");
                    writer.Line(sum + " = " + initial + ";");
                }
                else
                {
                    writer.Line(vt + " " + sum + " = " + initial + ";");
                }
            }

            writer.Line("// Rows past the tile's end repeat its last row; their results are never read. Row t sees stream keys");
            writer.Line("// rowFirstKey_t .. rowLastKey_t in every key tile.");
            for (int t = 0; t < rows; t++)
            {
                string r = Invariant(t);
                string rowIndex = t == 0 ? "0" : MathType + ".Min(" + r + ", rows - 1)";
                writer.Line("int row" + r + " = " + rowIndex + ";");
                writer.Line("long query" + r + " = firstQuery + row" + r + " * queryStep;");
                writer.Line("long rowFirstKey" + r + " = " + MathType + ".Max(firstKey, query" + r + " - left), rowLastKey" + r + " = " + MathType + ".Min(lastKey, query" + r + " + right);");
                writer.Line("ref float queryRow" + r + " = ref " + UnsafeType + ".Add(ref tile.Query, (nint)row" + r + " * tile.QueryStride);");
            }

            writer.Line("// ALiBi (when declared; otherwise the JIT drops all of this): the bias -slope x |query - key| is added in registers");
            writer.Line("// as each row's scores are read back, from the rows' absolute positions here and the keys' per tile (in float,");
            writer.Line("// exact below 2^24 positions).");
            writer.Line(vt + " alibiSlope = " + v + ".Create(TScores.Alibi ? -tile.AlibiSlope : 0f);");
            writer.Line(vt + " alibiLaneSteps = " + v + ".ConvertToSingle(" + IntVector(target) + ".Indices * tile.KeyPositionStep);");
            writer.Line("bool alibiGathered = TScores.Alibi && !tile.GatheredKeyPositions.IsEmpty;");
            for (int t = 0; t < rows; t++)
            {
                string r = Invariant(t);
                writer.Line(vt + " alibiQuery" + r + " = " + v + ".Create(TScores.Alibi ? (float)(tile.QueryPosition + tile.QueryPositionStep * row" + r + ") : 0f);");
            }
        }

        /// <summary>S = Q Kᵀ for one key tile, register-blocked: broadcast one query element, FMA it into TileRows x Panels accumulators.</summary>
        private static void EmitTileScores(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, panels = target.Panels, lanes = target.Lanes;
            string panelFloats = Invariant(headDim * lanes);
            writer.Line("// Scores S = Q Kᵀ (keys pre-scaled): broadcast one query element, FMA it into a row of accumulators.");
            for (int t = 0; t < rows; t++)
            {
                for (int p = 0; p < panels; p++)
                {
                    writer.Line(vt + " score" + Invariant(t) + "_" + Invariant(p) + " = " + vt + ".Zero;");
                }
            }

            writer.Line("ref float panelColumn = ref " + UnsafeType + ".Add(ref keyPanels, (nint)(keyStart / " + Invariant(lanes) + ") * " + panelFloats + ");");
            // The band's last key tile often reaches past every row's keys by whole panels (a 512-key window's rows span 517
            // keys: the ninth 64-key tile holds 5-20 of them): those panels' scores stay 0, lanes the mask below sets to -inf.
            writer.Line("// Panels past every row's last key (in the band's last tile) are skipped: their scores stay 0, lanes the mask sets to -inf.");
            writer.Line("long panelsSeen = (lastVisible - keyStart) / " + Invariant(lanes) + " + 1;");
            for (int seen = panels; seen >= 1; seen--)
            {
                string condition = seen == panels ? "if (panelsSeen >= " + Invariant(panels) + ")" : seen == 1 ? "else" : "else if (panelsSeen == " + Invariant(seen) + ")";
                using (writer.Block(condition))
                {
                    EmitTileScoreLoop(writer, target, headDim, seen);
                }
            }

            writer.Line();
        }

        /// <summary>The QKᵀ loop over HeadDim for the tile's first <paramref name="seen"/> panels of keys.</summary>
        private static void EmitTileScoreLoop(IndentedTextWriter writer, CpuTarget target, int headDim, int seen)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, lanes = target.Lanes;
            using (writer.Block("for (nint d = 0; d < " + Invariant(headDim) + "; d += " + Invariant(DimensionUnroll) + ", panelColumn = ref " + UnsafeType + ".Add(ref panelColumn, " + Invariant(DimensionUnroll * lanes) + "))"))
            {
                for (int u = 0; u < DimensionUnroll; u++)
                {
                    string dim = u == 0 ? "d" : "d + " + Invariant(u);
                    for (int p = 0; p < seen; p++)
                    {
                        writer.Line(vt + " key" + Invariant(u) + "_" + Invariant(p) + " = " + v + ".LoadUnsafe(ref panelColumn, " + Invariant(u * lanes + p * headDim * lanes) + ");");
                    }

                    for (int t = 0; t < rows; t++)
                    {
                        string broadcast = "broadcast" + Invariant(u) + "_" + Invariant(t);
                        writer.Line(vt + " " + broadcast + " = " + v + ".Create(" + UnsafeType + ".Add(ref queryRow" + Invariant(t) + ", " + dim + "));");
                        for (int p = 0; p < seen; p++)
                        {
                            string score = "score" + Invariant(t) + "_" + Invariant(p);
                            writer.Line(score + " = " + v + ".FusedMultiplyAdd(" + broadcast + ", key" + Invariant(u) + "_" + Invariant(p) + ", " + score + ");");
                        }
                    }
                }
            }
        }

        /// <summary>The online softmax of each row over one key tile (base 2), masking a boundary tile and applying the NaN/Inf policy.</summary>
        private static void EmitTileOnlineSoftmax(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, panels = target.Panels, lanes = target.Lanes, keyTile = target.KeyTile;
            writer.Line("// The score block goes to scratch, so the softmax below works on one row at a time in few registers.");
            for (int t = 0; t < rows; t++)
            {
                for (int p = 0; p < panels; p++)
                {
                    writer.Line(v + ".StoreUnsafe(score" + Invariant(t) + "_" + Invariant(p) + ", ref probabilities, " + Invariant(t * keyTile + p * lanes) + ");");
                }
            }

            writer.Line();
            writer.Line("// Softcap, if declared, on the whole block (one call); ALiBi, a mask and a score mod come per row, below.");
            using (writer.Block("if (TScores.SoftcapBase2 != 0f)"))
            {
                writer.Line("global::SparseAttention.Cpu.BandTile.ApplySoftcap<TScores>(ref probabilities, " + Invariant(target.TileRows * target.KeyTile) + ");");
            }

            writer.Line();
            writer.Line("// ALiBi's key positions for this tile: arithmetic in a residue stream, loaded in a gathered one.");
            for (int p = 0; p < panels; p++)
            {
                writer.Line(vt + " alibiKeys" + Invariant(p) + " = default;");
            }

            using (writer.Block("if (TScores.Alibi)"))
            {
                using (writer.Block("if (alibiGathered)"))
                {
                    writer.Line("ref int gatheredKeys = ref " + UnsafeType + ".AsRef(in " + MemoryMarshalType + ".GetReference(tile.GatheredKeyPositions));");
                    for (int p = 0; p < panels; p++)
                    {
                        writer.Line("alibiKeys" + Invariant(p) + " = " + v + ".ConvertToSingle(" + v + ".LoadUnsafe(ref gatheredKeys, (nuint)(keyStart + " + Invariant(p * lanes) + ")));");
                    }
                }

                using (writer.Block("else"))
                {
                    for (int p = 0; p < panels; p++)
                    {
                        writer.Line("alibiKeys" + Invariant(p) + " = " + v + ".Create((float)(tile.KeyPosition + tile.KeyPositionStep * (keyStart + " + Invariant(p * lanes) + "))) + alibiLaneSteps;");
                    }
                }
            }

            writer.Line();
            writer.Line(IntVector(target) + " keyIndex = " + v + ".Create((int)keyStart) + " + IntVector(target) + ".Indices;");
            writer.Line();
            writer.Line("// Online softmax per row (base 2): mask a boundary tile's keys outside the row's range to -inf (a select, so");
            writer.Line("// NaN in an invisible key cannot leak), take the new max, rescale what was accumulated, store 2^(score - max).");
            writer.Line("// NaN/Inf policy: a non-finite visible score makes the row NaN. NaN and +inf carry through the max and 2^x by");
            writer.Line("// themselves; a visible -inf score (an infinite input or an overflowing q·k) would only get weight 0, so it");
            writer.Line("// poisons the row's sum. Masked lanes are -inf too, which is why the test looks at visible lanes only.");
            for (int t = 0; t < rows; t++)
            {
                writer.Line("float rescale" + Invariant(t) + " = 1f;");
            }

            writer.Line("// A row that sees none of a boundary tile's keys (a neighbourhood's tile rows are a key line apart, so about half");
            writer.Line("// of them at its edges) skips its step: its state is unchanged, and nothing reads its probabilities (the common");
            writer.Line("// range and its boundary range are empty).");
            if (SoftmaxThroughTileCall(target))
            {
                // Vector256 and Vector128: a full tile without per-row modifiers takes all its rows' steps through one call
                // that is not inlined (TileSoftmax.UpdateFullTile): in this method, with 16 registers, the JIT kept the 2^x's
                // intermediates on the stack (Zen 1: 0.95x the time of the 4K cases on Vector256, 0.75-0.80x on Vector128).
                writer.Line("// A full tile's rows through one call (TileSoftmax.UpdateFullTile): in this method the 2^x's intermediates were spilled.");
                using (writer.Block("if (full && !TScores.Alibi && !TScores.CallsUserCode)"))
                {
                    writer.Line("global::SparseAttention.Cpu.TileSoftmax.UpdateFullTile<TScores>(ref probabilities, " + Invariant(rows) + ", ref rowMax, ref rowState);");
                    for (int t = 0; t < rows; t++)
                    {
                        writer.Line("rescale" + Invariant(t) + " = rowState.Rescale" + Invariant(t) + ";");
                    }
                }

                using (writer.Block("else"))
                {
                    EmitRowSoftmaxSteps(writer, target);
                }
            }
            else
            {
                EmitRowSoftmaxSteps(writer, target);
            }

            writer.Line();
        }

        /// <summary>Each row's softmax step over the key tile, written out row by row (masking a boundary tile's keys).</summary>
        private static void EmitRowSoftmaxSteps(IndentedTextWriter writer, CpuTarget target)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, panels = target.Panels, lanes = target.Lanes, keyTile = target.KeyTile;
            for (int t = 0; t < rows; t++)
            {
                string r = Invariant(t);
                using (writer.Block("if (full || (rowFirstKey" + r + " <= keyStart + " + Invariant(keyTile - 1) + " && rowLastKey" + r + " >= keyStart))"))
                {
                    writer.Line("ref float rowScores = ref " + UnsafeType + ".Add(ref probabilities, " + Invariant(t * keyTile) + ");");
                    for (int p = 0; p < panels; p++)
                    {
                        writer.Line(vt + " score" + Invariant(p) + " = " + v + ".LoadUnsafe(ref rowScores, " + Invariant(p * lanes) + ");");
                    }

                    using (writer.Block("if (TScores.Alibi)"))
                    {
                        for (int p = 0; p < panels; p++)
                        {
                            string score = "score" + Invariant(p);
                            writer.Line(score + " = " + v + ".FusedMultiplyAdd(alibiSlope, " + v + ".Abs(alibiQuery" + Invariant(t) + " - alibiKeys" + Invariant(p) + "), " + score + ");");
                        }
                    }

                    EmitRowMask(writer, target, t);
                    if (target.Lanes == 16)
                    {
                        // The widest kernel's softmax step through one shared method (TileSoftmax): written out per row, its
                        // 2^x and max exhausted the JIT's inlining budget and stayed calls, with the poison tests and
                        // min/max after them. Measured: 0.95-0.96x the time on Vector512.
                        if (t == 0)
                        {
                            writer.Line("// The softmax step through TileSoftmax (inlined): written out per row it exhausted the JIT's inlining budget.");
                        }

                        for (int p = 0; p < panels; p++)
                        {
                            writer.Line(v + ".StoreUnsafe(score" + Invariant(p) + ", ref rowScores, " + Invariant(p * lanes) + ");");
                        }

                        writer.Line("rescale" + Invariant(t) + " = global::SparseAttention.Cpu.TileSoftmax.UpdateRow(ref rowScores, " + Invariant(panels) + ", ref " + UnsafeType + ".Add(ref rowMax, " + Invariant(t) + "), ref rowSumVector" + Invariant(t) + ");");
                    }
                    else if (target.Lanes == 4)
                    {
                        // Vector128: the same, its two score vectors passed in registers (0.94-0.97x the time; with 16
                        // registers 0.97-0.995x). Vector256 writes these rows out (1.02-1.04x slower through it). Both
                        // narrow kernels take full tiles through UpdateFullTile (above): these are boundary tiles.
                        writer.Line("rescale" + Invariant(t) + " = global::SparseAttention.Cpu.TileSoftmax.UpdateRow(score0, score1, ref rowScores, ref " + UnsafeType + ".Add(ref rowMax, " + Invariant(t) + "), ref rowSumVector" + Invariant(t) + ");");
                    }
                    else
                    {
                        EmitRowSoftmaxUpdate(writer, target, t);
                    }
                }
            }
        }

        /// <summary>Whether the kernel takes a full tile's softmax steps through TileSoftmax.UpdateFullTile (Vector256, Vector128: two score vectors a row).</summary>
        private static bool SoftmaxThroughTileCall(CpuTarget target) => target.Lanes is 8 or 4 && target.Panels == 2;

        private static string IntVector(CpuTarget target) => "global::System.Runtime.Intrinsics." + target.Name + "<int>";

        /// <summary>
        /// A boundary tile masks the row's keys outside its range to -inf (a select); a visible -inf score, in a boundary
        /// tile or a full one, poisons the row's sum (the NaN/Inf policy).
        /// </summary>
        private static void EmitRowMask(IndentedTextWriter writer, CpuTarget target, int row)
        {
            string v = target.Vector, vt = target.VectorType, r = Invariant(row), intVector = IntVector(target);
            int panels = target.Panels, lanes = target.Lanes;
            string sawMinusInfinity = string.Join(" | ", Enumerable.Range(0, panels).Select(p => "global::SparseAttention.Cpu.VectorMath.Poisons<TScores>(score" + Invariant(p) + ")"));
            string sawVisibleMinusInfinity = string.Join(" | ", Enumerable.Range(0, panels).Select(p => "(global::SparseAttention.Cpu.VectorMath.Poisons<TScores>(score" + Invariant(p) + ") & visible" + Invariant(p) + ")"));
            using (writer.Block("if (!full)"))
            {
                writer.Line(intVector + " first = " + v + ".Create((int)rowFirstKey" + r + ");");
                writer.Line(intVector + " last = " + v + ".Create((int)rowLastKey" + r + ");");
                for (int p = 0; p < panels; p++)
                {
                    string key = p == 0 ? "keyIndex" : "(keyIndex + " + v + ".Create(" + Invariant(p * lanes) + "))";
                    writer.Line(vt + " visible" + Invariant(p) + " = " + v + ".AsSingle(" + v + ".GreaterThanOrEqual(" + key + ", first) & " + v + ".LessThanOrEqual(" + key + ", last));");
                }

                writer.Line();
                using (writer.Block("if (" + v + ".AsInt32(" + sawVisibleMinusInfinity + ") != " + intVector + ".Zero)"))
                {
                    writer.Line("rowSumVector" + r + " = " + v + ".Create(float.NaN);");
                }

                EmitTileScoreModifiers(writer, target, row, MathType + ".Max(keyStart, rowFirstKey" + r + ")", MathType + ".Min(keyStart + " + Invariant(target.KeyTile - 1) + ", rowLastKey" + r + ")");
                writer.Line();
                for (int p = 0; p < panels; p++)
                {
                    writer.Line("score" + Invariant(p) + " = " + v + ".ConditionalSelect(visible" + Invariant(p) + ", score" + Invariant(p) + ", minusInfinity);");
                }
            }

            using (writer.Block("else"))
            {
                using (writer.Block("if (" + v + ".AsInt32(" + sawMinusInfinity + ") != " + intVector + ".Zero)"))
                {
                    writer.Line("rowSumVector" + r + " = " + v + ".Create(float.NaN);");
                }

                writer.Line();
                EmitTileScoreModifiers(writer, target, row, "keyStart", "keyStart + " + Invariant(target.KeyTile - 1));
            }
        }

        /// <summary>
        /// One tile row's user mask and score mod (none for most declarations: the JIT drops the block), after the row's
        /// scores were checked for non-finite values and before the boundary mask, through memory on the keys the row's band
        /// covers in this tile, [from, to]; softcap and ALiBi ran on the whole score block before (see EmitTileOnlineSoftmax).
        /// </summary>
        private static void EmitTileScoreModifiers(IndentedTextWriter writer, CpuTarget target, int row, string from, string to)
        {
            string r = Invariant(row);
            using (writer.Block("if (TScores.CallsUserCode)"))
            {
                for (int p = 0; p < target.Panels; p++)
                {
                    writer.Line(target.Vector + ".StoreUnsafe(score" + Invariant(p) + ", ref rowScores, " + Invariant(p * target.Lanes) + ");");
                }

                writer.Line("tile.ApplyUserCode<TScores>(ref rowScores, " + r + ", keyStart, " + from + ", " + to + ");");
                for (int p = 0; p < target.Panels; p++)
                {
                    writer.Line("score" + Invariant(p) + " = " + target.Vector + ".LoadUnsafe(ref rowScores, " + Invariant(p * target.Lanes) + ");");
                }
            }
        }

        /// <summary>The row's new max, the rescale of what it accumulated, and its probabilities 2^(score - max) stored in place.</summary>
        private static void EmitRowSoftmaxUpdate(IndentedTextWriter writer, CpuTarget target, int row)
        {
            string v = target.Vector, vt = target.VectorType, r = Invariant(row);
            int panels = target.Panels, lanes = target.Lanes;
            string exp2 = "global::SparseAttention.Cpu.VectorMath.Exp2";
            string max = "score0";
            for (int p = 1; p < panels; p++)
            {
                max = "global::SparseAttention.Cpu.VectorMath.ScoreMax(" + max + ", score" + Invariant(p) + ")";
            }

            writer.Line("ref float runningMax = ref " + UnsafeType + ".Add(ref rowMax, " + r + ");");
            writer.Line(vt + " rowPeak = " + max + ";");
            writer.Line("// The max moves only when a score rises more than RescaleSlack above it (conditional rescaling, see TileSoftmax).");
            writer.Line("float newMax = runningMax;");
            using (writer.Block("if (" + v + ".GreaterThanAny(rowPeak, " + v + ".Create(newMax + global::SparseAttention.Cpu.TileSoftmax.RescaleSlack)))"))
            {
                writer.Line("newMax = " + MathFType + ".Max(runningMax, global::SparseAttention.Cpu.VectorMath.MaxAcross(rowPeak));");
            }

            using (writer.Block("if (newMax == float.NegativeInfinity)"))
            {
                writer.Line("// Nothing visible to this row yet: no probabilities, nothing to rescale; but a NaN score the hardware's max");
                writer.Line("// passed over beside -inf lanes still makes the row NaN.");
                string anyNaN = string.Join(" || ", Enumerable.Range(0, panels).Select(p => "global::SparseAttention.Cpu.VectorMath.AnyNaN(score" + Invariant(p) + ")"));
                using (writer.Block("if (" + anyNaN + ")"))
                {
                    writer.Line("rowSumVector" + r + " = " + v + ".Create(float.NaN);");
                }

                for (int p = 0; p < panels; p++)
                {
                    writer.Line(v + ".StoreUnsafe(" + vt + ".Zero, ref rowScores, " + Invariant(p * lanes) + ");");
                }
            }

            using (writer.Block("else"))
            {
                writer.Line("// Most tiles leave the max where it was: then nothing accumulated needs rescaling.");
                using (writer.Block("if (newMax > runningMax)"))
                {
                    writer.Line("rescale" + r + " = " + exp2 + "(runningMax - newMax);");
                }

                writer.Line(vt + " maxVector = " + v + ".Create(newMax);");
                string sum = "";
                for (int p = 0; p < panels; p++)
                {
                    string probability = "probability" + Invariant(p);
                    writer.Line(vt + " " + probability + " = " + exp2 + "(score" + Invariant(p) + " - maxVector);");
                    writer.Line(v + ".StoreUnsafe(" + probability + ", ref rowScores, " + Invariant(p * lanes) + ");");
                    sum = sum.Length == 0 ? probability : sum + " + " + probability;
                }

                writer.Line("rowSumVector" + r + " = " + v + ".FusedMultiplyAdd(rowSumVector" + r + ", " + v + ".Create(rescale" + r + "), " + sum + ");");
                writer.Line("runningMax = newMax;");
            }
        }

        /// <summary>O += P V over the keys every row of the tile sees, blocked over rows; it also applies each row's rescale.</summary>
        private static void EmitTileCommonValues(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            int rows = target.TileRows, keyTile = target.KeyTile;
            writer.Line("// Keys every row of the tile sees: O += P V blocked over rows. This also applies each row's rescale.");
            writer.Line("nint commonFrom = (nint)(" + MathType + ".Max(keyStart, fullFrom) - keyStart);");
            writer.Line("nint commonTo = " + MathType + ".Max(commonFrom - 1, (nint)(" + MathType + ".Min(keyStart + " + Invariant(keyTile - 1) + ", fullTo) - keyStart));");
            if (BlocksBoundaryKeys(target))
            {
                EmitBlockedBoundary(writer, target, headDim);
            }
            writer.Line("// With no common key and no rescale (most of a neighbourhood's boundary tiles) the accumulators stay as they are.");
            string rescaled = string.Join(" | ", Enumerable.Range(0, rows).Select(t => "(rescale" + Invariant(t) + " != 1f)"));
            using (writer.Block("if (commonFrom <= commonTo || " + rescaled + ")"))
            {
                EmitValuePasses(writer, target, headDim, keyTile, "commonFrom", "commonTo", "(nint)(keyStart + commonFrom) * valueStride");
            }

            writer.Line();
        }

        /// <summary>
        /// Whether a window's boundary tiles go through the blocked P·V (EmitBlockedBoundary): 64-key tiles, where the call
        /// row by row cost more than the few keys' work (Vector512 at swa-4k-w512: 0.95x the time, lf-4k 0.97x). The 16- and
        /// 8-key tiles' boundary keys are a third of their tile and go row by row in registers: blocked, their time was the
        /// same within 0.01 (lf-4k 1.01x at both widths).
        /// </summary>
        private static bool BlocksBoundaryKeys(CpuTarget target) => target.KeyTile >= 64;

        /// <summary>
        /// A window's boundary tile (rows one key apart, every row stepping over some key of the tile) takes its few keys
        /// outside the common range into the blocked P·V too, when their values are finite: the rows that do not see such a
        /// key have probability 0 for it (masked to -inf), and 0 x a finite value adds nothing, so the result is the per-row
        /// one without its call (on Vector512 at swa-4k-w512 that call and its setup took about a fifteenth of the time). A
        /// non-finite value there goes row by row (TileValues.AddBoundaryKeys), so it never reaches a row that does not see it.
        /// A neighbourhood's rows are a key line apart: most of its boundary tiles' keys are seen by few rows, and stay row by row.
        /// Vector512 only (<see cref="BlocksBoundaryKeys"/>).
        /// </summary>
        private static void EmitBlockedBoundary(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            string lastRow = Invariant(target.TileRows - 1), tileEnd = "keyStart + " + Invariant(target.KeyTile - 1);
            writer.Line("// A window's boundary tile: its keys outside the common range blocked over all rows too, if their values are finite.");
            writer.Line("bool blockedBoundary = false;");
            using (writer.Block("if (!full && queryStep == 1 && rowFirstKey" + lastRow + " <= " + tileEnd + " && rowLastKey0 >= keyStart)"))
            {
                writer.Line("nint unionFrom = (nint)(" + MathType + ".Max(keyStart, firstVisible) - keyStart);");
                writer.Line("nint unionTo = (nint)(" + MathType + ".Min(" + tileEnd + ", lastVisible) - keyStart);");
                writer.Line("ref float tileValues = ref " + UnsafeType + ".Add(ref values, (nint)keyStart * valueStride);");
                string finite = "global::SparseAttention.Cpu.TileValues.ValuesFinite(" + Invariant(target.Lanes) + ", ref tileValues, valueStride, " + Invariant(headDim) + ", ";
                using (writer.Block("if (" + finite + "unionFrom, commonFrom - 1) && " + finite + MathType + ".Max(commonTo + 1, commonFrom), unionTo))"))
                {
                    writer.Line("commonFrom = unionFrom;");
                    writer.Line("commonTo = unionTo;");
                    writer.Line("blockedBoundary = true;");
                }
            }

            writer.Line();
        }

        /// <summary>
        /// O = O x rescale + P V over keys [<paramref name="from"/>, <paramref name="to"/>] of the probabilities (row t's at
        /// t x <paramref name="rowStride"/>), one pass per group of PvGroup output vectors, its TileRows x PvGroup
        /// accumulators in registers (PvGroupWith32Registers where the machine has 32, chosen when the JIT compiles the kernel);
        /// <paramref name="firstValueRow"/> is the first key's offset into the values.
        /// </summary>
        private static void EmitValuePasses(IndentedTextWriter writer, CpuTarget target, int headDim, int rowStride, string from, string to, string firstValueRow)
        {
            if (target.PvGroupWith32Registers == target.PvGroup)
            {
                EmitValuePasses(writer, target, headDim, rowStride, from, to, firstValueRow, target.PvGroup);
                return;
            }

            using (writer.Block("if (global::SparseAttention.Cpu.VectorRegisters.ThirtyTwo)"))
            {
                writer.Line("// 32 registers: " + Invariant(target.TileRows * target.PvGroupWith32Registers) + " accumulators a pass, fewer passes over the value rows.");
                EmitValuePasses(writer, target, headDim, rowStride, from, to, firstValueRow, target.PvGroupWith32Registers);
            }

            using (writer.Block("else"))
            {
                writer.Line("// 16 registers: " + Invariant(target.TileRows * target.PvGroup) + " accumulators a pass (more would spill).");
                EmitValuePasses(writer, target, headDim, rowStride, from, to, firstValueRow, target.PvGroup);
            }
        }

        /// <summary>The value passes of <see cref="EmitValuePasses(IndentedTextWriter, CpuTarget, int, int, string, string, string)"/> for one register plan: <paramref name="pvGroup"/> output vectors a pass.</summary>
        private static void EmitValuePasses(IndentedTextWriter writer, CpuTarget target, int headDim, int rowStride, string from, string to, string firstValueRow, int pvGroup)
        {
            string v = target.Vector, vt = target.VectorType;
            int rows = target.TileRows, lanes = target.Lanes;
            int vectors = headDim / lanes;
            for (int group = 0; group < vectors; group += pvGroup)
            {
                int width = System.Math.Min(pvGroup, vectors - group);
                using (writer.Block(null))
                {
                    for (int t = 0; t < rows; t++)
                    {
                        for (int g = 0; g < width; g++)
                        {
                            writer.Line(vt + " output" + Invariant(t) + "_" + Invariant(g) + " = " + v + ".LoadUnsafe(ref accumulators, " + Invariant(t * headDim + (group + g) * lanes) + ") * rescale" + Invariant(t) + ";");
                        }
                    }

                    writer.Line("ref float valueRow = ref " + UnsafeType + ".Add(ref values, " + firstValueRow + ");");
                    using (writer.Block("for (nint k = " + from + "; k <= " + to + "; k++, valueRow = ref " + UnsafeType + ".Add(ref valueRow, valueStride))"))
                    {
                        for (int g = 0; g < width; g++)
                        {
                            writer.Line(vt + " value" + Invariant(g) + " = " + v + ".LoadUnsafe(ref valueRow, " + Invariant((group + g) * lanes) + ");");
                        }

                        for (int t = 0; t < rows; t++)
                        {
                            writer.Line(vt + " weight" + Invariant(t) + " = " + v + ".Create(" + UnsafeType + ".Add(ref probabilities, k + " + Invariant(t * rowStride) + "));");
                            for (int g = 0; g < width; g++)
                            {
                                string output = "output" + Invariant(t) + "_" + Invariant(g);
                                writer.Line(output + " = " + v + ".FusedMultiplyAdd(weight" + Invariant(t) + ", value" + Invariant(g) + ", " + output + ");");
                            }
                        }
                    }

                    for (int t = 0; t < rows; t++)
                    {
                        for (int g = 0; g < width; g++)
                        {
                            writer.Line(v + ".StoreUnsafe(output" + Invariant(t) + "_" + Invariant(g) + ", ref accumulators, " + Invariant(t * headDim + (group + g) * lanes) + ");");
                        }
                    }
                }
            }
        }

        /// <summary>
        /// A boundary tile's remaining keys, each row over its own range, so no row multiplies a value it cannot see, through
        /// TileValues (its accumulators in registers; in this method they lived on the stack).
        /// </summary>
        private static void EmitTileBoundaryValues(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            using (writer.Block(BlocksBoundaryKeys(target) ? "if (!full && !blockedBoundary)" : "if (!full)"))
            {
                writer.Line("// Boundary tile: the keys outside the common range, each added only to the rows that see it.");
                writer.Line("global::SparseAttention.Cpu.TileValues.AddBoundaryKeys(" + Invariant(target.Lanes) + ", rows, ref accumulators, ref probabilities, " + Invariant(target.KeyTile)
                    + ", ref " + UnsafeType + ".Add(ref values, (nint)keyStart * valueStride), valueStride, " + Invariant(headDim) + ", keyStart, firstKey, lastKey, firstQuery, queryStep, left, right, commonFrom, commonTo);");
            }
        }

        /// <summary>The fallback for machines without SIMD: the row schedule with plain loops over HeadDim.</summary>
        private static void EmitScalarKernel(IndentedTextWriter writer, int headDim)
        {
            string d = Invariant(headDim);
            writer.Line("/// <summary>Scalar row kernel, for machines without SIMD: the same online softmax, one float at a time.</summary>");
            using (writer.Block("internal readonly struct " + ScalarKernelName + " : global::SparseAttention.Cpu.IAttentionRowKernel"))
            {
                writer.Line("public static int HeadDim => " + d + ";");
                writer.Line("public static int ScratchLength => " + Invariant(RowKeyTile) + ";");
                writer.Line();
                writer.Line("public static void AccumulateRow<TScores>(ref float query, ref float keys, ref float values, global::System.ReadOnlySpan<global::SparseAttention.KeySegment> segments, in global::SparseAttention.Cpu.ScoreRow row, float scale, global::System.Span<float> scratch, ref float runningMax, ref float runningSum, global::System.Span<float> accumulator)");
                using (writer.Block(ScoresConstraint))
                {
                    writer.Line("global::System.Span<float> scaledQuery = stackalloc float[" + d + "];");
                    using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                    {
                        writer.Line("scaledQuery[d] = " + UnsafeType + ".Add(ref query, d) * scale;");
                    }

                    EmitMinusInfinityComment(writer);
                    writer.Line("bool sawMinusInfinity = false;");
                    using (writer.Block("for (int segmentIndex = 0; segmentIndex < segments.Length; segmentIndex++)"))
                    {
                        writer.Line("global::SparseAttention.KeySegment segment = segments[segmentIndex];");
                        using (writer.Block("for (int tileStart = 0; tileStart < segment.Count; tileStart += " + Invariant(RowKeyTile) + ")"))
                        {
                            writer.Line("int tileCount = " + MathType + ".Min(" + Invariant(RowKeyTile) + ", segment.Count - tileStart);");
                            writer.Line("int firstKey = segment.Start + tileStart * segment.Step;");
                            writer.Line("float tileMax = float.NegativeInfinity;");
                            writer.Line("int position = firstKey;");
                            using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
                            {
                                writer.Line("global::System.ReadOnlySpan<float> keyRow = " + MemoryMarshalType + ".CreateReadOnlySpan(ref " + UnsafeType + ".Add(ref keys, (nint)position * " + d + "), " + d + ");");
                                writer.Line("float score = 0f;");
                                using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                                {
                                    writer.Line("score += scaledQuery[d] * keyRow[d];");
                                }

                                writer.Line("scratch[k] = score;");
                                writer.Line("tileMax = " + MathFType + ".Max(tileMax, score);");
                                writer.Line("sawMinusInfinity |= global::SparseAttention.Cpu.VectorMath.Poisons<TScores>(score);");
                            }

                            EmitRowScoreModifiers(writer, MemoryMarshalType + ".GetReference(scratch)");
                            using (writer.Block("if (tileMax > runningMax)"))
                            {
                                writer.Line("float correction = global::SparseAttention.Cpu.VectorMath.Exp2(runningMax - tileMax);");
                                writer.Line("runningSum *= correction;");
                                using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                                {
                                    writer.Line("accumulator[d] *= correction;");
                                }

                                writer.Line("runningMax = tileMax;");
                            }

                            writer.Line("position = firstKey;");
                            using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
                            {
                                writer.Line("float weight = global::SparseAttention.Cpu.VectorMath.Exp2(scratch[k] - " + RowSoftmaxMax + ");");
                                writer.Line("runningSum += weight;");
                                writer.Line("global::System.ReadOnlySpan<float> valueRow = " + MemoryMarshalType + ".CreateReadOnlySpan(ref " + UnsafeType + ".Add(ref values, (nint)position * " + d + "), " + d + ");");
                                using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                                {
                                    writer.Line("accumulator[d] += weight * valueRow[d];");
                                }
                            }
                        }
                    }

                    EmitPoisonOnMinusInfinity(writer);
                }
            }
        }
    }
}
