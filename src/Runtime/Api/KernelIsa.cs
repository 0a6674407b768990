namespace SparseAttention;

/// <summary>Which instruction set a generated CPU kernel runs with.</summary>
public enum KernelIsa
{
    /// <summary>The widest vector width this machine accelerates (Vector512, then Vector256, Vector128, scalar).</summary>
    Auto = 0,

    /// <summary>Plain scalar code: the fallback for machines without SIMD.</summary>
    Scalar,

    /// <summary>128-bit vectors (SSE, NEON).</summary>
    Vector128,

    /// <summary>256-bit vectors (AVX2).</summary>
    Vector256,

    /// <summary>512-bit vectors (AVX-512).</summary>
    Vector512,
}
