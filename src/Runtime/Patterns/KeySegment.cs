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
    readonly struct KeySegment
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

        /// <inheritdoc />
        public override string ToString() => Step == 1
            ? "[" + Start + ".." + Last + "]"
            : "[" + Start + ".." + Last + " step " + Step + "]";
    }
}
