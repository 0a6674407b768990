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

        /// <summary>The ILGPU overloads of <c>Forward</c>: device views, host spans on an accelerator, and an <c>AttentionDevice</c>.</summary>
        private static void EmitGpuPublicMembers(IndentedTextWriter writer, int headDim, Models.ScoresModel scores, string generatedCode, int gridAxes = 0)
        {
            // Softcap, ALiBi and learned sinks are arguments of the kernel shared by every declaration of this HeadDim; a mask
            // or score mod is the user's code, so such a declaration compiles its own copy of the kernel with the calls inlined.
            bool userCode = scores.CallsUserCode;
            string sinks = scores.LearnedSinks ? "global::System.ReadOnlySpan<float> sinkLogits, " : "";
            string sinkArgument = scores.LearnedSinks ? "sinkLogits, " : "";
            string sinkSpan = scores.LearnedSinks ? "sinkLogits" : "default";
            string Launch(string query, string key, string value, string output, string logSumExp = "default", string pattern = "Pattern") =>
                "Gpu.Launch(accelerator, " + pattern + ", " + query + ", " + key + ", " + value + ", " + output + ", shape, options.ResolveScale(HeadDim), Scores, options, " + sinkSpan + ", " + logSumExp + ");";
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

            if (gridAxes > 0)
            {
                writer.Line();
                writer.Line("/// <summary>Queues attention on <paramref name=\"accelerator\"/> on a grid of " + Invariant(gridAxes) + " axis length(s) whose product is shape.SeqLen (as the span overload with a grid).</summary>");
                writer.Line("/// <exception cref=\"global::System.ArgumentException\">A view's length does not match <paramref name=\"shape\"/>, it lives elsewhere, or the grid does not match.</exception>");
                writer.Line(generatedCode);
                using (writer.Block("public static void Forward(" + AcceleratorType + " accelerator, " + views + ", global::SparseAttention.GridShape grid, global::SparseAttention.AttentionOptions? options = null)"))
                {
                    writer.Line("options ??= global::SparseAttention.AttentionOptions.Default;");
                    writer.Line("global::SparseAttention.AttentionArguments.Validate(HeadDim, accelerator, query, key, value, output, shape);");
                    EmitSinkValidation(writer, scores, "shape.Heads");
                    writer.Line(Launch("query", "key", "value", "output", pattern: "Pattern.OnGrid(grid, shape.SeqLen)"));
                }
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
    }
}
