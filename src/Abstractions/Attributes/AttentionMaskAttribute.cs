using System;

namespace SparseAttention
{
    /// <summary>
    /// A mask compiled into the kernels: names a <c>static bool M(int query, int key, int head)</c> in the same class,
    /// AND-ed with the declared structure (or alone on a dense declaration). It is evaluated only on pairs the structure
    /// makes visible, so it refines a pattern but cannot make the kernels skip work the structure gives them.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class AttentionMaskAttribute : Attribute
    {
        /// <summary>Names the mask method; write <c>nameof(M)</c>.</summary>
        public AttentionMaskAttribute(string method)
        {
            Method = method;
        }

        /// <summary>The mask method's name.</summary>
        public string Method { get; }
    }
}
