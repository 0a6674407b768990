using System;

namespace SparseAttention
{
    /// <summary>
    /// The Sparse Transformer's fixed factorized pattern (Child et al. 2019, §4.3): query <c>i</c> sees key <c>j</c> when
    /// both are in the same block of <see cref="Block"/> positions (<c>j / Block == i / Block</c>), or when <c>j</c> is one
    /// of the last <see cref="Summary"/> positions of its block (<c>j mod Block &gt;= Block - Summary</c>), the "summary"
    /// columns every later query reads. Then the causal cut as always.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class FixedFactorizedAttribute : Attribute
    {
        /// <summary>Positions per block (l), 1 or more.</summary>
        public int Block { get; set; }

        /// <summary>Summary positions at the end of every block (c), 1 to Block.</summary>
        public int Summary { get; set; }

        /// <summary>
        /// When true, head h uses summary group <c>g = h mod (Block / Summary)</c>: positions with
        /// <c>Block - Summary·(g+1) &lt;= j mod Block &lt; Block - Summary·g</c> (Block must be a multiple of Summary).
        /// </summary>
        public bool VaryByHead { get; set; }
    }
}
