using System;

namespace SparseAttention
{
    /// <summary>
    /// Neighbourhood attention (NATTEN's NA, DiNAT's dilated NA) on a grid of 1 to 3 axes whose tokens are flattened
    /// row-major, last axis fastest: every token sees its kernel-size neighbourhood per axis, shifted at the borders so it
    /// always sees that many keys, optionally dilated and causal per axis (docs/patterns.md has the exact rule). The grid
    /// is given per call; the kernel's own <c>Causal</c> must be false (causality is per axis).
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class NeighborhoodAttribute : Attribute
    {
        /// <summary>Creates a neighbourhood of <paramref name="kernelSize"/> keys per axis (1 to 3 axes), e.g. 7, 7.</summary>
        public NeighborhoodAttribute(params int[] kernelSize)
        {
            KernelSize = kernelSize ?? new int[0];
        }

        /// <summary>Keys per axis.</summary>
        public int[] KernelSize { get; }

        /// <summary>Dilation per axis (one value per kernel size; empty means 1 on every axis).</summary>
        public int[] Dilation { get; set; } = new int[0];

        /// <summary>Whether each axis is causal (one value per kernel size; empty means none), e.g. time in a video.</summary>
        public bool[] CausalAxes { get; set; } = new bool[0];
    }
}
