using System;

namespace SparseAttention
{
    /// <summary>
    /// Longformer's global attention: a global token attends to every key and every query attends to it
    /// (both still subject to Causal). Positions at or beyond the sequence length are ignored.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class GlobalTokensAttribute : Attribute
    {
        /// <summary>Creates the set of global positions (0-based).</summary>
        public GlobalTokensAttribute(params int[] positions)
        {
            Positions = positions ?? new int[0];
        }

        /// <summary>The global positions, 0-based.</summary>
        public int[] Positions { get; }
    }
}
