using System;

namespace SparseAttention.Gpu;

/// <summary>
/// The scalar arguments of a generated ILGPU attention kernel, passed by value to every thread. A plain struct
/// of primitives because that is what ILGPU can hand to PTX and OpenCL kernels.
/// </summary>
public readonly struct GpuAttentionArguments
{
    /// <summary>log2(e): the kernels run the softmax in base 2, so the score scale carries it.</summary>
    private const float Log2E = 1.44269504088896340736f;

    /// <summary>Creates the arguments for one call.</summary>
    /// <param name="shape">The call's shape (already validated).</param>
    /// <param name="scale">The softmax scale applied to q·k.</param>
    public GpuAttentionArguments(AttentionShape shape, float scale)
        : this(shape, scale, softcap: null, alibi: false, sinks: false, logSumExp: false)
    {
    }

    /// <summary>Creates the arguments for one call with the declaration's built-in score modifiers and outputs.</summary>
    /// <param name="shape">The call's shape (already validated).</param>
    /// <param name="scale">The softmax scale applied to q·k.</param>
    /// <param name="softcap">The softcap (natural units), or null for none.</param>
    /// <param name="alibi">Whether ALiBi's bias is added (slopes in the per-head view).</param>
    /// <param name="sinks">Whether learned sinks join the denominator (logits in the per-head view).</param>
    /// <param name="logSumExp">Whether each row's log-sum-exp is written.</param>
    public GpuAttentionArguments(AttentionShape shape, float scale, float? softcap, bool alibi, bool sinks, bool logSumExp)
        : this(new AttentionSlice(shape.Heads, shape.KvHeads, shape.SeqLen, 0, shape.SeqLen, 0, shape.SeqLen), scale, softcap, alibi, sinks, logSumExp)
    {
    }

    /// <summary>Creates the arguments for a partial call: <paramref name="slice"/>'s queries against its keys.</summary>
    /// <param name="slice">The call's slice (already validated); a whole sequence is the slice of all its queries and keys.</param>
    /// <param name="scale">The softmax scale applied to q·k.</param>
    /// <param name="softcap">The softcap (natural units), or null for none.</param>
    /// <param name="alibi">Whether ALiBi's bias is added (slopes in the per-head view).</param>
    /// <param name="sinks">Whether learned sinks join the denominator (logits in the per-head view).</param>
    /// <param name="logSumExp">Whether each row's log-sum-exp is written.</param>
    public GpuAttentionArguments(AttentionSlice slice, float scale, float? softcap, bool alibi, bool sinks, bool logSumExp)
    {
        SeqLen = slice.SeqLen;
        QueryStart = slice.QueryStart;
        QueryRows = slice.QueryCount;
        KeyRows = slice.KeyCount;
        Heads = slice.Heads;
        QueryHeadsPerKvHead = slice.Sequence.GroupSize;
        ScoreScale = scale * Log2E;
        SoftcapBase2 = softcap is float cap ? cap * Log2E : 0f;
        Alibi = alibi ? 1 : 0;
        Sinks = sinks ? 1 : 0;
        WriteLogSumExp = logSumExp ? 1 : 0;
    }

    /// <summary>
    /// Creates the arguments of a decode launch: the query at <paramref name="position"/> for every one of
    /// <paramref name="heads"/> query heads, against a rolling cache of <paramref name="slots"/> slots per KV head. The
    /// grid's heads are the KV heads and a block's rows the query heads of one (<see cref="RowsAreHeads"/>), so each key
    /// tile is staged once for its whole GQA group.
    /// </summary>
    internal static GpuAttentionArguments ForDecode(int position, int heads, int kvHeads, int slots, float scale, float? softcap, bool alibi, bool sinks) =>
        new(new AttentionSlice(heads, kvHeads, position + 1, position, heads / kvHeads, 0, slots), scale, softcap, alibi, sinks, logSumExp: false) { RowsAreHeads = 1, QueryHeadsPerKvHead = 1 };

    /// <summary>Query heads (the per-head view holds ALiBi slopes then sink logits for this many).</summary>
    public int Heads { get; }

    /// <summary>The softcap in base-2 units (cap x log2(e)); 0 for none.</summary>
    public float SoftcapBase2 { get; }

    /// <summary>1 when ALiBi's bias is added: per-head view [h] holds head h's slope in base-2 units.</summary>
    public int Alibi { get; }

    /// <summary>1 when learned sinks join the denominator: per-head view [Heads + h] holds head h's logit (natural units).</summary>
    public int Sinks { get; }

    /// <summary>1 when each row's log-sum-exp is written to the log-sum-exp view ([Heads, SeqLen]).</summary>
    public int WriteLogSumExp { get; }

    /// <summary>Tokens in the sequence.</summary>
    public int SeqLen { get; }

    /// <summary>The position of query row 0 (0 unless the call is a slice).</summary>
    public int QueryStart { get; }

    /// <summary>Query rows per head in the query and output views (SeqLen unless the call is a slice).</summary>
    public int QueryRows { get; }

    /// <summary>Key rows per KV head in the key and value views (SeqLen unless the call is a slice).</summary>
    public int KeyRows { get; }

    /// <summary>Heads / KvHeads: query head h reads KV head h / QueryHeadsPerKvHead (1 in decode, where the grid's heads are KV heads).</summary>
    public int QueryHeadsPerKvHead { get; private init; }

    /// <summary>
    /// 1 in decode: the grid's heads are KV heads, the query and output views hold [KvHeads, QueryRows (the query heads of
    /// one KV head), HeadDim], every row is at position <see cref="QueryStart"/>, and row r of KV head g is query head
    /// g · QueryRows + r (for its visibility, modifiers and sink). 0 otherwise.
    /// </summary>
    public int RowsAreHeads { get; private init; }

    /// <summary>The softmax scale times log2(e), folded into the query row as it is loaded.</summary>
    public float ScoreScale { get; }
}
