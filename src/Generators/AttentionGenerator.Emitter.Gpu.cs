using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators;

public sealed partial class AttentionGenerator
{
    internal static partial class Emitter
    {
        private const string ArrayViewType = "global::ILGPU.ArrayView<float>";
        private const string AcceleratorType = "global::ILGPU.Runtime.Accelerator";
        private const string GpuKernelName = "AttendOneQueryTile";

        /// <summary>
        /// Keys staged in shared memory per step. K and V tiles take 2 x GpuKeyTile x HeadDim floats: at most
        /// 32 KiB, inside the 48 KiB of static shared memory every CUDA device gives a group.
        /// </summary>
        internal static int GpuKeyTile(int headDim) => System.Math.Max(8, System.Math.Min(64, 4096 / headDim));

        /// <summary>The ILGPU overloads of <c>Forward</c>: device views, host spans on an accelerator, and an <c>AttentionDevice</c>.</summary>
        private static void EmitGpuPublicMembers(IndentedTextWriter writer, int headDim, Models.ScoresModel scores, string generatedCode)
        {
            // Softcap, ALiBi and learned sinks are arguments of the kernel shared by every declaration of this HeadDim; a mask
            // or score mod is the user's code, so such a declaration compiles its own copy of the kernel with the calls inlined.
            bool userCode = scores.CallsUserCode;
            string sinks = scores.LearnedSinks ? "global::System.ReadOnlySpan<float> sinkLogits, " : "";
            string sinkArgument = scores.LearnedSinks ? "sinkLogits, " : "";
            string sinkSpan = scores.LearnedSinks ? "sinkLogits" : "default";
            string Launch(string query, string key, string value, string output, string logSumExp = "default") =>
                "Gpu.Launch(accelerator, Pattern, " + query + ", " + key + ", " + value + ", " + output + ", shape, options.ResolveScale(HeadDim), Scores, options, " + sinkSpan + ", " + logSumExp + ");";
            if (!userCode)
            {
                // (A declaration with user code declares its own Gpu field with its kernel, below the public members.)
                writer.Line("/// <summary>The ILGPU kernel of HeadDim " + Invariant(headDim) + ", shared with every kernel of that HeadDim; compiled once per accelerator.</summary>");
                writer.Line("private static readonly global::SparseAttention.Gpu.GpuAttentionKernel Gpu = " + SharedClassName(headDim) + ".GpuKernel;");
                writer.Line();
            }

            string spans = "global::System.ReadOnlySpan<float> query, global::System.ReadOnlySpan<float> key, global::System.ReadOnlySpan<float> value, " + sinks + "global::System.Span<float> output, global::SparseAttention.AttentionShape shape";
            string views = ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + sinks + ArrayViewType + " output, global::SparseAttention.AttentionShape shape";
            string options = "global::SparseAttention.AttentionOptions options";

            writer.Line("/// <summary>");
            writer.Line("/// Queues attention on <paramref name=\"accelerator\"/>'s default stream and returns without waiting (call");
            writer.Line("/// <c>accelerator.Synchronize()</c> before reading <paramref name=\"output\"/>). Same layout as the span overload;");
            writer.Line("/// every view must be allocated on <paramref name=\"accelerator\"/>. The kernel is compiled on the first call per accelerator.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A view's length does not match <paramref name=\"shape\"/>, or it lives elsewhere.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(" + AcceleratorType + " accelerator, " + views + ")");
            writer.Line("    => Forward(accelerator, query, key, value, " + sinkArgument + "output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Queues attention on <paramref name=\"accelerator\"/> with explicit options (the scale, ALiBi's slopes; the rest are CPU settings).</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + views + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                EmitSinkValidation(writer, scores, "shape.Heads");
                writer.Line(Launch("query", "key", "value", "output"));
            }

            writer.Line();
            writer.Line("/// <summary>Queues attention on <paramref name=\"accelerator\"/> and writes each row's log-sum-exp to <paramref name=\"logSumExp\"/> ([Heads, SeqLen], on the accelerator).</summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A view's length does not match <paramref name=\"shape\"/>, or it lives elsewhere.</exception>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + sinks + ArrayViewType + " output, " + ArrayViewType + " logSumExp, global::SparseAttention.AttentionShape shape, " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                writer.Line("global::SparseAttention.AttentionArguments.ValidateLogSumExp(accelerator, logSumExp, query, key, value, output, shape);");
                EmitSinkValidation(writer, scores, "shape.Heads");
                writer.Line(Launch("query", "key", "value", "output", "logSumExp"));
            }

            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Queues attention over <see cref=\"global::System.Half\"/> or <see cref=\"global::SparseAttention.BFloat16\"/> views on <paramref name=\"accelerator\"/>");
            writer.Line("/// (layouts as the float views'): widened to fp32 on the device, computed in fp32, the output rounded back to the type.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A view's length does not match <paramref name=\"shape\"/>, it lives elsewhere, or T is not an element type attention takes.</exception>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward<T>(" + AcceleratorType + " accelerator, global::ILGPU.ArrayView<T> query, global::ILGPU.ArrayView<T> key, global::ILGPU.ArrayView<T> value, " + sinks + "global::ILGPU.ArrayView<T> output, global::SparseAttention.AttentionShape shape, global::SparseAttention.AttentionOptions? options = null) where T : unmanaged"))
            {
                writer.Line("options ??= global::SparseAttention.AttentionOptions.Default;");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                EmitSinkValidation(writer, scores, "shape.Heads");
                writer.Line("global::SparseAttention.Gpu.GpuStagedForward.Forward(Gpu, accelerator, Pattern, query, key, value, output, shape, options.ResolveScale(HeadDim), Scores, options, " + sinkSpan + ");");
            }

            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Queues attention over packed variable-length sequences on <paramref name=\"accelerator\"/>: query and output [Heads, totalRows, HeadDim],");
            writer.Line("/// key and value [KvHeads, totalRows, HeadDim] (shape.SeqLen = totalRows); sequence i is rows [sequenceStarts[i], sequenceStarts[i + 1]),");
            writer.Line("/// its own instance of the pattern. Each sequence is copied on the device into a call of its own.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\"><paramref name=\"sequenceStarts\"/> is not ascending from 0 to the total rows, or a view is wrong.</exception>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + views + ", global::System.ReadOnlySpan<int> sequenceStarts, global::SparseAttention.AttentionOptions? options = null)"))
            {
                writer.Line("options ??= global::SparseAttention.AttentionOptions.Default;");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                writer.Line("global::SparseAttention.Tensors.TensorAttention.ValidatePacked(shape, sequenceStarts);");
                EmitSinkValidation(writer, scores, "shape.Heads");
                writer.Line("global::SparseAttention.Gpu.GpuStagedForward.ForwardPacked(Gpu, accelerator, Pattern, HeadDim, query, key, value, output, shape, sequenceStarts, options.ResolveScale(HeadDim), Scores, options, " + sinkSpan + ");");
            }

            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Partial attention on <paramref name=\"accelerator\"/>, queued: the slice's queries against its keys at their absolute");
            writer.Line("/// positions, as the span overload with an <c>AttentionSlice</c> (query and output [Heads, QueryCount, HeadDim], key and value");
            writer.Line("/// [KvHeads, KeyCount, HeadDim], logSumExp [Heads, QueryCount]), every view on the accelerator" + (scores.LearnedSinks ? "; learned sinks are not applied (add the sink once, after merging)." : "."));
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A range lies outside the sequence, or a view's length does not match the slice, or it lives elsewhere.</exception>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + ArrayViewType + " output, " + ArrayViewType + " logSumExp, global::SparseAttention.AttentionSlice slice, " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, logSumExp, slice);");
                writer.Line("Gpu.Launch(accelerator, Pattern, query, key, value, output, slice, options.ResolveScale(HeadDim), Scores, options, default, logSumExp);");
            }

            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Computes attention on <paramref name=\"accelerator\"/> from host memory: copies the inputs to the device, runs,");
            writer.Line("/// waits and copies the output back. Allocates device buffers per call; keep tensors on the device and use the");
            writer.Line("/// <c>ArrayView</c> overload for repeated calls.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A span's length does not match <paramref name=\"shape\"/>.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(" + AcceleratorType + " accelerator, " + spans + ")");
            writer.Line("    => Forward(accelerator, query, key, value, " + sinkArgument + "output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"accelerator\"/> from host memory with explicit options.</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + spans + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(accelerator);");
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, query, key, value, output, shape);");
                EmitSinkValidation(writer, scores, "shape.Heads");
                writer.Line("using global::SparseAttention.Gpu.HostTransfer transfer = global::SparseAttention.Gpu.HostTransfer.Upload(accelerator, query, key, value, output.Length);");
                writer.Line(Launch("transfer.Query", "transfer.Key", "transfer.Value", "transfer.Output"));
                writer.Line("transfer.Download(output);");
            }

            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"device\"/>: its GPU through ILGPU, or the SIMD CPU kernels.</summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A span's length does not match <paramref name=\"shape\"/>.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(global::SparseAttention.AttentionDevice device, " + spans + ")");
            writer.Line("    => Forward(device, query, key, value, " + sinkArgument + "output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"device\"/> with explicit <paramref name=\"options\"/>.</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(global::SparseAttention.AttentionDevice device, " + spans + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(device);");
                using (writer.Block("if (device.Accelerator is { } accelerator)"))
                {
                    writer.Line("Forward(accelerator, query, key, value, " + sinkArgument + "output, shape, options);");
                }

                using (writer.Block("else"))
                {
                    writer.Line("Forward(query, key, value, " + sinkArgument + "output, shape, options);");
                }
            }
        }

        /// <summary>
        /// The ILGPU kernel of one HeadDim: FlashAttention-2's schedule with one group per (head, query tile) and one thread per
        /// query row. The group walks the key tiles its entry of the pattern's tile table lists (<c>GpuTileTable</c>, built
        /// on the host from the components' tile classes), staging each in shared memory; a partial tile's pairs are tested
        /// against the table's bit mask. The walk is the same for every thread of a group, so every thread reaches every barrier.
        /// </summary>
        /// <param name="userCode">The declaration whose mask and score mod the kernel calls (its own copy), or null for the shared kernel.</param>
        private static void EmitGpuKernel(IndentedTextWriter writer, int headDim, Models.ScoresModel? userCode = null)
        {
            int keyTile = GpuKeyTile(headDim);
            writer.Line("// ---- GPU (ILGPU) ---------------------------------------------------------------------------------------------");
            writer.Line();
            writer.Line("/// <summary>Keys per shared-memory tile: K and V tiles take 2 x " + Invariant(keyTile) + " x HeadDim floats (" + Invariant(2 * keyTile * headDim * 4 / 1024) + " KiB).</summary>");
            writer.Line("private const int GpuKeyTile = " + Invariant(keyTile) + ";");
            writer.Line();
            if (userCode is null)
            {
                writer.Line("/// <summary>The kernel, compiled once per accelerator on first use.</summary>");
                writer.Line("internal static readonly global::SparseAttention.Gpu.GpuAttentionKernel GpuKernel = new(" + GpuKernelName + ", GpuKeyTile);");
            }
            else
            {
                writer.Line("/// <summary>This declaration's own kernel, with its mask or score mod compiled in; compiled once per accelerator on first use.</summary>");
                writer.Line("private static readonly global::SparseAttention.Gpu.GpuAttentionKernel Gpu = new(" + GpuKernelName + ", GpuKeyTile, runsUserCode: true);");
            }

            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Grid (query tiles, heads), one thread per query row. The query row and its output accumulator live in local");
            writer.Line("/// memory; the running max and sum give the online softmax, in base 2 (log2(e) is folded into the score scale).");
            writer.Line("/// </summary>");
            writer.Line("/// perHead holds ALiBi's slopes (base 2) then the learned sink logits, one per query head, when the arguments say so;");
            writer.Line("/// logSumExp ([Heads, SeqLen]) is written when they ask for it.");
            using (writer.Block("private static void " + GpuKernelName + "(" + ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + ArrayViewType + " output, global::ILGPU.ArrayView<int> tiles, " + ArrayViewType + " perHead, " + ArrayViewType + " logSumExp, global::SparseAttention.Gpu.GpuAttentionArguments arguments)"))
            {
                EmitGpuRowSetup(writer, headDim);
                using (writer.Block("for (int entryIndex = 0; entryIndex < entryCount; entryIndex++)"))
                {
                    EmitGpuStageTile(writer);
                    EmitGpuTileOnlineSoftmax(writer, userCode);
                }

                EmitGpuWriteRow(writer);
            }
        }

        /// <summary>The GPU thread's setup: its row and head, shared K/V tiles, its scaled query row and the row state.</summary>
        private static void EmitGpuRowSetup(IndentedTextWriter writer, int headDim)
        {
            writer.Line("const int HeadDim = " + Invariant(headDim) + ";");
            writer.Line("// The views hold QueryRows query rows and KeyRows key rows per head: the whole sequence, or a slice of it whose");
            writer.Line("// first query and key sit at positions QueryStart and KeyStart (the pattern and the modifiers see positions).");
            writer.Line("int queryRows = arguments.QueryRows, keyRows = arguments.KeyRows;");
            writer.Line("int head = global::ILGPU.Grid.IdxY;");
            writer.Line("int queryStart = global::ILGPU.Grid.IdxX * global::ILGPU.Group.DimX;");
            writer.Line("int row = queryStart + global::ILGPU.Group.IdxX;");
            writer.Line("int position = arguments.QueryStart + row;");
            writer.Line("// Threads past the last row load tiles and reach every barrier like the others; they only skip the arithmetic.");
            writer.Line("bool active = row < queryRows;");
            writer.Line("long queryOffset = ((long)head * queryRows + (active ? row : queryStart)) * HeadDim;");
            writer.Line("long kvOffset = (long)(head / arguments.QueryHeadsPerKvHead) * keyRows * HeadDim;");
            writer.Line();
            writer.Line(ArrayViewType + " keyTile = global::ILGPU.SharedMemory.Allocate<float>(GpuKeyTile * HeadDim);");
            writer.Line(ArrayViewType + " valueTile = global::ILGPU.SharedMemory.Allocate<float>(GpuKeyTile * HeadDim);");
            writer.Line(ArrayViewType + " queryRow = global::ILGPU.LocalMemory.Allocate<float>(HeadDim);");
            writer.Line(ArrayViewType + " accumulator = global::ILGPU.LocalMemory.Allocate<float>(HeadDim);");
            writer.Line(ArrayViewType + " scores = global::ILGPU.LocalMemory.Allocate<float>(GpuKeyTile);");
            using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
            {
                writer.Line("queryRow[d] = query[queryOffset + d] * arguments.ScoreScale;");
                writer.Line("accumulator[d] = 0f;");
            }

            writer.Line();
            writer.Line("float runningMax = float.NegativeInfinity;");
            writer.Line("float runningSum = 0f;");
            writer.Line("// NaN/Inf policy: a visible score that is not finite (NaN or ±inf in q or k, or an overflowing q·k), or a value");
            writer.Line("// holding NaN or ±inf, makes the whole row NaN, as on the CPU paths and in the reference.");
            writer.Line("bool poisoned = false;");
            writer.Line("// This group's entries in the tile table: (key tile start, class, mask offset) for every tile with a visible pair.");
            writer.Line("int header = global::SparseAttention.Gpu.GpuTileTable.HeaderOf(head, global::ILGPU.Grid.IdxX, tiles[0]);");
            writer.Line("int firstEntry = tiles[header];");
            writer.Line("int entryCount = tiles[header + 1];");
            writer.Line("int maskWords = global::SparseAttention.Gpu.GpuTileTable.MaskWordsPerRow(GpuKeyTile);");
        }

        /// <summary>One tile-table entry: its key tile's class and mask, and K and V staged in shared memory between barriers.</summary>
        private static void EmitGpuStageTile(IndentedTextWriter writer)
        {
            writer.Line("int entry = firstEntry + entryIndex * global::SparseAttention.Gpu.GpuTileTable.EntryInts;");
            writer.Line("int keyStart = tiles[entry];");
            writer.Line("bool full = tiles[entry + 1] == (int)global::SparseAttention.TileClass.Full;");
            writer.Line("int rowMask = tiles[entry + 2] + global::ILGPU.Group.IdxX * maskWords;");
            writer.Line("int keyEnd = " + MathType + ".Min(keyRows, keyStart + GpuKeyTile);");
            writer.Line();
            writer.Line("// Stage K and V: wait until every thread is done with the previous tile, copy, wait until the copy is whole.");
            writer.Line("// Rows past the end repeat the last key (always a valid address); no thread ever reads them.");
            writer.Line("global::ILGPU.Group.Barrier();");
            using (writer.Block("for (int index = global::ILGPU.Group.IdxX; index < GpuKeyTile * HeadDim; index += global::ILGPU.Group.DimX)"))
            {
                writer.Line("int keyRow = " + MathType + ".Min(keyStart + index / HeadDim, keyRows - 1);");
                writer.Line("long source = kvOffset + (long)keyRow * HeadDim + index % HeadDim;");
                writer.Line("keyTile[index] = key[source];");
                writer.Line("valueTile[index] = value[source];");
            }

            writer.Line();
            writer.Line("global::ILGPU.Group.Barrier();");
            writer.Line();
        }

        /// <summary>The online softmax of the thread's row over the staged tile, masked unless the tile is full, with the NaN/Inf policy.</summary>
        private static void EmitGpuTileOnlineSoftmax(IndentedTextWriter writer, Models.ScoresModel? userCode)
        {
            using (writer.Block("if (active)"))
            {
                writer.Line("int keyCount = keyEnd - keyStart;");
                writer.Line("float tileMax = float.NegativeInfinity;");
                using (writer.Block("for (int k = 0; k < keyCount; k++)"))
                {
                    writer.Line("float score = float.NegativeInfinity;");
                    using (writer.Block("if (full || ((tiles[rowMask + (k >> 5)] >> (k & 31)) & 1) != 0)"))
                    {
                        writer.Line("score = 0f;");
                        writer.Line("int keyRow = k * HeadDim;");
                        using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                        {
                            writer.Line("score += queryRow[d] * keyTile[keyRow + d];");
                        }

                        using (writer.Block("if (!(score > float.NegativeInfinity && score < float.PositiveInfinity))"))
                        {
                            writer.Line("poisoned = true;");
                            writer.Line("score = float.NegativeInfinity; // kept out of the softmax; the row is NaN anyway");
                        }

                        writer.Line("// Softcap, then ALiBi (docs/design.md §2.4), on the raw score once it passed the NaN/Inf test.");
                        using (writer.Block("else"))
                        {
                            using (writer.Block("if (arguments.SoftcapBase2 != 0f)"))
                            {
                                writer.Line("score = global::SparseAttention.Gpu.GpuMath.Softcap(score, arguments.SoftcapBase2);");
                            }

                            using (writer.Block("if (arguments.Alibi != 0)"))
                            {
                                writer.Line("int distance = position - (arguments.KeyStart + keyStart + k);");
                                writer.Line("score -= perHead[head] * (distance < 0 ? -distance : distance);");
                            }

                            if (userCode is not null)
                            {
                                EmitGpuUserCode(writer, userCode);
                            }
                        }
                    }

                    writer.Line("scores[k] = score;");
                    writer.Line("tileMax = " + MathType + ".Max(tileMax, score);");
                }

                writer.Line();
                writer.Line("// A tile with no visible key leaves the row as it was; an invisible key's value is never read.");
                using (writer.Block("if (tileMax > float.NegativeInfinity)"))
                {
                    writer.Line("float newMax = " + MathType + ".Max(runningMax, tileMax);");
                    writer.Line("float correction = global::SparseAttention.Gpu.GpuMath.Exp2(runningMax - newMax);");
                    writer.Line("runningSum *= correction;");
                    using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                    {
                        writer.Line("accumulator[d] *= correction;");
                    }

                    using (writer.Block("for (int k = 0; k < keyCount; k++)"))
                    using (writer.Block("if (scores[k] > float.NegativeInfinity)"))
                    {
                        writer.Line("float weight = global::SparseAttention.Gpu.GpuMath.Exp2(scores[k] - newMax);");
                        writer.Line("runningSum += weight;");
                        writer.Line("int valueRow = k * HeadDim;");
                        using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                        {
                            writer.Line("accumulator[d] += weight * valueTile[valueRow + d];");
                        }
                    }

                    writer.Line("runningMax = newMax;");
                }
            }
        }

        /// <summary>
        /// The declaration's mask, then its score mod, on one pair the structure makes visible (as on the CPU: the mask can
        /// only hide pairs, and a score mod's NaN or +inf makes the row NaN, its -inf hides the key).
        /// </summary>
        private static void EmitGpuUserCode(IndentedTextWriter writer, Models.ScoresModel userCode)
        {
            writer.Line();
            writer.Line("// The declaration's " + (userCode.MaskMethod is not null && userCode.ScoreModMethod is not null ? "mask, then its score mod" : userCode.MaskMethod is not null ? "mask" : "score mod") + " (docs/design.md §2.4), at the pair's absolute positions.");
            writer.Line("int keyPosition = arguments.KeyStart + keyStart + k;");
            if (userCode.MaskMethod is { } mask)
            {
                using (writer.Block("if (!" + mask + "(position, keyPosition, head))"))
                {
                    writer.Line("score = float.NegativeInfinity;");
                }
            }

            if (userCode.ScoreModMethod is { } mod)
            {
                if (userCode.MaskMethod is null)
                {
                    EmitScoreMod(mod);
                }
                else
                {
                    using (writer.Block("else"))
                    {
                        EmitScoreMod(mod);
                    }
                }
            }

            writer.Line("// A pair the structure visits is part of the NaN/Inf policy even when hidden here (design §4): its value still counts.");
            using (writer.Block("if (score == float.NegativeInfinity)"))
            using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
            {
                writer.Line("float hidden = valueTile[k * HeadDim + d];");
                writer.Line("poisoned |= !(hidden - hidden == 0f);");
            }

            void EmitScoreMod(string method)
            {
                writer.Line("// The score mod sees natural units, as its author wrote it.");
                writer.Line("score = " + method + "(score * global::SparseAttention.Cpu.VectorMath.Ln2, position, keyPosition, head) * global::SparseAttention.Cpu.VectorMath.Log2E;");
                using (writer.Block("if (!(score < float.PositiveInfinity))"))
                {
                    writer.Line("poisoned = true; // NaN or +inf from the score mod");
                    writer.Line("score = float.NegativeInfinity;");
                }
            }
        }

        /// <summary>The normalised row, zeros for a row that saw no key, NaN for a poisoned one.</summary>
        private static void EmitGpuWriteRow(IndentedTextWriter writer)
        {
            writer.Line();
            using (writer.Block("if (active)"))
            {
                writer.Line("// A row that saw no key is written as zeros. A non-finite value shows as NaN or ±inf in the accumulator");
                writer.Line("// (0 x inf is NaN too), and x - x is 0 only for a finite x.");
                writer.Line("// A learned sink joins the denominator of a row that saw a key, with no value.");
                writer.Line("float denominator = runningSum;");
                using (writer.Block("if (arguments.Sinks != 0 && runningSum > 0f)"))
                {
                    writer.Line("denominator += global::SparseAttention.Gpu.GpuMath.Exp2(perHead[arguments.Heads + head] * 1.44269504088896341f - runningMax);");
                }

                writer.Line("float normalizer = denominator > 0f ? 1f / denominator : 0f;");
                using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                {
                    writer.Line("poisoned |= !(accumulator[d] - accumulator[d] == 0f);");
                }

                writer.Line();
                using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                {
                    writer.Line("output[queryOffset + d] = poisoned ? float.NaN : accumulator[d] * normalizer;");
                }

                using (writer.Block("if (arguments.WriteLogSumExp != 0)"))
                {
                    writer.Line("// ln(denominator) with its max: (max + log2(sum)) ln 2; -inf for a row that saw no key.");
                    writer.Line("logSumExp[(long)head * queryRows + row] = poisoned ? float.NaN : runningSum > 0f ? (runningMax + global::SparseAttention.Gpu.GpuMath.Log2(denominator)) * 0.693147180559945309f : float.NegativeInfinity;");
                }
            }
        }
    }
}
