using System;

namespace SparseAttention
{
    /// <summary>
    /// Caps every attention logit smoothly, as Gemma 2 does (<c>attn_logit_softcapping = 50</c>): after scaling,
    /// <c>score = cap · tanh(score / cap)</c>, before ALiBi, a score mod and the softmax.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class SoftcapAttribute : Attribute
    {
        /// <summary>Creates the softcap; <paramref name="cap"/> must be a finite number greater than 0.</summary>
        public SoftcapAttribute(float cap)
        {
            Cap = cap;
        }

        /// <summary>The cap: scores end up in (-cap, cap).</summary>
        public float Cap { get; }
    }
}
