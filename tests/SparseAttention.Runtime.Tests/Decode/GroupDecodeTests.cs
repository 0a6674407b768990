using System.Runtime.Intrinsics;
using SparseAttention.Cpu;
using SparseAttention.Testing;
using CpuDecode = SparseAttention.Decode.CpuDecode;
using GroupDecodeKernel = SparseAttention.Decode.GroupDecodeKernel;

namespace SparseAttention.Runtime.Tests.Decode;

// HeadDim 48: three Vector512s (an odd count: the four-head kernel's column blocks end with a single vector), a pinned
// global token (a second segment), a window of 100 (not a multiple of the 32-key tile or of 4 keys).
[AttentionKernel(HeadDim = 48)]
[SlidingWindow(Size = 100)]
[GlobalTokens(0)]
public static partial class GroupDecodeHeadDim48;

// HeadDim 128: eight Vector512s, which the four-head kernel's P·V takes as two heads' whole rows at a time; a window of
// 100 fills whole 32-key tiles and ends with a partial one.
[AttentionKernel(HeadDim = 128)]
[SlidingWindow(Size = 100)]
public static partial class GroupDecodeHeadDim128;

// HeadDim 40: not a multiple of 16, so the Vector512 ISA decodes with Vector256 (five of them, odd again), and score
// modifiers on the four-head path.
[AttentionKernel(HeadDim = 40)]
[SlidingWindow(Size = 70)]
[Softcap(3f)]
[Alibi]
public static partial class GroupDecodeModifiedHeadDim40;

// HeadDim 32 and a window of 9,000 keys: over a 16-bit cache the four-head kernel's chunks (GroupDecodeKernel.ChunkTiles
// tiles of 64 keys, 8,192) cut the ring's longer run into a whole chunk and a partial one when one thread decodes (one
// block per KV head); over fp32 the same window runs tile by tile.
[AttentionKernel(HeadDim = 32)]
[SlidingWindow(Size = 9000)]
public static partial class GroupDecodeLongWindow;

/// <summary>
/// Decode's group kernel (GroupDecodeKernel): four query heads of a KV head as the rows of a register tile reading fp32,
/// Half or BFloat16 in place, the one-head kernel for the rest, over blocks of the ring the threads ask for (WideHeads'
/// HeadDim 256 takes all sixteen lines of the fp32 score loads' unrolling). Every
/// instruction set, every cache element, GQA groups of 1, 2, 4, 5 and 8 heads, tiles cut by the window and the ring's wrap,
/// against the reference; then the Half fast path's limits (infinities and NaN in the cache, queries too large for its
/// 2^112 fold) against an fp32 cache holding the same values.
/// </summary>
public class GroupDecodeTests
{
    private static readonly (int Heads, int KvHeads)[] Groups = { (4, 1), (8, 2), (5, 1), (16, 2), (2, 1), (3, 3) };

    public static TheoryData<string, CacheElement> KernelsAndElements()
    {
        var data = new TheoryData<string, CacheElement>();
        foreach (string name in new[] { nameof(GroupDecodeHeadDim48), nameof(GroupDecodeHeadDim128), nameof(GroupDecodeModifiedHeadDim40), nameof(EverythingStreamable), nameof(CausalWindowWithSinks), nameof(WideHeads) })
        {
            foreach (CacheElement element in Enum.GetValues<CacheElement>())
            {
                data.Add(name, element);
            }
        }

        return data;
    }

    private static KernelUnderTest Kernel(string name) =>
        name == nameof(EverythingStreamable) ? ScoreModifierKernels.Get(name)
        : name is nameof(CausalWindowWithSinks) or nameof(WideHeads) ? DeclaredKernels.Get(name)
        : KernelUnderTest.FromType(name switch
        {
            nameof(GroupDecodeHeadDim48) => typeof(GroupDecodeHeadDim48),
            nameof(GroupDecodeHeadDim128) => typeof(GroupDecodeHeadDim128),
            _ => typeof(GroupDecodeModifiedHeadDim40),
        });

    [Theory]
    [MemberData(nameof(KernelsAndElements))]
    public void Every_group_size_isa_and_element_decodes_like_the_reference(string name, CacheElement element)
    {
        KernelUnderTest kernel = Kernel(name);
        Func<float, float>? round = element switch
        {
            CacheElement.Half => x => (float)(Half)x,
            CacheElement.BFloat16 => x => (float)(BFloat16)x,
            _ => null,
        };
        var random = new Random(name.Length * 31 + (int)element);
        foreach ((int heads, int kvHeads) in Groups)
        {
            // Three windows long: decode runs with a full ring whose start has wrapped, so a head's keys are two runs.
            int window = kernel.Pattern.WindowLeft + 1;
            var stream = StreamCase.Create(kernel, random, length: 3 * window + 7, heads: (heads, kvHeads), round: round);
            foreach (KernelIsa isa in AttentionCheck.AllIsas)
            {
                // Seven threads ask for more blocks than there are KV heads: the ring splits into blocks of 64 slots.
                foreach (int? threads in new int?[] { null, 7 })
                {
                    stream.AssertPrefillHalfThenDecode(new AttentionOptions { Isa = isa, MaxDegreeOfParallelism = threads }, $"{element} cache, {isa}, {heads}/{kvHeads} heads, threads {threads}", element);
                }
            }
        }
    }

    [Theory]
    [InlineData(CacheElement.Single)]
    [InlineData(CacheElement.Half)]
    [InlineData(CacheElement.BFloat16)]
    public void Windows_longer_than_a_chunk_decode_like_the_reference(CacheElement element)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(typeof(GroupDecodeLongWindow));
        int d = kernel.HeadDim, heads = 16, kvHeads = 4, window = kernel.Pattern.WindowLeft + 1;
        // The ring has wrapped by `wrapped` tokens, so the newest token's keys are two runs of slots. Four KV heads on one
        // thread: each is one block, and its longer run of slots (window - wrapped) passes a 16-bit chunk.
        const int wrapped = 333;
        Assert.Equal(9024, CpuDecode.SlotsPerBlock(window, kvHeads, threads: 1));
        Assert.True(window - wrapped > GroupDecodeKernel.ChunkTiles * GroupDecodeKernel.NarrowTileKeys);
        int length = window + wrapped;
        Func<float, float> round = element switch
        {
            CacheElement.Half => x => (float)(Half)x,
            CacheElement.BFloat16 => x => (float)(BFloat16)x,
            _ => x => x,
        };
        var random = new Random(41 + (int)element);
        var shape = new AttentionShape(heads, kvHeads, length);
        var inputs = AttentionCheck.RandomInputs(random, shape, d);
        float[] keys = inputs.Key.Select(round).ToArray(), values = inputs.Value.Select(round).ToArray();
        var cache = new KvCache(kernel.Pattern, kvHeads, d, element);
        for (int token = 0; token < length; token++)
        {
            cache.Append(StreamCase.TokenMajor(keys, kvHeads, length, d, token, 1), StreamCase.TokenMajor(values, kvHeads, length, d, token, 1));
        }

        // The reference row of every head for the newest token (computing all 9,333 rows would take the suite minutes).
        var expected = new float[heads * d];
        var row = new double[d];
        for (int h = 0; h < heads; h++)
        {
            ReferenceAttention.ComputeRow(kernel.Pattern, inputs.Query, keys, values, shape, h, length - 1, row);
            for (int i = 0; i < d; i++)
            {
                expected[h * d + i] = (float)row[i];
            }
        }

        float[] query = StreamCase.TokenMajor(inputs.Query, heads, length, d, length - 1, 1);

        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            foreach (int? threads in new int?[] { 1, null })
            {
                float[] actual = Decode(kernel, cache, query, new AttentionOptions { Isa = isa, MaxDegreeOfParallelism = threads });
                AttentionCheck.AssertClose(expected, actual, new AttentionShape(heads, kvHeads, 1), d, $"{element} cache, {isa}, threads {threads}");
            }
        }
    }

    [Fact]
    public void Blocks_follow_the_threads_and_never_drop_below_two_tiles()
    {
        Assert.Equal(4096, CpuDecode.SlotsPerBlock(4096, kvHeads: 8, threads: 2));
        Assert.Equal(512, CpuDecode.SlotsPerBlock(4096, kvHeads: 8, threads: 16));
        Assert.Equal(CpuDecode.MinSlotsPerBlock, CpuDecode.SlotsPerBlock(101, kvHeads: 1, threads: 7));
        Assert.Equal(0, CpuDecode.SlotsPerBlock(1000, kvHeads: 3, threads: 5) % GroupDecodeKernel.TileKeys);
    }

    [Fact]
    public void A_Half_cache_holding_an_infinity_or_NaN_decodes_like_an_fp32_cache_of_the_same_values()
    {
        // The fast Half rule would read ±inf and NaN as large finite numbers: a KV head holding one takes the exact rule.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        int d = kernel.HeadDim, heads = 8, kvHeads = 2;
        var random = new Random(5);
        KvCache half = new(kernel.Pattern, kvHeads, d, CacheElement.Half), single = kernel.Streaming!.CreateCache(kvHeads);
        foreach (float poison in new[] { float.PositiveInfinity, float.NaN, 1e6f })
        {
            half.Clear();
            single.Clear();
            for (int token = 0; token < 40; token++)
            {
                float[] key = AttentionCheck.RandomArray(random, kvHeads * d, 1.5f).Select(x => (float)(Half)x).ToArray();
                float[] value = AttentionCheck.RandomArray(random, kvHeads * d, 1.5f).Select(x => (float)(Half)x).ToArray();
                if (token == 36)
                {
                    value[d + 3] = poison; // KV head 1 only, inside the last token's window of 8; 1e6 rounds to Half's infinity
                    value[d + 3] = (float)(Half)value[d + 3];
                }

                half.Append(key, value);
                single.Append(key, value);
            }

            Assert.True(half.HoldsNonFiniteHalf(1));
            Assert.False(half.HoldsNonFiniteHalf(0));
            float[] query = AttentionCheck.RandomArray(random, heads * d, 1.5f);
            foreach (KernelIsa isa in AttentionCheck.AllIsas)
            {
                var options = new AttentionOptions { Isa = isa };
                float[] expected = Decode(kernel, single, query, options), actual = Decode(kernel, half, query, options);
                int poisoned = AttentionCheck.AssertSameRowsOrNaN(expected, actual, new AttentionShape(heads, kvHeads, 1), d, $"Half cache with {poison}, {isa}");
                Assert.Equal(heads / 2, poisoned); // a non-finite visible value makes the row NaN (design §4)
                Assert.True(expected.Take(heads / 2 * d).All(float.IsFinite), "KV head 0's heads stay finite");
            }
        }

        // Once the ring (501 slots: it reaches the global token at 500) overwrites the slot, the KV head is back on the fast path.
        for (int token = 0; token < half.RingSlots; token++)
        {
            float[] kv = AttentionCheck.RandomArray(random, kvHeads * d, 1.5f);
            half.Append(kv, kv);
        }

        Assert.False(half.HoldsNonFiniteHalf(1));
    }

    [Fact]
    public void Queries_too_large_for_the_Half_fold_decode_like_an_fp32_cache()
    {
        // Half keys are read times 2^-112 and the queries carry 2^112; a query past about 6.5e4 / scale would overflow, so
        // such a call takes the exact one-head path.
        KernelUnderTest kernel = DeclaredKernels.Get(nameof(CausalWindowWithSinks));
        int d = kernel.HeadDim, heads = 4, kvHeads = 1;
        var random = new Random(8);
        KvCache half = new(kernel.Pattern, kvHeads, d, CacheElement.Half), single = kernel.Streaming!.CreateCache(kvHeads);
        for (int token = 0; token < 50; token++)
        {
            float[] key = AttentionCheck.RandomArray(random, kvHeads * d, 1e-4f).Select(x => (float)(Half)x).ToArray();
            float[] value = AttentionCheck.RandomArray(random, kvHeads * d, 1.5f).Select(x => (float)(Half)x).ToArray();
            half.Append(key, value);
            single.Append(key, value);
        }

        float[] query = AttentionCheck.RandomArray(random, heads * d, 1e6f);
        foreach (KernelIsa isa in AttentionCheck.AllIsas)
        {
            var options = new AttentionOptions { Isa = isa };
            float[] expected = Decode(kernel, single, query, options), actual = Decode(kernel, half, query, options);
            Assert.True(expected.All(float.IsFinite));
            AttentionCheck.AssertClose(expected, actual, new AttentionShape(heads, kvHeads, 1), d, $"huge queries, {isa}");
        }
    }

    [Fact]
    public void Four_sums_at_once_equal_each_vectors_own_sum_at_every_width()
    {
        var random = new Random(3);
        for (int trial = 0; trial < 50; trial++)
        {
            float[][] lanes = Enumerable.Range(0, 4).Select(_ => AttentionCheck.RandomArray(random, 16, 10f)).ToArray();
            float[] expected = lanes.Select(v => v.Sum()).ToArray();
            AssertSums(expected, Lanes512.SumEach(Vector512.Create(lanes[0]), Vector512.Create(lanes[1]), Vector512.Create(lanes[2]), Vector512.Create(lanes[3])), "512");
            float[] expected256 = lanes.Select(v => v.Take(8).Sum()).ToArray();
            AssertSums(expected256, Lanes256.SumEach(Vector256.Create(lanes[0]), Vector256.Create(lanes[1]), Vector256.Create(lanes[2]), Vector256.Create(lanes[3])), "256");
            float[] expected128 = lanes.Select(v => v.Take(4).Sum()).ToArray();
            AssertSums(expected128, Lanes128.SumEach(Vector128.Create(lanes[0]), Vector128.Create(lanes[1]), Vector128.Create(lanes[2]), Vector128.Create(lanes[3])), "128");
        }

        static void AssertSums(float[] expected, Vector128<float> actual, string width)
        {
            for (int i = 0; i < 4; i++)
            {
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f * Math.Max(1f, Math.Abs(expected[i])), $"Vector{width} sum {i}: {actual[i]}, expected {expected[i]}");
            }
        }
    }

    [Theory]
    [InlineData(null, false, false)]
    [InlineData(null, true, true)]
    [InlineData("L1", true, false)]
    [InlineData(" l2 ", false, true)]
    [InlineData("L3", true, true)]
    [InlineData("", false, false)]
    public void Line_requests_fill_L2_on_family_19h_unless_the_setting_names_a_level(string? setting, bool amdFamily19h, bool intoL2)
    {
        Assert.Equal(intoL2, SparseAttention.Decode.LineRequests.ChooseL2(setting, amdFamily19h));
    }

    private static float[] Decode(KernelUnderTest kernel, KvCache cache, float[] query, AttentionOptions options)
    {
        var output = new float[query.Length];
        kernel.Streaming!.Decode(query, cache, output, options);
        return output;
    }
}
