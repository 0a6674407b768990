using System;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace SparseAttention.Gpu;

/// <summary>
/// One generated ILGPU attention kernel and its compiled forms: ILGPU compiles a kernel once per accelerator
/// (to PTX, OpenCL C or a CPU launcher), which takes from tens of milliseconds to seconds, so the loaded
/// launcher is kept for as long as the accelerator lives.
/// </summary>
/// <remarks>
/// Launch layout, which every generated kernel assumes: a 2-D grid of (query tiles, heads); a group per
/// (head, query tile) with one thread per query row, so a query tile is <see cref="GroupSize"/> rows.
/// </remarks>
public sealed class GpuAttentionKernel
{
    /// <summary>Threads per group (= query rows per tile) where the accelerator allows it: two CUDA warps.</summary>
    public const int PreferredGroupSize = 64;

    private readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments> _kernel;
    private readonly ConditionalWeakTable<Accelerator, Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments>> _loaded = new();
    private readonly object _loadLock = new();

    /// <summary>Wraps a generated kernel method (explicitly grouped: it reads <c>Grid</c> and <c>Group</c> itself).</summary>
    public GpuAttentionKernel(Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments> kernel)
    {
        _kernel = kernel ?? throw new ArgumentNullException(nameof(kernel));
    }

    /// <summary>The generated kernel method, for compiling it ahead of a launch (tests compile it to PTX and OpenCL).</summary>
    public System.Reflection.MethodInfo Method => _kernel.Method;

    /// <summary>Query rows per group on <paramref name="accelerator"/>: ILGPU's CPU accelerator allows 16 by default.</summary>
    public static int GroupSize(Accelerator accelerator) => Math.Min(PreferredGroupSize, accelerator.MaxNumThreadsPerGroup);

    /// <summary>
    /// Queues the kernel on <paramref name="accelerator"/>'s default stream and returns without waiting. The
    /// arguments must already be validated (<see cref="AttentionArguments.Validate(int, Accelerator, ArrayView{float}, ArrayView{float}, ArrayView{float}, ArrayView{float}, AttentionShape)"/>).
    /// </summary>
    public void Launch(Accelerator accelerator, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, float scale)
    {
        int groupSize = GroupSize(accelerator);
        int queryTiles = (shape.SeqLen + groupSize - 1) / groupSize;
        var config = new KernelConfig(new Index2D(queryTiles, shape.Heads), new Index2D(groupSize, 1));
        Load(accelerator)(config, query, key, value, output, new GpuAttentionArguments(shape, scale));
    }

    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GpuAttentionArguments> Load(Accelerator accelerator)
    {
        if (_loaded.TryGetValue(accelerator, out var launcher))
        {
            return launcher;
        }

        // One compilation per accelerator even when several threads make their first call at once.
        lock (_loadLock)
        {
            if (!_loaded.TryGetValue(accelerator, out launcher))
            {
                launcher = accelerator.LoadStreamKernel(_kernel);
                _loaded.Add(accelerator, launcher);
            }

            return launcher;
        }
    }
}
