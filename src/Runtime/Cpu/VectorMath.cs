using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseAttention.Cpu;

/// <summary>Horizontal reductions the generated kernels need and System.Runtime.Intrinsics lacks.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class VectorMath
{
    /// <summary>The largest lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> vector) => MaxAcross(Vector256.Max(vector.GetLower(), vector.GetUpper()));

    /// <summary>The largest lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> vector) => MaxAcross(Vector128.Max(vector.GetLower(), vector.GetUpper()));

    /// <summary>The largest lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> vector)
    {
        vector = Vector128.Max(vector, Vector128.Shuffle(vector, Vector128.Create(2, 3, 0, 1)));
        vector = Vector128.Max(vector, Vector128.Shuffle(vector, Vector128.Create(1, 0, 3, 2)));
        return vector.ToScalar();
    }
}
