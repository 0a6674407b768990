using System;

namespace SparseAttention
{
    partial class AttentionPattern
    {
        /// <summary>
        /// Whether a rolling KV cache can serve this pattern token by token: it is causal (a token's output never
        /// waits for later tokens) and every key a query sees is either within a bounded distance before it or a
        /// global token. <see cref="FindStreamingProblem()"/> says why not when it cannot.
        /// </summary>
        public bool SupportsStreaming => FindStreamingProblem() == null;

        /// <summary>
        /// Null when the pattern can be decoded with a rolling KV cache, otherwise a message saying why not and what to
        /// change. The generator's analyzer reports the same message (SPA0011) at a call to <c>CreateCache</c>,
        /// <c>Decode</c> or <c>Prefill</c>; the runtime throws it.
        /// </summary>
        public string? FindStreamingProblem()
        {
            bool causalInEffect = Causal || (_components.Length > 0 && Array.TrueForAll(_components, component => component.SeesOnlyEarlierKeys));
            if (!causalInEffect && Neighborhood?.FindStreamingProblem() is string neighborhoodProblem)
            {
                return neighborhoodProblem;
            }

            if (!causalInEffect)
            {
                return "the pattern is bidirectional (Causal = false), so a token's output depends on tokens after it that a stream has not seen yet; "
                    + "decode needs [AttentionKernel(Causal = true)]";
            }

            if (IsDense)
            {
                return "dense causal attention sees every earlier token, so its cache grows with the stream; "
                    + "add [SlidingWindow(Size = W)] to bound it to W tokens";
            }

            foreach (PatternComponent component in _components)
            {
                if (component.FindStreamingProblem() is string problem)
                {
                    return problem;
                }
            }

            if (RingSlotsNeeded() > int.MaxValue)
            {
                return "a rolling cache for it would need " + RingSlotsNeeded() + " ring slots, more than it can index (int.MaxValue); "
                    + "make the window's Left x Dilation, and the last global token's position, smaller";
            }

            return null;
        }

        /// <summary>
        /// As <see cref="FindStreamingProblem()"/>, and also null only when a cache for one KV head with
        /// <paramref name="headDim"/> floats per slot fits in one array: a window of a billion keys is a valid pattern
        /// for <c>Forward</c>, but its rolling cache cannot be allocated. The generator's analyzer passes the declared
        /// HeadDim, so SPA0011 names this reason at compile time too.
        /// </summary>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="headDim"/> is less than 1.</exception>
        public string? FindStreamingProblem(int headDim)
        {
            if (headDim < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "headDim must be at least 1 (floats per key and value vector).");
            }

            string? problem = FindStreamingProblem();
            if (problem != null)
            {
                return problem;
            }

            // Ring and pinned slots are each at most int.MaxValue, and HeadDim at most 256 in practice: no long overflow.
            long slots = RingSlotsNeeded() + GlobalTokens.Count;
            long floats = slots * headDim;
            if (floats > MaxArrayLength)
            {
                return "a rolling cache for it would need " + slots + " slots x HeadDim " + headDim + " = " + floats
                    + " floats per KV head, more than one array can hold (" + MaxArrayLength + "); "
                    + "make the window (Left x Dilation) smaller";
            }

            return null;
        }

        /// <summary>The most elements one .NET array may hold (<c>Array.MaxLength</c>, which netstandard2.0 lacks).</summary>
        internal const long MaxArrayLength = 0x7FFFFFC7;

        /// <summary>
        /// The newest token plus the window's reach back, and at least every position up to the last global token.
        /// </summary>
        private long RingSlotsNeeded()
        {
            long reach = 0;
            foreach (PatternComponent component in _components)
            {
                reach = Math.Max(reach, component.StreamingReach);
            }

            return reach + 1;
        }

        /// <summary>
        /// Ring slots a rolling cache needs per KV head: the newest token plus the window's reach back
        /// (Left x the largest dilation), and at least every position up to the last global token, because a global
        /// token's own row sees every key before it. Positions leave the ring in order; global tokens are also kept in
        /// pinned slots outside it (<see cref="GlobalTokens"/>), which is all a later query needs of them.
        /// </summary>
        /// <exception cref="NotSupportedException">The pattern cannot be streamed (<see cref="FindStreamingProblem()"/>).</exception>
        public int StreamingRingSlots
        {
            get
            {
                string? problem = FindStreamingProblem();
                if (problem != null)
                {
                    throw new NotSupportedException("This pattern cannot be decoded with a rolling KV cache: " + problem + ".");
                }

                return (int)RingSlotsNeeded();
            }
        }
    }
}
