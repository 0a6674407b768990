using SparseAttention.Testing;

namespace SparseAttention.Runtime.Tests;

/// <summary>The CPU runner's promises beyond the numbers: no allocation once warm, and safe concurrent callers.</summary>
public class CpuSchedulingTests
{
    public static TheoryData<string> KernelsWithEveryPath() => new()
    {
        nameof(DenseCausal), nameof(WindowWiderThanTile), nameof(LongformerLike), nameof(StridedOverDilatedWindow), nameof(StridedOnly),
    };

    /// <summary>
    /// Job objects, packed keys and per-thread scratch are reused, so a warm call allocates nothing on the
    /// calling thread (the worker threads reuse theirs too; they are not visible to this counter).
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelsWithEveryPath))]
    public void WarmCallAllocatesNothingOnTheCallingThread(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var shape = new AttentionShape(Heads: 8, KvHeads: 4, SeqLen: 700);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(1), shape, kernel.HeadDim);
        var output = new float[inputs.Query.Length];
        var options = new AttentionOptions();

        // Warm both ways a call can run: on the pool, and on this thread alone (what happens when another test holds
        // the pool), so the measured calls find this thread's scratch grown whichever way they go.
        kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options with { MaxDegreeOfParallelism = 1 });
        for (int warmUp = 0; warmUp < 3; warmUp++)
        {
            kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int call = 0; call < 5; call++)
        {
            kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>Callers on several threads at once: one gets the worker pool, the others run on their own thread.</summary>
    [Fact]
    public void ConcurrentCallersEachGetTheirOwnCorrectResult()
    {
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(LongformerLike));
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 160);
        AttentionCheck.Inputs[] inputs = Enumerable.Range(0, 6).Select(seed => AttentionCheck.RandomInputs(new Random(seed), shape, kernel.HeadDim)).ToArray();
        float[][] expected = inputs.Select(input => AttentionCheck.Reference(kernel, input)).ToArray();
        float[][] actual = inputs.Select(input => new float[input.Query.Length]).ToArray();
        Parallel.For(0, inputs.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 6 }, index =>
        {
            int which = index % inputs.Length;
            var output = new float[inputs[which].Query.Length];
            kernel.Forward(inputs[which].Query, inputs[which].Key, inputs[which].Value, output, shape, AttentionOptions.Default);
            actual[which] = output;
            AttentionCheck.AssertClose(expected[which], output, shape, kernel.HeadDim, $"caller {index}");
        });
    }
}
