using System;

namespace SparseAttention
{
    /// <summary>
    /// The Sparse Transformer's strided component: query <c>i</c> sees key <c>j</c> when
    /// <c>(i - j) mod Stride == 0</c>. Together with <c>SlidingWindow(Left = Stride - 1)</c> it is the
    /// full strided pattern.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class StridedAttribute : Attribute
    {
        /// <summary>The stride s: keys at distance 0, s, 2s, ... from the query are visible.</summary>
        public int Stride { get; set; }
    }
}
