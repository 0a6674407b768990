namespace SparseAttention
{
    /// <summary>
    /// An arithmetic run of key positions: <c>Start, Start + Step, ..., Start + (Count - 1) * Step</c>.
    /// A query's visible keys are a short list of disjoint segments (see
    /// <see cref="AttentionPattern.GetKeySegments(int, int, int, System.Span{KeySegment})"/>), which is what lets kernels do work proportional to
    /// the visible pairs and never test a mask inside a segment.
    /// </summary>
#if SPARSEATTENTION_GENERATOR
    internal
#else
    public
#endif
    readonly struct KeySegment : System.IEquatable<KeySegment>
    {
        /// <summary>Creates a segment.</summary>
        public KeySegment(int start, int step, int count)
        {
            Start = start;
            Step = step;
            Count = count;
        }

        /// <summary>First key position.</summary>
        public int Start { get; }

        /// <summary>Distance between consecutive keys (1 for a contiguous run).</summary>
        public int Step { get; }

        /// <summary>Number of keys.</summary>
        public int Count { get; }

        /// <summary>The last key position of the segment.</summary>
        public int Last => Start + (Count - 1) * Step;

        /// <summary>Whether two segments are the same run (same start, step and count).</summary>
        public static bool operator ==(KeySegment left, KeySegment right) => left.Equals(right);

        /// <summary>Whether two segments differ in start, step or count.</summary>
        public static bool operator !=(KeySegment left, KeySegment right) => !left.Equals(right);

        /// <inheritdoc />
        public bool Equals(KeySegment other) => Start == other.Start && Step == other.Step && Count == other.Count;

        /// <inheritdoc />
        public override bool Equals(object? obj) => obj is KeySegment other && Equals(other);

        /// <inheritdoc />
        public override int GetHashCode() => unchecked(((Start * 397) ^ Step) * 397 ^ Count);

        /// <inheritdoc />
        public override string ToString() => Step == 1
            ? "[" + Start + ".." + Last + "]"
            : "[" + Start + ".." + Last + " step " + Step + "]";
    }
}
