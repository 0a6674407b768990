using System;

namespace SparseAttention
{
    /// <summary>
    /// Marks a <c>static partial class</c> as an attention kernel. The SparseAttention source generator
    /// adds <c>HeadDim</c>, <c>Pattern</c> and <c>Forward</c> members specialised to the pattern attributes
    /// placed beside this one (<see cref="SlidingWindowAttribute"/>, <see cref="DilationAttribute"/>,
    /// <see cref="GlobalTokensAttribute"/>, <see cref="StridedAttribute"/>). With no pattern attribute the
    /// kernel is dense attention.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class AttentionKernelAttribute : Attribute
    {
        /// <summary>Size of one head's query/key/value vector: a multiple of 8 from 8 to 256.</summary>
        public int HeadDim { get; set; }

        /// <summary>
        /// When true (the default) query <c>i</c> never sees a key <c>j &gt; i</c>, whatever the other
        /// attributes allow.
        /// </summary>
        public bool Causal { get; set; } = true;
    }
}
