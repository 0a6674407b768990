using System;

namespace SparseAttention
{
    /// <summary>
    /// Dilates the sliding window (Longformer): the window spans <c>Left*D</c> keys back and <c>Right*D</c>
    /// forward, visiting every D-th key. Give one value for all heads, or one value per head; a shorter list
    /// repeats (head <c>h</c> uses <c>perHead[h % perHead.Length]</c>).
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class DilationAttribute : Attribute
    {
        /// <summary>Creates a dilation of one value per head (repeating).</summary>
        public DilationAttribute(params int[] perHead)
        {
            PerHead = perHead ?? new int[0];
        }

        /// <summary>The dilation of each head, repeating over heads.</summary>
        public int[] PerHead { get; }
    }
}
