using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace SparseAttention.Cpu;

/// <summary>
/// How many vector registers the JIT allocates on this machine, for generated kernels that size their register blocks by
/// it. x86 has 16 (xmm/ymm0-15) unless AVX-512 is on: its encoding reaches 32 at every width, so a Vector256 or Vector128
/// kernel on an AVX-512 part (a forced width, or .NET keeping to 256 bits on cores where 512 slows the clock) has twice the
/// registers an AVX2 part has. ARM64's NEON has 32. Read in generated code, it is a constant once the JIT compiles the
/// kernel, and the branch not taken is dropped.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class VectorRegisters
{
    /// <summary>Whether 32 vector registers are there: AVX-512 (with its 128- and 256-bit forms) on x86, or ARM64.</summary>
    public static bool ThirtyTwo
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Avx512F.VL.IsSupported || AdvSimd.Arm64.IsSupported;
    }
}
