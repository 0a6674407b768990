using System;
using System.Collections.Generic;

namespace SparseAttention
{
    partial class AttentionPattern
    {
        /// <summary>
        /// Number of visible (query, key) pairs over all <paramref name="heads"/> query heads of a sequence of
        /// <paramref name="seqLength"/> tokens: the work a kernel that does only visible pairs must do.
        /// Counted from the key segments of each query, O(seqLength) per head that sees differently, never n².
        /// </summary>
        public long VisiblePairs(int seqLength, int heads)
        {
            if (seqLength < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(seqLength), "seqLength cannot be negative.");
            }

            if (heads < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(heads), "heads cannot be negative.");
            }

            // Heads h and h + HeadPeriod see the same keys: count each residue once. A mask may depend on the head itself.
            int period = Mask is null ? HeadPeriod : Math.Max(1, heads);
            var pairsByResidue = new Dictionary<int, long>();
            Span<KeySegment> segments = new KeySegment[MaxSegmentsPerQuery];
            long total = 0;
            for (int head = 0; head < heads; head++)
            {
                int residue = head % period;
                if (!pairsByResidue.TryGetValue(residue, out long pairs))
                {
                    pairs = 0;
                    for (int query = 0; query < seqLength; query++)
                    {
                        int count = GetKeySegments(query, head, seqLength, segments);
                        for (int s = 0; s < count; s++)
                        {
                            pairs += Mask is null ? segments[s].Count : CountUnmasked(query, segments[s], head);
                        }
                    }

                    pairsByResidue[residue] = pairs;
                }

                total += pairs;
            }

            return total;
        }

        /// <summary>The keys of <paramref name="segment"/> the mask leaves visible to <paramref name="query"/>.</summary>
        private long CountUnmasked(int query, KeySegment segment, int head)
        {
            long count = 0;
            for (int k = 0, key = segment.Start; k < segment.Count; k++, key += segment.Step)
            {
                count += Mask!(query, key, head) ? 1 : 0;
            }

            return count;
        }

        /// <summary>
        /// How far, in tokens, information can travel back and forward through <paramref name="layers"/>
        /// stacked layers of this pattern: the Mistral paper's W x k argument (a window reaching 4095 tokens
        /// back, 32 layers deep, carries information about 131K tokens). Components that reach any distance
        /// in one layer (dense, strided, global tokens) make the field unbounded in that direction.
        /// </summary>
        public ReceptiveField ReceptiveField(int layers)
        {
            if (layers < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(layers), "layers cannot be negative.");
            }

            long backPerLayer = IsDense ? long.MaxValue : 0, forwardPerLayer = IsDense && !Causal ? long.MaxValue : 0;
            foreach (PatternComponent component in _components)
            {
                (long back, long forward) = component.ReachPerLayer(Causal);
                backPerLayer = Math.Max(backPerLayer, back);
                forwardPerLayer = Math.Max(forwardPerLayer, forward);
            }

            return new ReceptiveField(SaturatingMultiply(backPerLayer, layers), SaturatingMultiply(forwardPerLayer, layers));
        }

        private static long SaturatingMultiply(long perLayer, int layers)
        {
            if (perLayer == 0 || layers == 0)
            {
                return 0;
            }

            return perLayer > long.MaxValue / layers ? long.MaxValue : perLayer * layers;
        }
    }

    /// <summary>
    /// How far information travels through stacked layers, in tokens. <see cref="long.MaxValue"/> in a
    /// direction means unbounded (limited only by the sequence).
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    readonly struct ReceptiveField : IEquatable<ReceptiveField>
    {
        /// <summary>Creates a receptive field.</summary>
        public ReceptiveField(long back, long forward)
        {
            Back = back;
            Forward = forward;
        }

        /// <summary>Tokens back from the query that can influence it.</summary>
        public long Back { get; }

        /// <summary>Tokens forward from the query that can influence it.</summary>
        public long Forward { get; }

        /// <summary>True when information can come from any distance back.</summary>
        public bool IsBackUnbounded => Back == long.MaxValue;

        /// <summary>True when information can come from any distance forward.</summary>
        public bool IsForwardUnbounded => Forward == long.MaxValue;

        /// <inheritdoc />
        public bool Equals(ReceptiveField other) => Back == other.Back && Forward == other.Forward;

        /// <inheritdoc />
        public override bool Equals(object? obj) => obj is ReceptiveField other && Equals(other);

        /// <inheritdoc />
        public override int GetHashCode() => Back.GetHashCode() * 31 + Forward.GetHashCode();

        /// <inheritdoc />
        public override string ToString() =>
            (IsBackUnbounded ? "unbounded" : Back.ToString(System.Globalization.CultureInfo.InvariantCulture)) + " back, " +
            (IsForwardUnbounded ? "unbounded" : Forward.ToString(System.Globalization.CultureInfo.InvariantCulture)) + " forward";
    }
}
