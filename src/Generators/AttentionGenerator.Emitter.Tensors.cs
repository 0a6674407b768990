using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators;

public sealed partial class AttentionGenerator
{
    internal static partial class Emitter
    {
        private const string TensorAttentionType = "global::SparseAttention.Tensors.TensorAttention";

        /// <summary>
        /// The overloads .NET inference code calls with its own tensors: <c>Forward&lt;T&gt;</c> over TensorSpans (and Tensors)
        /// of any strides in float, Half or BFloat16, and <c>Forward</c> over packed variable-length sequences. Both go
        /// through the runtime's <c>TensorAttention</c> to this declaration's fp32 span kernel.
        /// </summary>
        private static void EmitTensorMembers(IndentedTextWriter writer, int headDim, Models.ScoresModel scores, string generatedCode)
        {
            string sinks = scores.LearnedSinks ? "global::System.ReadOnlySpan<float> sinkLogits, " : "";
            string sinkSpan = scores.LearnedSinks ? "sinkLogits" : "default";
            string options = "global::SparseAttention.AttentionOptions? options = null";
            writer.Line("/// <summary>");
            writer.Line("/// This kernel's fp32 call over spans laid out as <paramref name=\"layout\"/> says (strided tensor views are read in place), as the");
            writer.Line("/// tensor and packed-sequence overloads reach it after checking the tensors.");
            writer.Line("/// </summary>");
            using (writer.Block("private static void ForwardLaidOut(global::System.ReadOnlySpan<float> query, global::System.ReadOnlySpan<float> key, global::System.ReadOnlySpan<float> value, global::System.ReadOnlySpan<float> sinkLogits, global::System.Span<float> output, global::SparseAttention.AttentionShape shape, global::SparseAttention.Cpu.AttentionLayout layout, global::SparseAttention.AttentionOptions options)"))
            {
                EmitSinkValidation(writer, scores, "shape.Heads");
                EmitCpuForwardSwitch(writer, headDim, scores, (scores.LearnedSinks ? ", sinkLogits" : ", default") + ", default, layout");
            }

            writer.Line();
            writer.Line("private static readonly " + TensorAttentionType + ".SpanForward SpanKernel = ForwardLaidOut;");
            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Attention over tensors: query and output <c>[Batch, Heads, SeqLen, HeadDim]</c> (or <c>[Heads, SeqLen, HeadDim]</c>), key and");
            writer.Line("/// value with KvHeads, in float, <see cref=\"global::System.Half\"/> or <see cref=\"global::SparseAttention.BFloat16\"/>, accumulated in fp32.");
            writer.Line("/// Any strides whose last dimension is contiguous: pass a <c>[B, S, H, D]</c> projection output as a view permuted to");
            writer.Line("/// <c>[B, H, S, D]</c>, without copying it. Shapes come from the tensors.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A tensor's rank, dimension or stride is wrong (the message names the tensor and the dimension), or output shares memory.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward<T>(global::System.Numerics.Tensors.ReadOnlyTensorSpan<T> query, global::System.Numerics.Tensors.ReadOnlyTensorSpan<T> key, global::System.Numerics.Tensors.ReadOnlyTensorSpan<T> value, " + sinks + "global::System.Numerics.Tensors.TensorSpan<T> output, " + options + ")");
            writer.Line("    where T : unmanaged");
            writer.Line("    => " + TensorAttentionType + ".Forward(HeadDim, SpanKernel, query, key, value, " + sinkSpan + ", output, options ?? global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>As the TensorSpan overload, for <see cref=\"global::System.Numerics.Tensors.Tensor{T}\"/>s.</summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\">A tensor's rank, dimension or stride is wrong, or output shares memory.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward<T>(global::System.Numerics.Tensors.Tensor<T> query, global::System.Numerics.Tensors.Tensor<T> key, global::System.Numerics.Tensors.Tensor<T> value, " + sinks + "global::System.Numerics.Tensors.Tensor<T> output, " + options + ")");
            writer.Line("    where T : unmanaged");
            writer.Line("    => " + TensorAttentionType + ".Forward(HeadDim, SpanKernel, query.AsReadOnlyTensorSpan(), key.AsReadOnlyTensorSpan(), value.AsReadOnlyTensorSpan(), " + sinkSpan + ", output.AsTensorSpan(), options ?? global::SparseAttention.AttentionOptions.Default);");
            writer.Line();
            writer.Line("/// <summary>");
            writer.Line("/// Attention over variable-length sequences packed one after another (FlashAttention's <c>cu_seqlens</c>): query and output");
            writer.Line("/// <c>[Heads, totalRows, HeadDim]</c>, key and value <c>[KvHeads, totalRows, HeadDim]</c>, <c>shape.SeqLen</c> = totalRows. Sequence i");
            writer.Line("/// is rows <c>[sequenceStarts[i], sequenceStarts[i + 1])</c>, its own pattern instance with positions from 0; no query sees a");
            writer.Line("/// key of another sequence.");
            writer.Line("/// </summary>");
            writer.Line("/// <exception cref=\"global::System.ArgumentException\"><paramref name=\"sequenceStarts\"/> is not ascending from 0 to the total rows, or a span's length is wrong.</exception>");
            writer.Line(generatedCode);
            writer.Line("public static void Forward(global::System.ReadOnlySpan<float> query, global::System.ReadOnlySpan<float> key, global::System.ReadOnlySpan<float> value, " + sinks + "global::System.Span<float> output, global::SparseAttention.AttentionShape shape, global::System.ReadOnlySpan<int> sequenceStarts, " + options + ")");
            writer.Line("    => " + TensorAttentionType + ".ForwardPacked(HeadDim, SpanKernel, query, key, value, " + sinkSpan + ", output, shape, sequenceStarts, options ?? global::SparseAttention.AttentionOptions.Default);");
        }
    }
}
