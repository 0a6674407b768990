namespace SparseAttention;

/// <summary>
/// Part of one sequence's attention, for results that are merged later (split-KV, shared prefixes, ring attention):
/// queries at positions [<see cref="QueryStart"/>, QueryStart + <see cref="QueryCount"/>) against keys at positions
/// [<see cref="KeyStart"/>, KeyStart + <see cref="KeyCount"/>) of a sequence of <see cref="SeqLen"/> tokens. The pattern
/// is evaluated at the absolute positions (and with SeqLen, which block-sparse patterns depend on); the spans hold only
/// the slice: query and output <c>[Heads, QueryCount, HeadDim]</c>, key and value <c>[KvHeads, KeyCount, HeadDim]</c>,
/// log-sum-exp <c>[Heads, QueryCount]</c>. Each row's result covers only its visible keys inside the key range, so the
/// slices of any partition of the keys merge (<see cref="AttentionMerge"/>) into one call over all of them.
/// </summary>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads (Heads a multiple of it).</param>
/// <param name="SeqLen">Tokens in the whole sequence.</param>
/// <param name="QueryStart">Position of the slice's first query.</param>
/// <param name="QueryCount">Queries in the slice (at least 1).</param>
/// <param name="KeyStart">Position of the slice's first key.</param>
/// <param name="KeyCount">Keys in the slice (at least 1).</param>
public readonly record struct AttentionSlice(int Heads, int KvHeads, int SeqLen, int QueryStart, int QueryCount, int KeyStart, int KeyCount)
{
    /// <summary>The whole sequence's shape (what the pattern is evaluated against).</summary>
    public AttentionShape Sequence => new(Heads, KvHeads, SeqLen);
}
