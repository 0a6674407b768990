using ILGPU;
using ILGPU.Runtime;
using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// The checks every accelerator runs on every declared kernel: the ILGPU CPU accelerator in the ordinary suite,
/// CUDA in the <c>Gpu</c> category. Each compares the generated ILGPU kernel with <see cref="ReferenceAttention"/>.
/// </summary>
internal static class AcceleratorSuite
{
    /// <summary>
    /// n = 1, inside one 32-key tile, exactly half a 64-row query block and just past it, past one key tile, past one
    /// query block, past two, and larger.
    /// </summary>
    public static readonly int[] SequenceLengths = { 1, 7, 32, 33, 47, 65, 130, 203 };

    /// <summary>
    /// On ILGPU's CPU accelerator every barrier and shuffle synchronises 128 operating-system threads, so a kernel runs
    /// two of <see cref="SequenceLengths"/> there (each length is run by eight of the 32 kernels) and all of them on a GPU.
    /// </summary>
    public static IEnumerable<int> SequenceLengthsFor(Accelerator accelerator, string name)
    {
        if (accelerator.AcceleratorType != AcceleratorType.CPU)
        {
            return SequenceLengths;
        }

        int index = Array.FindIndex(DeclaredKernels.All, kernel => kernel.Name == name);
        return new[] { 0, 4 }.Select(step => SequenceLengths[(index + step) % SequenceLengths.Length]);
    }

    public static void MatchesReferenceOnRandomInputs(Accelerator accelerator, string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(AttentionCheck.StableSeed(name + accelerator.AcceleratorType));
        foreach (int seqLen in SequenceLengthsFor(accelerator, name))
        {
            AttentionShape shape = AttentionCheck.RandomShape(random, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            float[] expected = AttentionCheck.Reference(kernel, inputs);
            float[] actual = AttentionCheck.RunOnAccelerator(kernel, inputs, accelerator);
            AttentionCheck.AssertClose(expected, actual, shape, kernel.HeadDim, $"{name} on {accelerator.AcceleratorType} {shape}");
        }
    }

    public static void ExplicitScaleMatchesReference(Accelerator accelerator, string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(11);
        var shape = new AttentionShape(Heads: 2, KvHeads: 1, SeqLen: 45);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
        var options = new AttentionOptions { Scale = 0.05f };
        AttentionCheck.AssertClose(AttentionCheck.Reference(kernel, inputs, options), AttentionCheck.RunOnAccelerator(kernel, inputs, accelerator, options), shape, kernel.HeadDim, name + " scale 0.05");
    }

    /// <summary>
    /// docs/design.md §2 on the device: every key and value a sample row cannot see holds NaN or ±∞, and the row must
    /// still equal the reference on clean inputs. Shared-memory tiles hold those values; only the mask keeps them out.
    /// </summary>
    public static void PoisonInInvisibleKeysDoesNotReachTheRow(Accelerator accelerator, string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        AttentionCheck.Inputs clean = AttentionCheck.RandomInputs(new Random(3), new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 90), kernel.HeadDim);
        // One forward per (head, row); the CPU accelerator runs two of them (a row of each query block, see SequenceLengthsFor).
        bool simulated = accelerator.AcceleratorType == AcceleratorType.CPU;
        AttentionCheck.AssertInvisibleKeysHaveNoInfluence(kernel, clean, heads: simulated ? new[] { 3 } : new[] { 0, 3 }, rows: simulated ? new[] { 17, 89 } : new[] { 0, 17, 45, 89 },
            inputs => AttentionCheck.RunOnAccelerator(kernel, inputs, accelerator), $"{name} on {accelerator.AcceleratorType}");
    }

    /// <summary>The host-span convenience and the <see cref="AttentionDevice"/> overload give what the view overload gives.</summary>
    public static void SpanOverloadsMatchReference(AttentionDevice device)
    {
        Accelerator accelerator = device.Accelerator!;
        var random = new Random(5);
        var shape = new AttentionShape(Heads: 6, KvHeads: 2, SeqLen: 77);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, LongformerLike.HeadDim);
        float[] expected = AttentionCheck.Reference(DeclaredKernels.Get(nameof(LongformerLike)), inputs);

        float[] viaAccelerator = new float[expected.Length];
        LongformerLike.Forward(accelerator, inputs.Query, inputs.Key, inputs.Value, viaAccelerator, shape);
        AttentionCheck.AssertClose(expected, viaAccelerator, shape, LongformerLike.HeadDim, "Forward(accelerator, spans)");

        float[] viaDevice = new float[expected.Length];
        LongformerLike.Forward(device, inputs.Query, inputs.Key, inputs.Value, viaDevice, shape);
        AttentionCheck.AssertClose(expected, viaDevice, shape, LongformerLike.HeadDim, "Forward(device, spans)");
    }

    /// <summary>
    /// Views that are windows of larger buffers (offsets, shared allocations) are read and written at their own
    /// elements only: the guard bands around the output keep their values.
    /// </summary>
    public static void ViewsIntoLargerBuffersTouchOnlyTheirElements(Accelerator accelerator)
    {
        var random = new Random(9);
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 50);
        int d = CausalWindowWithSinks.HeadDim;
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, d);
        float[] expected = AttentionCheck.Reference(DeclaredKernels.Get(nameof(CausalWindowWithSinks)), inputs);

        const int Guard = 37;
        float[] host = Enumerable.Repeat(-7f, Guard).Concat(inputs.Query).Concat(inputs.Key).Concat(inputs.Value).Concat(new float[inputs.Query.Length]).Concat(Enumerable.Repeat(-7f, Guard)).ToArray();
        using MemoryBuffer1D<float, Stride1D.Dense> buffer = accelerator.Allocate1D(host);
        ArrayView<float> all = buffer.View;
        long at = Guard;
        ArrayView<float> query = all.SubView(at, inputs.Query.Length);
        ArrayView<float> key = all.SubView(at += inputs.Query.Length, inputs.Key.Length);
        ArrayView<float> value = all.SubView(at += inputs.Key.Length, inputs.Value.Length);
        ArrayView<float> output = all.SubView(at += inputs.Value.Length, inputs.Query.Length);
        CausalWindowWithSinks.Forward(accelerator, query, key, value, output, shape);
        accelerator.Synchronize();

        float[] result = buffer.GetAsArray1D();
        AttentionCheck.AssertClose(expected, result.AsSpan((int)(at), expected.Length).ToArray(), shape, d, "output view");
        Assert.Equal(host.AsSpan(0, (int)at).ToArray(), result.AsSpan(0, (int)at).ToArray());
        Assert.All(result.AsSpan(result.Length - Guard).ToArray(), element => Assert.Equal(-7f, element));
    }
}
