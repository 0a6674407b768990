using System;

namespace SparseAttention
{
    /// <summary>
    /// A score modifier compiled into the kernels, FlexAttention's <c>score_mod</c>: names a
    /// <c>static float F(float score, int query, int key, int head)</c> in the same class, applied to each visible score
    /// (natural units, after softcap and ALiBi) before the softmax. Returning -infinity masks the key.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class ScoreModAttribute : Attribute
    {
        /// <summary>Names the method; write <c>nameof(F)</c>.</summary>
        public ScoreModAttribute(string method)
        {
            Method = method;
        }

        /// <summary>The score modifier's name.</summary>
        public string Method { get; }
    }
}
