namespace SparseAttention;

/// <summary>
/// The sizes of one attention call. Query and output are <c>[Heads, SeqLen, HeadDim]</c>, key and value
/// <c>[KvHeads, SeqLen, HeadDim]</c>, all row-major and contiguous. Query head <c>h</c> reads KV head
/// <c>h / (Heads / KvHeads)</c> (grouped-query attention), so <c>Heads % KvHeads</c> must be 0.
/// </summary>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="SeqLen">Tokens in the sequence.</param>
public readonly record struct AttentionShape(int Heads, int KvHeads, int SeqLen)
{
    /// <summary>
    /// Sequences of this shape laid out one after another (default 1): query and output <c>[Batch, Heads, SeqLen, HeadDim]</c>,
    /// key and value <c>[Batch, KvHeads, SeqLen, HeadDim]</c>, log-sum-exp <c>[Batch, Heads, SeqLen]</c>; each sequence is
    /// its own pattern instance. Forward takes any batch; Prefill and Decode run one stream (Batch 1).
    /// </summary>
    public int Batch { get; init; } = 1;

    /// <summary>How many query heads share one KV head.</summary>
    public int GroupSize => KvHeads > 0 ? Heads / KvHeads : 0;

    /// <summary>The KV head that query head <paramref name="head"/> reads.</summary>
    public int KvHeadOf(int head) => head / GroupSize;
}
