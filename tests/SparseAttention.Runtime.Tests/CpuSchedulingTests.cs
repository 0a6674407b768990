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

        Assert.Equal(0, AllocationCheck.FewestBytesOverBatches(() =>
        {
            for (int call = 0; call < 5; call++)
            {
                kernel.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, options);
            }
        }));
    }

    /// <summary>
    /// A neighbourhood's tiles gather their key lines into per-thread buffers grown on the first call: a warm call over a
    /// grid (with a class token, so the row tails run too) allocates nothing either.
    /// </summary>
    [Fact]
    public void WarmNeighbourhoodCallAllocatesNothingOnTheCallingThread()
    {
        var shape = new AttentionShape(Heads: 4, KvHeads: 2, SeqLen: 40 * 30);
        var grid = new GridShape(40, 30);
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(new Random(3), shape, DilatedNeighborhoodWithClassToken.HeadDim);
        var output = new float[inputs.Query.Length];
        var options = new AttentionOptions();
        DilatedNeighborhoodWithClassToken.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, grid, options with { MaxDegreeOfParallelism = 1 });
        for (int warmUp = 0; warmUp < 3; warmUp++)
        {
            DilatedNeighborhoodWithClassToken.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, grid, options);
        }

        Assert.Equal(0, AllocationCheck.FewestBytesOverBatches(() =>
        {
            for (int call = 0; call < 5; call++)
            {
                DilatedNeighborhoodWithClassToken.Forward(inputs.Query, inputs.Key, inputs.Value, output, shape, grid, options);
            }
        }));
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

    /// <summary>
    /// Row tails (the keys after a head's tiled prefix) come from a table filled once per plan; a plan whose table would be
    /// too large computes each row's as it goes. Both give the same segments in the same order, so the same bits.
    /// </summary>
    [Theory]
    [InlineData(nameof(LongformerLike))]
    [InlineData(nameof(StridedOverDilatedWindow))]
    [InlineData(nameof(CausalWindowWithSinks))]
    public void RowTailsFromTheTableAndPerRowAgree(string name)
    {
        KernelUnderTest kernel = DeclaredKernels.Get(name);
        var random = new Random(name.Length);
        for (int trial = 0; trial < 3; trial++)
        {
            int kvHeads = random.Next(1, 3);
            var shape = new AttentionShape(Heads: kvHeads * random.Next(1, 4), KvHeads: kvHeads, SeqLen: random.Next(40, 300));
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, kernel.HeadDim);
            foreach (KernelIsa isa in AttentionCheck.AllIsas.Where(isa => isa != KernelIsa.Scalar))
            {
                var options = new AttentionOptions { Isa = isa, MaxDegreeOfParallelism = 1 };
                float[] fromTable = AttentionCheck.Run(kernel, inputs, options);
                float[] perRow;
                try
                {
                    Cpu.RowTails.TableLimitForTests = 0;
                    perRow = AttentionCheck.Run(kernel, inputs, options);
                }
                finally
                {
                    Cpu.RowTails.TableLimitForTests = null;
                }

                AttentionCheck.AssertClose(AttentionCheck.Reference(kernel, inputs), fromTable, shape, kernel.HeadDim, $"{name} {isa} table");
                Assert.Equal(fromTable, perRow);
            }
        }
    }

    /// <summary>The table on its own: every row's tail for every head equals what the pattern writes for that head.</summary>
    [Fact]
    public void RowTailTableHoldsWhatThePatternWrites()
    {
        var random = new Random(23);
        var tails = new Cpu.RowTails();
        int filled = 0;
        for (int trial = 0; trial < 150; trial++)
        {
            AttentionPattern pattern = AttentionPatternTests.RandomPattern(random);
            int heads = random.Next(1, 7), seqLen = random.Next(1, 600);
            int[] tiled = Enumerable.Range(0, heads).Select(_ => 0).ToArray();
            int prefix = random.Next(0, pattern.Components.Count + 1);
            Array.Fill(tiled, prefix);
            tails.Plan(pattern, heads, seqLen, tiled);
            if (prefix == pattern.Components.Count)
            {
                Assert.False(tails.InUse);
            }

            if (!tails.InUse)
            {
                // No tail, or a bound too large for the table (a short stride's many segments per row).
                continue;
            }

            filled++;

            var scratch = new KeySegment[pattern.MaxSegmentsPerQuery];
            for (int item = 0; item < tails.Items; item++)
            {
                tails.Fill(item, scratch);
            }

            var expected = new KeySegment[pattern.MaxSegmentsPerQuery];
            for (int head = 0; head < heads; head++)
            {
                for (int query = 0; query < seqLen; query++)
                {
                    int count = pattern.GetKeySegments(query, head, seqLen, expected, prefix, out int coveredBy);
                    ReadOnlySpan<KeySegment> actual = tails.Get(head, query, out int tableCoveredBy);
                    Assert.Equal(coveredBy, tableCoveredBy);
                    Assert.Equal(expected.AsSpan(0, count).ToArray(), actual.ToArray());
                }
            }
        }

        Assert.True(filled > 50, $"only {filled} of 150 random plans used the table");
    }
}
