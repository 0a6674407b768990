using SparseAttention.Generators.Helpers;

namespace SparseAttention.Generators;

public sealed partial class AttentionGenerator
{
    internal static partial class Emitter
    {
        /// <summary>Keys scored per online-softmax step: the max and the rescale are paid once per tile.</summary>
        public const int KeyTile = 64;

        private const string ScalarKernelName = "ScalarRowKernel";

        /// <summary>A vector instruction set a row kernel is emitted for.</summary>
        internal sealed record CpuTarget(string Name, int Lanes)
        {
            public string KernelName => Name + "RowKernel";

            public string VectorType => "global::System.Runtime.Intrinsics." + Name + "<float>";

            public string Vector => "global::System.Runtime.Intrinsics." + Name;

            public string Describe(int headDim) => Name + " (" + Invariant(headDim / Lanes) + " x " + Invariant(Lanes) + " floats)";

            /// <summary>Whether a row of <paramref name="headDim"/> floats is a whole number of these vectors.</summary>
            public bool Fits(int headDim) => headDim % Lanes == 0;
        }

        /// <summary>
        /// Widest first. HeadDim is a multiple of 8, so the 4- and 8-lane targets always fit; when the 16-lane
        /// one does not (HeadDim = 8, 24, ...) no Vector512 kernel is emitted and Vector512 runs the Vector256 one.
        /// </summary>
        internal static readonly CpuTarget[] CpuTargets =
        {
            new("Vector512", 16),
            new("Vector256", 8),
            new("Vector128", 4),
        };

        /// <summary>
        /// One row kernel for one ISA: the query row and the output accumulator live in named vector locals
        /// (the HeadDim loop unrolled), keys are scored a tile at a time, probabilities computed with the
        /// vector exp, and values accumulated by broadcast + FMA.
        /// </summary>
        private static void EmitRowKernel(IndentedTextWriter writer, CpuTarget target, int headDim)
        {
            int vectors = headDim / target.Lanes;
            string v = target.Vector;
            string vt = target.VectorType;
            writer.Line("/// <summary>Row kernel for " + target.Name + ": HeadDim = " + Invariant(headDim) + " is " + Invariant(vectors) + " x " + Invariant(target.Lanes) + " floats.</summary>");
            using (writer.Block("private readonly struct " + target.KernelName + " : global::SparseAttention.Cpu.IAttentionRowKernel"))
            {
                writer.Line("public static int HeadDim => " + Invariant(headDim) + ";");
                writer.Line();
                writer.Line("public static int ScratchLength => " + Invariant(KeyTile) + ";");
                writer.Line();
                writer.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]");
                using (writer.Block("public static void ComputeRow(ref float query, ref float keys, ref float values, ref float output, global::System.ReadOnlySpan<global::SparseAttention.KeySegment> segments, float scale, global::System.Span<float> scratch)"))
                {
                    writer.Line("// The query row, scaled once, stays in registers for the whole row.");
                    for (int i = 0; i < vectors; i++)
                    {
                        writer.Line(vt + " query" + Invariant(i) + " = " + v + ".LoadUnsafe(ref query, " + Invariant(i * target.Lanes) + ") * scale;");
                    }

                    writer.Line();
                    writer.Line("// Output accumulators: the sum of p * value over the keys seen so far, rescaled when the running max grows.");
                    for (int i = 0; i < vectors; i++)
                    {
                        writer.Line(vt + " output" + Invariant(i) + " = " + vt + ".Zero;");
                    }

                    writer.Line("float runningMax = float.NegativeInfinity;");
                    writer.Line("float runningSum = 0f;");
                    writer.Line("ref float scores = ref global::System.Runtime.InteropServices.MemoryMarshal.GetReference(scratch);");
                    using (writer.Block("foreach (global::SparseAttention.KeySegment segment in segments)"))
                    using (writer.Block("for (int tileStart = 0; tileStart < segment.Count; tileStart += " + Invariant(KeyTile) + ")"))
                    {
                        writer.Line("int tileCount = global::System.Math.Min(" + Invariant(KeyTile) + ", segment.Count - tileStart);");
                        writer.Line("int firstKey = segment.Start + tileStart * segment.Step;");
                        writer.Line();
                        writer.Line("// Scores: one unrolled dot product per key.");
                        writer.Line("float tileMax = float.NegativeInfinity;");
                        writer.Line("int position = firstKey;");
                        using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
                        {
                            writer.Line("ref float keyRow = ref global::System.Runtime.CompilerServices.Unsafe.Add(ref keys, (nint)position * " + Invariant(headDim) + ");");
                            writer.Line(vt + " dot = query0 * " + v + ".LoadUnsafe(ref keyRow, 0);");
                            for (int i = 1; i < vectors; i++)
                            {
                                writer.Line("dot = " + v + ".FusedMultiplyAdd(query" + Invariant(i) + ", " + v + ".LoadUnsafe(ref keyRow, " + Invariant(i * target.Lanes) + "), dot);");
                            }

                            writer.Line("float score = " + v + ".Sum(dot);");
                            writer.Line("global::System.Runtime.CompilerServices.Unsafe.Add(ref scores, k) = score;");
                            writer.Line("tileMax = global::System.MathF.Max(tileMax, score);");
                        }

                        writer.Line();
                        writer.Line("// Online softmax: a larger max shrinks everything accumulated so far by exp(oldMax - newMax).");
                        using (writer.Block("if (tileMax > runningMax)"))
                        {
                            writer.Line("float correction = global::System.MathF.Exp(runningMax - tileMax);");
                            writer.Line("runningSum *= correction;");
                            for (int i = 0; i < vectors; i++)
                            {
                                writer.Line("output" + Invariant(i) + " *= correction;");
                            }

                            writer.Line("runningMax = tileMax;");
                        }

                        writer.Line();
                        writer.Line("// Probabilities p = exp(score - max) a vector at a time; lanes past the tile hold -inf and give 0.");
                        using (writer.Block("for (int k = tileCount; k % " + Invariant(target.Lanes) + " != 0; k++)"))
                        {
                            writer.Line("global::System.Runtime.CompilerServices.Unsafe.Add(ref scores, k) = float.NegativeInfinity;");
                        }

                        writer.Line(vt + " maxVector = " + v + ".Create(runningMax);");
                        writer.Line(vt + " sumVector = " + vt + ".Zero;");
                        using (writer.Block("for (int k = 0; k < tileCount; k += " + Invariant(target.Lanes) + ")"))
                        {
                            writer.Line(vt + " probability = " + v + ".Exp(" + v + ".LoadUnsafe(ref scores, (nuint)k) - maxVector);");
                            writer.Line(v + ".StoreUnsafe(probability, ref scores, (nuint)k);");
                            writer.Line("sumVector += probability;");
                        }

                        writer.Line("runningSum += " + v + ".Sum(sumVector);");
                        writer.Line();
                        writer.Line("// Values: broadcast each probability and FMA it into the accumulators.");
                        writer.Line("position = firstKey;");
                        using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
                        {
                            writer.Line("ref float valueRow = ref global::System.Runtime.CompilerServices.Unsafe.Add(ref values, (nint)position * " + Invariant(headDim) + ");");
                            writer.Line(vt + " weight = " + v + ".Create(global::System.Runtime.CompilerServices.Unsafe.Add(ref scores, k));");
                            for (int i = 0; i < vectors; i++)
                            {
                                writer.Line("output" + Invariant(i) + " = " + v + ".FusedMultiplyAdd(weight, " + v + ".LoadUnsafe(ref valueRow, " + Invariant(i * target.Lanes) + "), output" + Invariant(i) + ");");
                            }
                        }
                    }

                    writer.Line();
                    writer.Line("// Normalise. A row that saw no key has runningSum = 0 and is written as zeros.");
                    writer.Line("float inverseSum = runningSum > 0f ? 1f / runningSum : 0f;");
                    for (int i = 0; i < vectors; i++)
                    {
                        writer.Line(v + ".StoreUnsafe(output" + Invariant(i) + " * inverseSum, ref output, " + Invariant(i * target.Lanes) + ");");
                    }
                }
            }
        }

        /// <summary>The fallback for machines without SIMD: the same schedule with plain loops over HeadDim.</summary>
        private static void EmitScalarRowKernel(IndentedTextWriter writer, int headDim)
        {
            string d = Invariant(headDim);
            writer.Line("/// <summary>Scalar row kernel, for machines without SIMD: the same tiles and online softmax, one float at a time.</summary>");
            using (writer.Block("private readonly struct " + ScalarKernelName + " : global::SparseAttention.Cpu.IAttentionRowKernel"))
            {
                writer.Line("public static int HeadDim => " + d + ";");
                writer.Line();
                writer.Line("public static int ScratchLength => " + Invariant(KeyTile) + ";");
                writer.Line();
                using (writer.Block("public static void ComputeRow(ref float query, ref float keys, ref float values, ref float output, global::System.ReadOnlySpan<global::SparseAttention.KeySegment> segments, float scale, global::System.Span<float> scratch)"))
                {
                    writer.Line("global::System.Span<float> scaledQuery = stackalloc float[" + d + "];");
                    writer.Line("global::System.Span<float> accumulator = stackalloc float[" + d + "];");
                    using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                    {
                        writer.Line("scaledQuery[d] = global::System.Runtime.CompilerServices.Unsafe.Add(ref query, d) * scale;");
                        writer.Line("accumulator[d] = 0f;");
                    }

                    writer.Line("float runningMax = float.NegativeInfinity;");
                    writer.Line("float runningSum = 0f;");
                    using (writer.Block("foreach (global::SparseAttention.KeySegment segment in segments)"))
                    using (writer.Block("for (int tileStart = 0; tileStart < segment.Count; tileStart += " + Invariant(KeyTile) + ")"))
                    {
                        writer.Line("int tileCount = global::System.Math.Min(" + Invariant(KeyTile) + ", segment.Count - tileStart);");
                        writer.Line("int firstKey = segment.Start + tileStart * segment.Step;");
                        writer.Line("float tileMax = float.NegativeInfinity;");
                        writer.Line("int position = firstKey;");
                        using (writer.Block("for (int k = 0; k < tileCount; k++, position += segment.Step)"))
                        {
                            writer.Line("global::System.ReadOnlySpan<float> keyRow = global::System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(ref global::System.Runtime.CompilerServices.Unsafe.Add(ref keys, (nint)position * " + d + "), " + d + ");");
                            writer.Line("float score = 0f;");
                            using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                            {
                                writer.Line("score += scaledQuery[d] * keyRow[d];");
                            }

                            writer.Line("scratch[k] = score;");
                            writer.Line("tileMax = global::System.MathF.Max(tileMax, score);");
                        }

                        using (writer.Block("if (tileMax > runningMax)"))
                        {
                            writer.Line("float correction = global::System.MathF.Exp(runningMax - tileMax);");
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
                            writer.Line("float weight = global::System.MathF.Exp(scratch[k] - runningMax);");
                            writer.Line("runningSum += weight;");
                            writer.Line("global::System.ReadOnlySpan<float> valueRow = global::System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(ref global::System.Runtime.CompilerServices.Unsafe.Add(ref values, (nint)position * " + d + "), " + d + ");");
                            using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                            {
                                writer.Line("accumulator[d] += weight * valueRow[d];");
                            }
                        }
                    }

                    writer.Line("float inverseSum = runningSum > 0f ? 1f / runningSum : 0f;");
                    using (writer.Block("for (int d = 0; d < " + d + "; d++)"))
                    {
                        writer.Line("global::System.Runtime.CompilerServices.Unsafe.Add(ref output, d) = accumulator[d] * inverseSum;");
                    }
                }
            }
        }
    }
}
