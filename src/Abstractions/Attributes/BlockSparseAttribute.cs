using System;

namespace SparseAttention
{
    /// <summary>
    /// BigBird's block-sparse pattern (Zaheer et al. 2020): positions grouped in blocks of <see cref="BlockSize"/>; a query
    /// block sees its <see cref="WindowBlocks"/> neighbouring blocks on each side, every global block (and a global block
    /// sees everything), and <see cref="RandomBlocks"/> random key blocks drawn reproducibly from <see cref="Seed"/>, the
    /// head and the block (the generator is defined in docs/patterns.md). Then the causal cut as always.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class BlockSparseAttribute : Attribute
    {
        /// <summary>Positions per block (b), 1 or more; the last block of a sequence may be partial.</summary>
        public int BlockSize { get; set; }

        /// <summary>Neighbouring blocks visible on each side (w), 0 or more: block qb sees kb when |qb - kb| &lt;= w.</summary>
        public int WindowBlocks { get; set; }

        /// <summary>Global blocks; a negative entry counts from the end (-1 is the last block). Entries outside the sequence are ignored.</summary>
        public int[] GlobalBlocks { get; set; } = new int[0];

        /// <summary>Random key blocks per query block and head (r), 0 or more.</summary>
        public int RandomBlocks { get; set; }

        /// <summary>The seed of the random blocks (s).</summary>
        public long Seed { get; set; }
    }
}
