using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using SparseAttention;

namespace SparseAttention.Testing;

/// <summary>The shape of every generated <c>Forward(..., options)</c>, so tests can hold any kernel as a value.</summary>
public delegate void ForwardWithOptions(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options);

/// <summary>The shape of every generated ILGPU <c>Forward(accelerator, views..., options)</c>.</summary>
public delegate void ForwardOnAccelerator(Accelerator accelerator, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, AttentionOptions options);

/// <summary>The shape of every generated <c>Forward&lt;float&gt;(query, key, value, output, options)</c> over TensorSpans (kernels without learned sinks).</summary>
public delegate void ForwardOnTensors(System.Numerics.Tensors.ReadOnlyTensorSpan<float> query, System.Numerics.Tensors.ReadOnlyTensorSpan<float> key, System.Numerics.Tensors.ReadOnlyTensorSpan<float> value, System.Numerics.Tensors.TensorSpan<float> output, AttentionOptions? options);

/// <summary>The shape of every generated <c>CreateCache(kvHeads)</c>.</summary>
public delegate KvCache CreateCacheFor(int kvHeads);

/// <summary>The shape of every generated <c>Decode(query, cache, output, options)</c>.</summary>
public delegate void DecodeWithOptions(ReadOnlySpan<float> query, KvCache cache, Span<float> output, AttentionOptions options);

/// <summary>The shape of every generated <c>Prefill(query, key, value, output, shape, cache, options)</c>.</summary>
public delegate void PrefillWithOptions(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, KvCache cache, AttentionOptions options);

/// <summary>A generated kernel's streaming entry points.</summary>
public sealed record StreamingEntryPoints(CreateCacheFor CreateCache, DecodeWithOptions Decode, PrefillWithOptions Prefill);

/// <summary>A generated kernel with what a test needs to check it against the reference.</summary>
/// <remarks><see cref="Scores"/> are the kernel's score modifiers (softcap, ALiBi, score mod), which the reference applies too.</remarks>
public sealed record KernelUnderTest(string Name, int HeadDim, AttentionPattern Pattern, ForwardWithOptions Forward, ForwardOnAccelerator? OnAccelerator = null, StreamingEntryPoints? Streaming = null, ScoreModifiers? Scores = null)
{
    /// <summary>The fp32 TensorSpan overload, when the kernel has one without learned sinks.</summary>
    public ForwardOnTensors? OnTensors { get; init; }

    /// <summary>Whether the kernel has a compiled-in mask or score mod: user code the ILGPU kernel does not run yet.</summary>
    public bool HasUserCode => Pattern.Mask is not null || Scores is { ScoreMod: not null };

    /// <summary>Reads a generated kernel class: its HeadDim, Pattern, the span Forward and, when emitted, the ILGPU Forward.</summary>
    public static KernelUnderTest FromType(Type type)
    {
        MethodInfo[] forwards = type.GetMethods(BindingFlags.Public | BindingFlags.Static).Where(method => method.Name == "Forward").ToArray();
        MethodInfo onSpans = forwards.Single(method => Parameters(method).SequenceEqual(new[] { typeof(ReadOnlySpan<float>), typeof(ReadOnlySpan<float>), typeof(ReadOnlySpan<float>), typeof(Span<float>), typeof(AttentionShape), typeof(AttentionOptions) }));
        MethodInfo? onViews = forwards.SingleOrDefault(method => Parameters(method).SequenceEqual(new[] { typeof(Accelerator), typeof(ArrayView<float>), typeof(ArrayView<float>), typeof(ArrayView<float>), typeof(ArrayView<float>), typeof(AttentionShape), typeof(AttentionOptions) }));
        return new KernelUnderTest(
            type.Name,
            (int)type.GetField("HeadDim")!.GetValue(null)!,
            (AttentionPattern)type.GetProperty("Pattern")!.GetValue(null)!,
            onSpans.CreateDelegate<ForwardWithOptions>(),
            onViews?.CreateDelegate<ForwardOnAccelerator>(),
            StreamingOf(type),
            (ScoreModifiers?)type.GetProperty("Scores")?.GetValue(null))
        {
            OnTensors = forwards.SingleOrDefault(method => method.IsGenericMethodDefinition && method.GetParameters().Length == 5 && method.GetParameters()[0].ParameterType.Name.StartsWith("ReadOnlyTensorSpan", StringComparison.Ordinal))
                ?.MakeGenericMethod(typeof(float)).CreateDelegate<ForwardOnTensors>(),
        };
    }

    private static StreamingEntryPoints? StreamingOf(Type type)
    {
        MethodInfo? createCache = type.GetMethod("CreateCache", new[] { typeof(int) });
        MethodInfo? decode = type.GetMethod("Decode", new[] { typeof(ReadOnlySpan<float>), typeof(KvCache), typeof(Span<float>), typeof(AttentionOptions) });
        MethodInfo? prefill = type.GetMethod("Prefill", new[] { typeof(ReadOnlySpan<float>), typeof(ReadOnlySpan<float>), typeof(ReadOnlySpan<float>), typeof(Span<float>), typeof(AttentionShape), typeof(KvCache), typeof(AttentionOptions) });
        return createCache is null || decode is null || prefill is null
            ? null
            : new StreamingEntryPoints(createCache.CreateDelegate<CreateCacheFor>(), decode.CreateDelegate<DecodeWithOptions>(), prefill.CreateDelegate<PrefillWithOptions>());
    }

    private static IEnumerable<Type> Parameters(MethodInfo method) => method.GetParameters().Select(parameter => parameter.ParameterType);

    public override string ToString() => Name;
}

/// <summary>Random inputs and the comparison every kernel test makes.</summary>
public static class AttentionCheck
{
    /// <summary>
    /// Largest |kernel - reference| allowed for inputs in [-1.5, 1.5]. The kernel accumulates in float with
    /// a different summation order and a vector exp; the reference in double.
    /// </summary>
    public const double Tolerance = 1e-4;

    public static float[] RandomArray(Random random, int length, float range = 1.5f)
    {
        var values = new float[length];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2 - 1) * range);
        }

        return values;
    }

    public sealed record Inputs(float[] Query, float[] Key, float[] Value, AttentionShape Shape, int HeadDim);

    public static Inputs RandomInputs(Random random, AttentionShape shape, int headDim) => new(
        RandomArray(random, shape.Heads * shape.SeqLen * headDim),
        RandomArray(random, shape.KvHeads * shape.SeqLen * headDim),
        RandomArray(random, shape.KvHeads * shape.SeqLen * headDim),
        shape,
        headDim);

    public static float[] Reference(KernelUnderTest kernel, Inputs inputs, AttentionOptions? options = null)
    {
        var expected = new float[inputs.Query.Length];
        ReferenceAttention.Forward(kernel.Pattern, kernel.Scores ?? ScoreModifiers.None, inputs.Query, inputs.Key, inputs.Value, expected, inputs.Shape, options);
        return expected;
    }

    public static float[] Run(KernelUnderTest kernel, Inputs inputs, AttentionOptions options)
    {
        var actual = new float[inputs.Query.Length];
        kernel.Forward(inputs.Query, inputs.Key, inputs.Value, actual, inputs.Shape, options);
        return actual;
    }

    /// <summary>Runs the kernel's ILGPU form on <paramref name="accelerator"/>: inputs copied in, output read back.</summary>
    public static float[] RunOnAccelerator(KernelUnderTest kernel, Inputs inputs, Accelerator accelerator, AttentionOptions? options = null)
    {
        ForwardOnAccelerator forward = kernel.OnAccelerator ?? throw new InvalidOperationException($"{kernel.Name} has no ILGPU kernel.");
        using MemoryBuffer1D<float, Stride1D.Dense> query = accelerator.Allocate1D(inputs.Query);
        using MemoryBuffer1D<float, Stride1D.Dense> key = accelerator.Allocate1D(inputs.Key);
        using MemoryBuffer1D<float, Stride1D.Dense> value = accelerator.Allocate1D(inputs.Value);
        using MemoryBuffer1D<float, Stride1D.Dense> output = accelerator.Allocate1D<float>(inputs.Query.Length);
        // NaN in the output buffer proves every element is written.
        output.View.CopyFromCPU(Enumerable.Repeat(float.NaN, inputs.Query.Length).ToArray());
        forward(accelerator, query.View, key.View, value.View, output.View, inputs.Shape, options ?? AttentionOptions.Default);
        accelerator.Synchronize();
        return output.GetAsArray1D();
    }

    /// <summary>
    /// docs/design.md §2: keys a query cannot see have no influence, not even NaN or ±Inf stored in them. For each sample
    /// (head, row), every key and value outside the row's structure (a mask's hidden keys are visited, §4) is poisoned, <paramref name="run"/> computes the output,
    /// and that row must equal the reference on <paramref name="clean"/> inputs.
    /// </summary>
    public static void AssertInvisibleKeysHaveNoInfluence(KernelUnderTest kernel, Inputs clean, int[] heads, int[] rows, Func<Inputs, float[]> run, string context)
    {
        float[] expected = Reference(kernel, clean);
        float[] poisons = { float.NaN, float.PositiveInfinity, float.NegativeInfinity };
        AttentionShape shape = clean.Shape;
        int d = kernel.HeadDim;
        foreach (int head in heads)
        {
            foreach (int row in rows)
            {
                float[] key = (float[])clean.Key.Clone();
                float[] value = (float[])clean.Value.Clone();
                int kvHead = shape.KvHeadOf(head);
                for (int j = 0; j < shape.SeqLen; j++)
                {
                    if (!kernel.Pattern.InStructure(row, j, head, shape.SeqLen))
                    {
                        Array.Fill(key, poisons[j % 3], (kvHead * shape.SeqLen + j) * d, d);
                        Array.Fill(value, poisons[(j + 1) % 3], (kvHead * shape.SeqLen + j) * d, d);
                    }
                }

                float[] actual = run(clean with { Key = key, Value = value });
                int offset = (head * shape.SeqLen + row) * d;
                AssertClose(expected.AsSpan(offset, d).ToArray(), actual.AsSpan(offset, d).ToArray(), shape with { Heads = 1, KvHeads = 1, SeqLen = 1 }, d, $"{context} head {head} row {row} with poisoned invisible keys");
            }
        }
    }

    /// <summary>Asserts the two outputs agree within <see cref="Tolerance"/>, naming the first bad element.</summary>
    public static void AssertClose(float[] expected, float[] actual, AttentionShape shape, int headDim, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs((double)expected[i] - actual[i]);
            if (!(error <= Tolerance))
            {
                int head = i / (shape.SeqLen * headDim);
                int row = i / headDim % shape.SeqLen;
                Assert.Fail($"{context}: head {head}, row {row}, dim {i % headDim}: expected {expected[i]}, got {actual[i]} (|error| {error:E2} > {Tolerance:E0}).");
            }
        }
    }

    /// <summary>
    /// The NaN/Inf policy's comparison (docs/design.md): row by row, the reference's row is NaN in every element exactly
    /// when the kernel's is, and every other row is finite and agrees within <see cref="Tolerance"/>, relative for rows
    /// of large magnitude. Returns how many rows were NaN, so a caller can check its poison reached something.
    /// </summary>
    public static int AssertSameRowsOrNaN(float[] expected, float[] actual, AttentionShape shape, int headDim, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        int poisonedRows = 0;
        for (int start = 0; start < expected.Length; start += headDim)
        {
            int head = start / (shape.SeqLen * headDim), row = start / headDim % shape.SeqLen;
            ReadOnlySpan<float> want = expected.AsSpan(start, headDim), got = actual.AsSpan(start, headDim);
            bool wantNaN = AllNaN(want);
            if (wantNaN)
            {
                poisonedRows++;
                Assert.True(AllNaN(got), $"{context}: head {head}, row {row} must be NaN in every element (the reference's row is), but got [{string.Join(", ", got.ToArray().Take(4))}, ...].");
                continue;
            }

            for (int d = 0; d < headDim; d++)
            {
                double error = Math.Abs((double)want[d] - got[d]);
                if (!(error <= Tolerance * Math.Max(1.0, Math.Abs((double)want[d]))))
                {
                    Assert.Fail($"{context}: head {head}, row {row}, dim {d}: expected {want[d]}, got {got[d]} (the reference's row is finite).");
                }
            }
        }

        return poisonedRows;
    }

    private static bool AllNaN(ReadOnlySpan<float> row)
    {
        foreach (float element in row)
        {
            if (!float.IsNaN(element))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Random shape with the given sequence length: 1-4 KV heads, group size 1-3.</summary>
    /// <summary>
    /// A seed from <paramref name="text"/> that is the same in every process (string.GetHashCode is randomised per
    /// process), so a failing random input can be reproduced.
    /// </summary>
    public static int StableSeed(string text, int salt = 17) => text.Aggregate(salt, (hash, character) => hash * 31 + character) & 0xFFFF;

    public static AttentionShape RandomShape(Random random, int seqLen)
    {
        int kvHeads = random.Next(1, 4);
        return new AttentionShape(kvHeads * random.Next(1, 4), kvHeads, seqLen);
    }

    /// <summary>Every ISA a generated kernel has a path for.</summary>
    public static readonly KernelIsa[] AllIsas = { KernelIsa.Vector512, KernelIsa.Vector256, KernelIsa.Vector128, KernelIsa.Scalar };
}
