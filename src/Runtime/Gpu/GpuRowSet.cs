using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Util;

namespace SparseAttention.Gpu;

/// <summary>
/// What the generated kernel does across a row set: the eight consecutive lanes of a warp that share four query rows.
/// Each lane holds one value per row (a <see cref="Float4"/>); a reduction gives every lane the max or the sum over the
/// eight. The kernel is generic over this interface and compiled with one of two implementations: ILGPU inlines the
/// struct's calls, so each compiled kernel holds one way and no branch.
/// </summary>
/// <remarks>
/// <see cref="ShuffleRowSets"/> (CUDA, ILGPU's CPU accelerator) reduces by warp shuffles. ILGPU 1.5.3 emits OpenCL
/// shuffles and sub-group barriers only for some vendors, so on OpenCL <see cref="SharedMemoryRowSets"/> reduces through
/// shared memory between group barriers.
/// </remarks>
public interface IGpuRowSets
{
    /// <summary>The component-wise max of <paramref name="value"/> over the lane's row set. Every thread of the group calls it.</summary>
    /// <param name="value">The lane's value for each of its four rows.</param>
    /// <param name="scratch">One <see cref="Float4"/> per thread of the group in shared memory (unused where shuffles exist).</param>
    /// <param name="thread">The thread's index in its group.</param>
    Float4 Max(Float4 value, ArrayView<Float4> scratch, int thread);

    /// <summary>The component-wise sum of <paramref name="value"/> over the lane's row set, added in the same order in every lane.</summary>
    Float4 Sum(Float4 value, ArrayView<Float4> scratch, int thread);

    /// <summary>Waits until the lanes of the warp (at least) have written what they share in shared memory. Every thread calls it.</summary>
    void WarpBarrier();

    /// <summary>
    /// Whether a whole warp may skip the calls above (they synchronise its own lanes only), so a warp that owns no row can
    /// skip a tile's arithmetic; false where they meet the whole group.
    /// </summary>
    bool WarpsMayIdle { get; }
}

/// <summary>Row-set reductions by butterfly shuffles (steps 1, 2, 4) and a warp barrier.</summary>
public readonly struct ShuffleRowSets : IGpuRowSets
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Max(Float4 value, ArrayView<Float4> scratch, int thread)
    {
        // One Float4 per step: four shfl instructions on a GPU either way, one exchange on ILGPU's CPU accelerator, where
        // every shuffle synchronises the warp's threads.
        value = RowSetMath.Max(value, Warp.ShuffleXor(value, 1));
        value = RowSetMath.Max(value, Warp.ShuffleXor(value, 2));
        return RowSetMath.Max(value, Warp.ShuffleXor(value, 4));
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float4 Sum(Float4 value, ArrayView<Float4> scratch, int thread)
    {
        value += Warp.ShuffleXor(value, 1);
        value += Warp.ShuffleXor(value, 2);
        return value + Warp.ShuffleXor(value, 4);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WarpBarrier() => Warp.Barrier();

    /// <inheritdoc/>
    public bool WarpsMayIdle
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => true;
    }
}

/// <summary>Row-set reductions through shared memory between group barriers, for backends without warp shuffles.</summary>
public readonly struct SharedMemoryRowSets : IGpuRowSets
{
    /// <inheritdoc/>
    public Float4 Max(Float4 value, ArrayView<Float4> scratch, int thread)
    {
        int first = Publish(value, scratch, thread);
        Float4 max = scratch[first];
        for (int lane = 1; lane < 8; lane++)
        {
            max = RowSetMath.Max(max, scratch[first + lane]);
        }

        return max;
    }

    /// <inheritdoc/>
    public Float4 Sum(Float4 value, ArrayView<Float4> scratch, int thread)
    {
        int first = Publish(value, scratch, thread);
        Float4 sum = scratch[first];
        for (int lane = 1; lane < 8; lane++)
        {
            sum += scratch[first + lane];
        }

        return sum;
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WarpBarrier() => Group.Barrier();

    /// <inheritdoc/>
    public bool WarpsMayIdle
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => false;
    }

    /// <summary>Writes the lane's value once every thread has read the previous exchange; returns its row set's first slot.</summary>
    private static int Publish(Float4 value, ArrayView<Float4> scratch, int thread)
    {
        Group.Barrier();
        scratch[thread] = value;
        Group.Barrier();
        return thread & ~7;
    }
}

internal static class RowSetMath
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float4 Max(Float4 a, Float4 b) =>
        new(IntrinsicMath.Max(a.X, b.X), IntrinsicMath.Max(a.Y, b.Y), IntrinsicMath.Max(a.Z, b.Z), IntrinsicMath.Max(a.W, b.W));
}
