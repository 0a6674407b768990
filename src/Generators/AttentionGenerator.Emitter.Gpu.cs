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
        private const string GpuKernelName = "GpuKernel";

        /// <summary>Up to this many global tokens are tested as one expression; more go through a loop.</summary>
        private const int InlineGlobalTokenLimit = 8;

        /// <summary>
        /// Keys staged in shared memory per step. K and V tiles take 2 x GpuKeyTile x HeadDim floats: at most
        /// 32 KiB, inside the 48 KiB of static shared memory every CUDA device gives a group.
        /// </summary>
        internal static int GpuKeyTile(int headDim) => System.Math.Max(8, System.Math.Min(64, 4096 / headDim));

        /// <summary>The ILGPU overloads of <c>Forward</c>: device views, host spans on an accelerator, and an <c>AttentionDevice</c>.</summary>
        private static void EmitGpuPublicMembers(IndentedTextWriter writer, string generatedCode)
        {
            string spans = "global::System.ReadOnlySpan<float> query, global::System.ReadOnlySpan<float> key, global::System.ReadOnlySpan<float> value, global::System.Span<float> output, global::SparseAttention.AttentionShape shape";
            string views = ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + ArrayViewType + " output, global::SparseAttention.AttentionShape shape";
            string options = "global::SparseAttention.AttentionOptions options";

            writer.Line("/// <summary>");
            writer.Line("/// Queues attention on <paramref name=\"accelerator\"/>'s default stream and returns without waiting (call");
            writer.Line("/// <c>accelerator.Synchronize()</c> before reading <paramref name=\"output\"/>). Same layout as the span overload;");
            writer.Line("/// every view must be allocated on <paramref name=\"accelerator\"/>. The kernel is compiled on the first call per accelerator.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A view's length does not match <paramref name=\"shape\"/>, or it lives elsewhere.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(" + AcceleratorType + " accelerator, " + views + ")");
            writer.Line("    => Forward(accelerator, query, key, value, output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Queues attention on <paramref name=\"accelerator\"/> with an explicit scale (the other options are CPU settings).</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + views + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                writer.Line("Gpu.Launch(accelerator, query, key, value, output, shape, options.ResolveScale(HeadDim));");
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
            writer.Line("    => Forward(accelerator, query, key, value, output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"accelerator\"/> from host memory with an explicit scale.</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + spans + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(accelerator);");
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(options);");
                writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, query, key, value, output, shape);");
                writer.Line("using global::SparseAttention.Gpu.HostTransfer transfer = global::SparseAttention.Gpu.HostTransfer.Upload(accelerator, query, key, value, output.Length);");
                writer.Line("Gpu.Launch(accelerator, transfer.Query, transfer.Key, transfer.Value, transfer.Output, shape, options.ResolveScale(HeadDim));");
                writer.Line("transfer.Download(output);");
            }

            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"device\"/>: its GPU through ILGPU, or the SIMD CPU kernels.</summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A span's length does not match <paramref name=\"shape\"/>.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(global::SparseAttention.AttentionDevice device, " + spans + ")");
            writer.Line("    => Forward(device, query, key, value, output, shape, global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>Computes attention on <paramref name=\"device\"/> with explicit <paramref name=\"options\"/>.</summary>");
            writer.Line(generatedCode);
            using (writer.Block("public static void Forward(global::SparseAttention.AttentionDevice device, " + spans + ", " + options + ")"))
            {
                writer.Line("global::System.ArgumentNullException.ThrowIfNull(device);");
                using (writer.Block("if (device.Accelerator is { } accelerator)"))
                {
                    writer.Line("Forward(accelerator, query, key, value, output, shape, options);");
                }

                using (writer.Block("else"))
                {
                    writer.Line("Forward(query, key, value, output, shape, options);");
                }
            }
        }

        /// <summary>
        /// The ILGPU kernel: FlashAttention-2's schedule with one group per (head, query tile) and one thread per query
        /// row. The group walks key tiles, staging each in shared memory; the walk and each tile's class (skip, masked,
        /// full) come from the pattern's constants, so they are the same for every thread of a group and every thread
        /// reaches every barrier.
        /// </summary>
        private static void EmitGpuKernel(IndentedTextWriter writer, int headDim, AttentionPattern pattern)
        {
            int keyTile = GpuKeyTile(headDim);
            int[] globals = pattern.GlobalTokens.ToArray();

            writer.Line("// ---- GPU (ILGPU) ---------------------------------------------------------------------------------------------");
            writer.Line();
            writer.Line("/// <summary>Keys per shared-memory tile: K and V tiles take 2 x " + Invariant(keyTile) + " x HeadDim floats (" + Invariant(2 * keyTile * headDim * 4 / 1024) + " KiB).</summary>");
            writer.Line("private const int GpuKeyTile = " + Invariant(keyTile) + ";");
            writer.Line();
            writer.Line("private const int GpuSkipTile = 0;");
            writer.Line("private const int GpuMaskedTile = 1;");
            writer.Line("private const int GpuFullTile = 2;");
            writer.Line();
            writer.Line("/// <summary>The kernel, compiled once per accelerator on first use.</summary>");
            writer.Line("private static readonly global::SparseAttention.Gpu.GpuAttentionKernel Gpu = new(" + GpuKernelName + ");");
            writer.Line();
            EmitGpuKernelBody(writer, globals.Length);
            writer.Line();
            EmitGpuKeyRange(writer, pattern);
            writer.Line();
            EmitGpuClassifyTile(writer, pattern);
            writer.Line();
            EmitGpuIsVisible(writer, pattern);
            if (pattern.HasWindow)
            {
                writer.Line();
                EmitGpuDilation(writer, pattern);
            }

            if (globals.Length > 0)
            {
                writer.Line();
                EmitGpuGlobalTokens(writer, globals);
            }
        }

        private static void EmitGpuKernelBody(IndentedTextWriter writer, int globalCount)
        {
            writer.Line("/// <summary>");
            writer.Line("/// Grid (query tiles, heads), one thread per query row. The query row and its output accumulator live in local");
            writer.Line("/// memory; the running max and sum give the online softmax, in base 2 (log2(e) is folded into the score scale).");
            writer.Line("/// </summary>");
            using (writer.Block("private static void " + GpuKernelName + "(" + ArrayViewType + " query, " + ArrayViewType + " key, " + ArrayViewType + " value, " + ArrayViewType + " output, global::SparseAttention.Gpu.GpuAttentionArguments arguments)"))
            {
                writer.Line("int seqLen = arguments.SeqLen;");
                writer.Line("int head = global::ILGPU.Grid.IdxY;");
                writer.Line("int queryStart = global::ILGPU.Grid.IdxX * global::ILGPU.Group.DimX;");
                writer.Line("int queryEnd = " + MathType + ".Min(seqLen, queryStart + global::ILGPU.Group.DimX);");
                writer.Line("int row = queryStart + global::ILGPU.Group.IdxX;");
                writer.Line("// Threads past the last row load tiles and reach every barrier like the others; they only skip the arithmetic.");
                writer.Line("bool active = row < seqLen;");
                writer.Line("long queryOffset = ((long)head * seqLen + (active ? row : queryStart)) * HeadDim;");
                writer.Line("long kvOffset = (long)(head / arguments.QueryHeadsPerKvHead) * seqLen * HeadDim;");
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
                writer.Line("int rangeStart = GpuRangeStart(head, queryStart, queryEnd);");
                writer.Line("int rangeEnd = GpuRangeEnd(head, queryStart, queryEnd, seqLen);");
                writer.Line("int rangeTiles = rangeEnd > rangeStart ? (rangeEnd - rangeStart + GpuKeyTile - 1) / GpuKeyTile : 0;");
                if (globalCount > 0)
                {
                    writer.Line("// The key range's tiles, then the tiles of global columns the range did not cover.");
                    writer.Line("for (int step = 0; step < rangeTiles + GpuGlobalTokenCount; step++)");
                }
                else
                {
                    writer.Line("for (int step = 0; step < rangeTiles; step++)");
                }

                using (writer.Block())
                {
                    writer.Line("// Everything up to the barriers depends only on the group's head and query tile: all threads agree.");
                    writer.Line("int keyStart = rangeStart + step * GpuKeyTile;");
                    if (globalCount > 0)
                    {
                        using (writer.Block("if (step >= rangeTiles)"))
                        {
                            writer.Line("int index = step - rangeTiles;");
                            writer.Line("int token = GpuGlobalToken(index);");
                            writer.Line("keyStart = token / GpuKeyTile * GpuKeyTile;");
                            writer.Line("bool coveredByRange = keyStart >= rangeStart && keyStart < rangeEnd;");
                            writer.Line("bool sameTileAsPrevious = index > 0 && GpuGlobalToken(index - 1) / GpuKeyTile * GpuKeyTile == keyStart;");
                            using (writer.Block("if (token >= seqLen || coveredByRange || sameTileAsPrevious)"))
                            {
                                writer.Line("continue;");
                            }
                        }

                        writer.Line();
                    }

                    writer.Line("int keyEnd = " + MathType + ".Min(seqLen, keyStart + GpuKeyTile);");
                    writer.Line("int tileKind = GpuClassifyTile(head, queryStart, queryEnd, keyStart, keyEnd);");
                    using (writer.Block("if (tileKind == GpuSkipTile)"))
                    {
                        writer.Line("continue;");
                    }

                    writer.Line();
                    writer.Line("// Stage K and V: wait until every thread is done with the previous tile, copy, wait until the copy is whole.");
                    writer.Line("// Rows past the end repeat the last key (always a valid address); no thread ever reads them.");
                    writer.Line("global::ILGPU.Group.Barrier();");
                    using (writer.Block("for (int index = global::ILGPU.Group.IdxX; index < GpuKeyTile * HeadDim; index += global::ILGPU.Group.DimX)"))
                    {
                        writer.Line("int keyPosition = " + MathType + ".Min(keyStart + index / HeadDim, seqLen - 1);");
                        writer.Line("long source = kvOffset + (long)keyPosition * HeadDim + index % HeadDim;");
                        writer.Line("keyTile[index] = key[source];");
                        writer.Line("valueTile[index] = value[source];");
                    }

                    writer.Line();
                    writer.Line("global::ILGPU.Group.Barrier();");
                    writer.Line();
                    using (writer.Block("if (active)"))
                    {
                        writer.Line("int keyCount = keyEnd - keyStart;");
                        writer.Line("float tileMax = float.NegativeInfinity;");
                        using (writer.Block("for (int k = 0; k < keyCount; k++)"))
                        {
                            writer.Line("float score = float.NegativeInfinity;");
                            using (writer.Block("if (tileKind == GpuFullTile || GpuIsVisible(row, keyStart + k, head))"))
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

                writer.Line();
                using (writer.Block("if (active)"))
                {
                    writer.Line("// A row that saw no key is written as zeros. A non-finite value shows as NaN or ±inf in the accumulator");
                    writer.Line("// (0 x inf is NaN too), and x - x is 0 only for a finite x.");
                    writer.Line("float normalizer = runningSum > 0f ? 1f / runningSum : 0f;");
                    using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                    {
                        writer.Line("poisoned |= !(accumulator[d] - accumulator[d] == 0f);");
                    }

                    writer.Line();
                    using (writer.Block("for (int d = 0; d < HeadDim; d++)"))
                    {
                        writer.Line("output[queryOffset + d] = poisoned ? float.NaN : accumulator[d] * normalizer;");
                    }
                }
            }
        }

        /// <summary>
        /// The contiguous key range a query tile walks: the whole (causal) row for dense and strided patterns and for
        /// tiles holding a global row, else the window's reach. Global columns outside it are visited separately.
        /// </summary>
        private static void EmitGpuKeyRange(IndentedTextWriter writer, AttentionPattern pattern)
        {
            bool wholeRow = pattern.IsDense || pattern.Stride > 0;
            bool hasGlobals = pattern.GlobalTokens.Count > 0;
            string wholeRowEnd = pattern.Causal ? "queryEnd" : "seqLen";

            writer.Line("/// <summary>First key of the tile's key range, rounded down to a whole key tile.</summary>");
            using (writer.Block("private static int GpuRangeStart(int head, int queryStart, int queryEnd)"))
            {
                if (wholeRow)
                {
                    writer.Line("return 0;");
                }
                else
                {
                    if (hasGlobals)
                    {
                        using (writer.Block("if (GpuHasGlobalToken(queryStart, queryEnd))"))
                        {
                            writer.Line("return 0; // a global row sees every key");
                        }
                    }

                    if (pattern.HasWindow)
                    {
                        writer.Line("long reachBack = " + Invariant(pattern.WindowLeft) + "L * GpuDilation(head);");
                        writer.Line("long first = queryStart - reachBack;");
                        writer.Line("return first <= 0 ? 0 : (int)(first / GpuKeyTile * GpuKeyTile);");
                    }
                    else
                    {
                        writer.Line("return 0; // only global columns, visited after the range");
                    }
                }
            }

            writer.Line();
            writer.Line("/// <summary>One past the last key of the tile's key range.</summary>");
            using (writer.Block("private static int GpuRangeEnd(int head, int queryStart, int queryEnd, int seqLen)"))
            {
                if (wholeRow)
                {
                    writer.Line("return " + wholeRowEnd + ";");
                }
                else
                {
                    if (hasGlobals)
                    {
                        using (writer.Block("if (GpuHasGlobalToken(queryStart, queryEnd))"))
                        {
                            writer.Line("return " + wholeRowEnd + ";");
                        }
                    }

                    if (!pattern.HasWindow)
                    {
                        writer.Line("return 0;");
                    }
                    else if (pattern.Causal)
                    {
                        writer.Line("return queryEnd; // causal: no key after the tile's last query");
                    }
                    else
                    {
                        writer.Line("long reachForward = " + Invariant(pattern.WindowRight) + "L * GpuDilation(head);");
                        writer.Line("return (int)" + MathType + ".Min(seqLen, queryEnd + reachForward);");
                    }
                }
            }
        }

        /// <summary>
        /// FlexAttention's block mask, computed from constants: over a tile's pairs the difference key - query takes
        /// every value in one range, and each component asks whether a difference it accepts falls in that range.
        /// </summary>
        private static void EmitGpuClassifyTile(IndentedTextWriter writer, AttentionPattern pattern)
        {
            writer.Line("/// <summary>");
            writer.Line("/// Whether the tile of queries [queryStart, queryEnd) x keys [keyStart, keyEnd) has no visible pair (skip), every");
            writer.Line("/// pair visible (full: no mask test), or some (masked). The same answer for every thread of a group.");
            writer.Line("/// </summary>");
            using (writer.Block("private static int GpuClassifyTile(int head, int queryStart, int queryEnd, int keyStart, int keyEnd)"))
            {
                writer.Line("// Over the tile's pairs, key - query takes every value in [lowest, highest].");
                writer.Line("long lowest = (long)keyStart - (queryEnd - 1);");
                writer.Line("long highest = (long)(keyEnd - 1) - queryStart;");
                if (pattern.Causal)
                {
                    using (writer.Block("if (lowest > 0)"))
                    {
                        writer.Line("return GpuSkipTile; // every key after every query");
                    }

                    writer.Line("bool allCausal = highest <= 0;");
                    writer.Line("highest = " + MathType + ".Min(highest, 0L); // only pairs with key <= query count");
                }

                if (pattern.IsDense)
                {
                    writer.Line("return " + (pattern.Causal ? "allCausal ? GpuFullTile : GpuMaskedTile" : "GpuFullTile") + ";");
                    return;
                }

                if (pattern.HasWindow)
                {
                    writer.Line("long dilation = GpuDilation(head);");
                    writer.Line("long reachBack = " + Invariant(pattern.WindowLeft) + "L * dilation;");
                    writer.Line("long reachForward = " + Invariant(pattern.WindowRight) + "L * dilation;");
                    using (writer.Block("if (" + (pattern.Causal ? "allCausal && " : "") + "dilation == 1 && lowest >= -reachBack && highest <= reachForward)"))
                    {
                        writer.Line("return GpuFullTile;");
                    }

                    using (writer.Block("if (global::SparseAttention.Gpu.GpuMath.RangeHoldsMultiple(" + MathType + ".Max(lowest, -reachBack), " + MathType + ".Min(highest, reachForward), dilation))"))
                    {
                        writer.Line("return GpuMaskedTile; // the window");
                    }
                }

                if (pattern.Stride > 0)
                {
                    using (writer.Block("if (global::SparseAttention.Gpu.GpuMath.RangeHoldsMultiple(-highest, -lowest, " + Invariant(pattern.Stride) + "))"))
                    {
                        writer.Line("return GpuMaskedTile; // the stride");
                    }
                }

                if (pattern.GlobalTokens.Count > 0)
                {
                    string rowsFrom = pattern.Causal ? MathType + ".Max(queryStart, keyStart)" : "queryStart";
                    string columnsTo = pattern.Causal ? MathType + ".Min(keyEnd, queryEnd)" : "keyEnd";
                    using (writer.Block("if (GpuHasGlobalToken(" + rowsFrom + ", queryEnd) || GpuHasGlobalToken(keyStart, " + columnsTo + "))"))
                    {
                        writer.Line("return GpuMaskedTile; // a global row or column");
                    }
                }

                writer.Line("return GpuSkipTile;");
            }
        }

        /// <summary>docs/design.md §2's visibility rule with the pattern's constants in place, for masked tiles.</summary>
        private static void EmitGpuIsVisible(IndentedTextWriter writer, AttentionPattern pattern)
        {
            writer.Line("/// <summary>Whether query <paramref name=\"query\"/> sees key <paramref name=\"key\"/> in head <paramref name=\"head\"/>.</summary>");
            using (writer.Block("private static bool GpuIsVisible(int query, int key, int head)"))
            {
                if (pattern.Causal)
                {
                    using (writer.Block("if (key > query)"))
                    {
                        writer.Line("return false;");
                    }
                }

                if (pattern.IsDense)
                {
                    writer.Line("return true;");
                    return;
                }

                if (pattern.GlobalTokens.Count > 0)
                {
                    using (writer.Block("if (GpuIsGlobalToken(query) || GpuIsGlobalToken(key))"))
                    {
                        writer.Line("return true;");
                    }
                }

                if (pattern.HasWindow)
                {
                    writer.Line("long offset = (long)key - query;");
                    writer.Line("long dilation = GpuDilation(head);");
                    using (writer.Block("if (offset % dilation == 0 && offset >= -" + Invariant(pattern.WindowLeft) + "L * dilation && offset <= " + Invariant(pattern.WindowRight) + "L * dilation)"))
                    {
                        writer.Line("return true;");
                    }
                }

                if (pattern.Stride > 0)
                {
                    writer.Line("return ((long)query - key) % " + Invariant(pattern.Stride) + " == 0;");
                }
                else
                {
                    writer.Line("return false;");
                }
            }
        }

        private static void EmitGpuDilation(IndentedTextWriter writer, AttentionPattern pattern)
        {
            IReadOnlyList<int> dilations = pattern.Dilations;
            writer.Line("/// <summary>The window's dilation in head <paramref name=\"head\"/>.</summary>");
            using (writer.Block("private static int GpuDilation(int head)"))
            {
                if (dilations.Count <= 1)
                {
                    writer.Line("return " + Invariant(dilations.Count == 0 ? 1 : dilations[0]) + ";");
                    return;
                }

                writer.Line("// Per-head dilations repeat every " + Invariant(dilations.Count) + " heads.");
                using (writer.Block("switch (head % " + Invariant(dilations.Count) + ")"))
                {
                    for (int i = 0; i < dilations.Count - 1; i++)
                    {
                        writer.Line("case " + Invariant(i) + ": return " + Invariant(dilations[i]) + ";");
                    }

                    writer.Line("default: return " + Invariant(dilations[dilations.Count - 1]) + ";");
                }
            }
        }

        private static void EmitGpuGlobalTokens(IndentedTextWriter writer, int[] globals)
        {
            writer.Line("/// <summary>Global token positions, ascending and distinct.</summary>");
            writer.Line("private const int GpuGlobalTokenCount = " + Invariant(globals.Length) + ";");
            writer.Line();
            writer.Line("/// <summary>The <paramref name=\"index\"/>-th global token position.</summary>");
            using (writer.Block("private static int GpuGlobalToken(int index)"))
            using (writer.Block("switch (index)"))
            {
                for (int i = 0; i < globals.Length - 1; i++)
                {
                    writer.Line("case " + Invariant(i) + ": return " + Invariant(globals[i]) + ";");
                }

                writer.Line("default: return " + Invariant(globals[globals.Length - 1]) + ";");
            }

            writer.Line();
            writer.Line("/// <summary>Whether <paramref name=\"position\"/> is a global token.</summary>");
            if (globals.Length <= InlineGlobalTokenLimit)
            {
                writer.Line("private static bool GpuIsGlobalToken(int position) => " + string.Join(" || ", globals.Select(token => "position == " + Invariant(token))) + ";");
            }
            else
            {
                writer.Line("private static bool GpuIsGlobalToken(int position) => GpuHasGlobalToken(position, position + 1);");
            }

            writer.Line();
            writer.Line("/// <summary>Whether a global token lies in [<paramref name=\"start\"/>, <paramref name=\"end\"/>).</summary>");
            if (globals.Length <= InlineGlobalTokenLimit)
            {
                writer.Line("private static bool GpuHasGlobalToken(int start, int end) => " + string.Join(" || ", globals.Select(token => "(start <= " + Invariant(token) + " && " + Invariant(token) + " < end)")) + ";");
                return;
            }

            using (writer.Block("private static bool GpuHasGlobalToken(int start, int end)"))
            {
                using (writer.Block("for (int index = 0; index < GpuGlobalTokenCount; index++)"))
                {
                    writer.Line("int token = GpuGlobalToken(index);");
                    using (writer.Block("if (token >= start && token < end)"))
                    {
                        writer.Line("return true;");
                    }
                }

                writer.Line("return false;");
            }
        }
    }
}
