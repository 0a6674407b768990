using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

// The generated kernel's signature (query, key, value, output, tile table, per-head values, log-sum-exps, partial slots,
// arguments), and what ILGPU loads it as: a launcher that takes the launch shape first.
using KernelMethod = System.Action<ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SparseAttention.Gpu.GpuAttentionArguments>;
using KernelLauncher = System.Action<ILGPU.KernelConfig, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<int>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, ILGPU.ArrayView<float>, SparseAttention.Gpu.GpuAttentionArguments>;

namespace SparseAttention.Gpu;

/// <summary>
/// One generated ILGPU attention kernel (one per HeadDim) and its compiled forms: ILGPU compiles a kernel once per
/// accelerator (to PTX, OpenCL C or a CPU launcher), which takes from tens of milliseconds to seconds, so the loaded
/// launcher is kept for as long as the accelerator lives. The pattern comes with each launch as its tile table
/// (<see cref="GpuTileTable"/>), uploaded once per (pattern, sequence length, heads) and kept on the device.
/// </summary>
/// <remarks>
/// Launch layout, which the generated kernel states (<see cref="QueryRowsPerGroup"/>, <see cref="ThreadsPerGroup"/>,
/// <see cref="KeyTile"/>): a 2-D grid of (query blocks, heads), a group of warps per block of query rows. The kernel needs
/// groups of <see cref="ThreadsPerGroup"/> threads and, except on OpenCL (see <see cref="IGpuRowSets"/>), warps of at least
/// 8 lanes, since it reduces a row across 8 lanes by shuffles: every CUDA and OpenCL GPU, and ILGPU's CPU accelerator
/// created like one (<c>CPUDeviceKind.Nvidia</c>, which <see cref="AttentionBackend.IlgpuCpu"/> does).
/// </remarks>
public sealed class GpuAttentionKernel
{
    /// <summary>Tile tables kept per accelerator; the oldest is freed past this many.</summary>
    private const int TablesPerAccelerator = 16;

    private readonly KernelMethod _kernel;
    private readonly KernelMethod _openClKernel;
    private readonly ConditionalWeakTable<Accelerator, KernelLauncher> _loaded = new();
    private readonly ConditionalWeakTable<Accelerator, TableCache> _tables = new();
    private readonly object _loadLock = new();

    /// <summary>
    /// Wraps a generated kernel method (explicitly grouped: it reads <c>Grid</c> and <c>Group</c> itself) for rows of
    /// <paramref name="headDim"/> floats that takes <paramref name="keyTile"/> keys per shared-memory tile and <paramref name="queryRowsPerGroup"/> query rows per group
    /// of <paramref name="threadsPerGroup"/> threads; <paramref name="runsUserCode"/> says it is one declaration's own copy
    /// with its mask and score mod compiled in, so it may be launched for a pattern with a mask or modifiers with a score mod.
    /// </summary>
    /// <param name="kernel">The kernel with <see cref="ShuffleRowSets"/>: CUDA and ILGPU's CPU accelerator.</param>
    /// <param name="openClKernel">The same kernel with <see cref="SharedMemoryRowSets"/>, for OpenCL (see <see cref="IGpuRowSets"/>).</param>
    /// <param name="headDim">Floats per query, key, value and output row.</param>
    /// <param name="keyTile">Keys per shared-memory K/V tile.</param>
    /// <param name="queryRowsPerGroup">Query rows per group.</param>
    /// <param name="threadsPerGroup">Threads per group.</param>
    /// <param name="runsUserCode">Whether the kernel is a declaration's own copy with its mask and score mod.</param>
    public GpuAttentionKernel(KernelMethod kernel, KernelMethod openClKernel, int headDim, int keyTile, int queryRowsPerGroup, int threadsPerGroup, bool runsUserCode = false)
    {
        _kernel = kernel ?? throw new ArgumentNullException(nameof(kernel));
        _openClKernel = openClKernel ?? throw new ArgumentNullException(nameof(openClKernel));
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(keyTile, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queryRowsPerGroup, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threadsPerGroup, 1);
        HeadDim = headDim;
        KeyTile = keyTile;
        QueryRowsPerGroup = queryRowsPerGroup;
        ThreadsPerGroup = threadsPerGroup;
        RunsUserCode = runsUserCode;
    }

    /// <summary>Floats per query, key, value and output row.</summary>
    public int HeadDim { get; }

    /// <summary>Query rows per group (a block of the sequence).</summary>
    public int QueryRowsPerGroup { get; }

    /// <summary>Threads per group.</summary>
    public int ThreadsPerGroup { get; }

    /// <summary>Whether this kernel calls a declaration's mask and score mod (it is that declaration's own copy).</summary>
    public bool RunsUserCode { get; }

    /// <summary>The generated kernel method as <paramref name="type"/> runs it, for compiling it ahead of a launch (tests compile it to PTX and OpenCL).</summary>
    public System.Reflection.MethodInfo MethodFor(AcceleratorType type) => KernelFor(type).Method;

    private KernelMethod KernelFor(AcceleratorType type) => type == AcceleratorType.OpenCL ? _openClKernel : _kernel;

    /// <summary>
    /// The kernel's PTX for <paramref name="architecture"/>, compiled as a CUDA <see cref="AttentionDevice"/> compiles it,
    /// without a GPU: for reading what the kernel became (registers versus local memory, loads, FMAs).
    /// </summary>
    public string CompileToPtx(ILGPU.Runtime.Cuda.CudaArchitecture architecture)
    {
        using Context context = AttentionDevice.CreateContext(builder => builder.CPU());
        var instructionSet = ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_80;
        using var backend = new ILGPU.Backends.PTX.PTXBackend(context, new ILGPU.Runtime.Cuda.CudaCapabilityContext(architecture), architecture, instructionSet, null);
        var entry = ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(MethodFor(AcceleratorType.Cuda));
        return ((ILGPU.Backends.PTX.PTXCompiledKernel)backend.Compile(entry, default)).PTXAssembly;
    }

    /// <summary>Keys per shared-memory tile.</summary>
    public int KeyTile { get; }

    /// <summary>Throws unless <paramref name="accelerator"/> can run the kernel's groups (see the remarks).</summary>
    /// <exception cref="NotSupportedException">Its groups or warps are too small.</exception>
    public void CheckCanRunOn(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        // The shuffle form reduces across 8 lanes of a warp; the OpenCL form goes through shared memory and needs no warp.
        bool shuffles = accelerator.AcceleratorType != AcceleratorType.OpenCL;
        if (accelerator.MaxNumThreadsPerGroup < ThreadsPerGroup || (shuffles && accelerator.WarpSize < 8))
        {
            throw new NotSupportedException(
                $"The ILGPU attention kernel runs groups of {ThreadsPerGroup} threads{(shuffles ? " in warps of at least 8 lanes" : "")}; {accelerator.Name} allows {accelerator.MaxNumThreadsPerGroup} threads per group in warps of {accelerator.WarpSize}. " +
                "On ILGPU's CPU accelerator, create it like a GPU: Context.Create(builder => builder.CPU(CPUDeviceKind.Nvidia)), or use AttentionBackend.IlgpuCpu.");
        }
    }

    /// <summary>
    /// Queues the kernel for <paramref name="pattern"/> on <paramref name="accelerator"/>'s default stream and returns without
    /// waiting. The arguments must already be validated (<see cref="AttentionArguments.Validate{T}(int, Accelerator, ArrayView{T}, ArrayView{T}, ArrayView{T}, ArrayView{T}, AttentionShape)"/>).
    /// </summary>
    public void Launch(Accelerator accelerator, AttentionPattern pattern, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, float scale) =>
        Launch(accelerator, pattern, query, key, value, output, shape, scale, ScoreModifiers.None, AttentionOptions.Default, ReadOnlySpan<float>.Empty, default);

    /// <summary>
    /// As the plain launch, with a declaration's built-in score modifiers (softcap, ALiBi with the options' or the default
    /// slopes), learned sinks (<paramref name="sinkLogits"/>, empty for none) and each row's log-sum-exp written to
    /// <paramref name="logSumExp"/> ([Heads, SeqLen]; <c>default</c> for none). A mask or score mod runs only in a kernel
    /// that has it compiled in (<see cref="RunsUserCode"/>).
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern has a mask or the modifiers a score mod, and this is the shared kernel.</exception>
    public void Launch(Accelerator accelerator, AttentionPattern pattern, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits, ArrayView<float> logSumExp)
    {
        // A batch is one launch per sequence, each over its part of the views (the launches queue on one stream).
        var whole = new AttentionSlice(shape.Heads, shape.KvHeads, shape.SeqLen, 0, shape.SeqLen, 0, shape.SeqLen);
        long queryFloats = query.Length / shape.Batch, keyFloats = key.Length / shape.Batch, rows = (long)shape.Heads * shape.SeqLen;
        bool writeLogSumExp = logSumExp.IsValid && logSumExp.Length > 0;
        for (int b = 0; b < shape.Batch; b++)
        {
            Launch(
                accelerator, pattern, query.SubView(b * queryFloats, queryFloats), key.SubView(b * keyFloats, keyFloats), value.SubView(b * keyFloats, keyFloats),
                output.SubView(b * queryFloats, queryFloats), whole, scale, scores, options, sinkLogits, writeLogSumExp ? logSumExp.SubView(b * rows, rows) : default);
        }
    }

    /// <summary>
    /// As the launch over a whole sequence, for a partial call (<see cref="AttentionSlice"/>): the views hold the slice's
    /// queries ([Heads, QueryCount, HeadDim], log-sum-exp [Heads, QueryCount]) and keys ([KvHeads, KeyCount, HeadDim]), and
    /// the pattern and every modifier see absolute positions. The arguments must already be validated.
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern has a mask or the modifiers a score mod, and this is the shared kernel.</exception>
    public void Launch(Accelerator accelerator, AttentionPattern pattern, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionSlice slice, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits, ArrayView<float> logSumExp)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(options);
        if ((pattern.Mask is not null || scores.ScoreMod is not null) && !RunsUserCode)
        {
            throw new NotSupportedException("This pattern has a mask or score mod, which runs only in the ILGPU kernel generated for its own declaration; launch that declaration's Forward.");
        }

        CheckCanRunOn(accelerator);
        // The table says how many blocks of rows a head has (residue streams can make more than consecutive rows would).
        TableCache.Table table = _tables.GetValue(accelerator, _ => new TableCache()).Get(accelerator, pattern, slice, QueryRowsPerGroup, KeyTile, HeadDim);
        var config = new KernelConfig(new Index2D(table.BlocksPerHead, slice.Heads), new Index2D(ThreadsPerGroup, 1));

        ArrayView<float> perHeadView = PerHeadValues(accelerator, scores, options, sinkLogits, slice.Heads);
        bool writeLogSumExp = logSumExp.IsValid && logSumExp.Length > 0;
        var arguments = new GpuAttentionArguments(slice, scale, scores.Softcap, scores.Alibi, !sinkLogits.IsEmpty, writeLogSumExp);
        ArrayView<float> logSumExpView = writeLogSumExp ? logSumExp : perHeadView;
        // A table without long rows writes no partial slot; the kernel still needs a valid view.
        ArrayView<float> partials = table.Partials?.View ?? perHeadView;
        Load(accelerator)(config, query, key, value, output, table.Tiles, perHeadView, logSumExpView, partials, arguments);
        if (table.MergeGroupsPerHead > 0)
        {
            // Queued behind the attention launch on the same stream: the long rows' parts are written before they merge.
            GpuPartialMerge.Launch(accelerator, table.MergeGroupsPerHead, slice.Heads, QueryRowsPerGroup, table.Tiles, partials, output, perHeadView, logSumExpView, arguments, HeadDim);
        }
    }

    /// <summary>
    /// Queues decode for the newest token in <paramref name="cache"/> on its accelerator: <paramref name="query"/> and
    /// <paramref name="output"/> are [Heads, HeadDim] views there. The step's tile table lists, per KV head, the cache
    /// slots its query heads see (rows of one block, so a key tile is staged once for the GQA group), cut into parts that
    /// spread the window over the GPU (Flash-Decoding); <see cref="GpuPartialMerge"/> combines the parts and adds the sinks.
    /// The arguments must already be validated (<see cref="DecodeArguments.ValidateDecode(AttentionPattern, int, DeviceKvCache, ArrayView{float}, ArrayView{float})"/>).
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern has a mask or the modifiers a score mod, and this is the shared kernel.</exception>
    public void Decode(DeviceKvCache cache, ArrayView<float> query, ArrayView<float> output, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(options);
        AttentionPattern pattern = cache.Pattern;
        if ((pattern.Mask is not null || scores.ScoreMod is not null) && !RunsUserCode)
        {
            throw new NotSupportedException("This pattern has a mask or score mod, which runs only in the ILGPU kernel generated for its own declaration; call that declaration's Decode.");
        }

        Accelerator accelerator = cache.Accelerator;
        CheckCanRunOn(accelerator);
        int heads = (int)(query.Length / HeadDim), position = (int)cache.Count - 1;
        // About four groups per multiprocessor share the window, each part at least GpuTileTable.MinPartTiles tiles. Key
        // positions matter only to ALiBi, masks and score mods; without them a full ring's table is built once.
        bool positionsMatter = scores.Alibi || pattern.Mask is not null || scores.ScoreMod is not null;
        (ArrayView<int> tiles, ArrayView<float> partials, int blocksPerHead, int mergeGroups) = cache.Scratch.DecodeTable(
            accelerator, pattern, cache.Map, position, heads, cache.KvHeads, cache.Capacity, QueryRowsPerGroup, KeyTile, targetBlocks: 4 * Math.Max(1, accelerator.NumMultiprocessors), HeadDim, positionsMatter);
        ArrayView<float> perHeadView = PerHeadValues(accelerator, scores, options, sinkLogits, heads);
        var arguments = GpuAttentionArguments.ForDecode(position, heads, cache.KvHeads, cache.Capacity, scale, scores.Softcap, scores.Alibi, !sinkLogits.IsEmpty);
        var config = new KernelConfig(new Index2D(blocksPerHead, cache.KvHeads), new Index2D(ThreadsPerGroup, 1));
        Load(accelerator)(config, query, cache.Keys, cache.Values, output, tiles, perHeadView, perHeadView, partials, arguments);
        GpuPartialMerge.Launch(accelerator, mergeGroups, cache.KvHeads, QueryRowsPerGroup, tiles, partials, output, perHeadView, perHeadView, arguments, HeadDim);
    }

    /// <summary>
    /// As the decode over views, for a query and output on the host: copied to the cache's accelerator and back, so it
    /// returns when the output is written.
    /// </summary>
    public void Decode(DeviceKvCache cache, ReadOnlySpan<float> query, Span<float> output, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits)
    {
        ArgumentNullException.ThrowIfNull(cache);
        (ArrayView<float> queryView, ArrayView<float> outputView) = cache.Scratch.HostRows(cache.Accelerator, query.Length);
        queryView.CopyFromCPU(query);
        Decode(cache, queryView, outputView, scale, scores, options, sinkLogits);
        outputView.CopyToCPU(output);
    }

    private readonly ConditionalWeakTable<Accelerator, PerHeadBuffer> _perHead = new();

    /// <summary>
    /// Per-head values (ALiBi's base-2 slopes, then the sink logits) in a buffer kept per accelerator and refilled by a
    /// copy on the default stream, which runs after every launch queued before it. A call without ALiBi or sinks copies
    /// nothing: the kernels do not read the buffer then.
    /// </summary>
    private ArrayView<float> PerHeadValues(Accelerator accelerator, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits, int heads)
    {
        PerHeadBuffer perHead = _perHead.GetValue(accelerator, _ => new PerHeadBuffer());
        return scores.Alibi || !sinkLogits.IsEmpty
            ? perHead.Fill(accelerator, scores.Alibi ? AlibiSlopes.Resolve(options, heads) : ReadOnlySpan<float>.Empty, sinkLogits, heads)
            : perHead.Unfilled(accelerator);
    }

    /// <summary>One accelerator's buffer of per-head values (2 x Heads floats, grown on demand).</summary>
    private sealed class PerHeadBuffer
    {
        private MemoryBuffer1D<float, Stride1D.Dense>? _buffer;
        private float[] _staging = Array.Empty<float>();

        /// <summary>A valid view for launches that read no per-head value.</summary>
        public ArrayView<float> Unfilled(Accelerator accelerator)
        {
            lock (this)
            {
                _buffer ??= accelerator.Allocate1D<float>(2);
                return _buffer.View;
            }
        }

        public ArrayView<float> Fill(Accelerator accelerator, ReadOnlySpan<float> slopes, ReadOnlySpan<float> sinks, int heads)
        {
            lock (this)
            {
                int length = 2 * heads;
                if (_buffer is null || _buffer.Length < length)
                {
                    accelerator.Synchronize();
                    _buffer?.Dispose();
                    _buffer = accelerator.Allocate1D<float>(length);
                }

                if (_staging.Length < length)
                {
                    _staging = new float[length];
                }

                Array.Clear(_staging);
                for (int head = 0; head < slopes.Length; head++)
                {
                    _staging[head] = slopes[head] * Cpu.VectorMath.Log2E;
                }

                sinks.CopyTo(_staging.AsSpan(heads));
                ArrayView<float> view = _buffer.View.SubView(0, length);
                view.CopyFromCPU(_staging.AsSpan(0, length));
                return view;
            }
        }
    }

    private KernelLauncher Load(Accelerator accelerator)
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
                try
                {
                    launcher = accelerator.LoadStreamKernel(KernelFor(accelerator.AcceleratorType));
                }
                catch (InternalCompilerException exception) when (RunsUserCode)
                {
                    // The likeliest cause is the user's own code; say so, and how to fix it, rather than show ILGPU's internals.
                    throw new NotSupportedException(
                        "ILGPU cannot compile this declaration's mask or score mod for " + accelerator.Name + ": " + (exception.InnerException ?? exception).Message +
                        " A mask or score mod on the GPU may use arithmetic, Math/MathF calls, static readonly values and static arrays (these need the ILGPU context built with"
                        + " .Arrays(ArrayMode.InlineMutableStaticArrays), as AttentionDevice does; their contents are frozen when the kernel compiles), but no objects, delegates or allocations.",
                        exception);
                }

                _loaded.Add(accelerator, launcher);
            }

            return launcher;
        }
    }

    /// <summary>One accelerator's uploaded tile tables (and the partial slots of those that split long rows), most recent last.</summary>
    private sealed class TableCache
    {
        private readonly List<(AttentionPattern Pattern, AttentionSlice Slice, int GroupSize, Table Table)> _tables = new();

        /// <summary>An uploaded table, the grid's width, and its merge groups per head and partial-slot buffer (null when none).</summary>
        public sealed record Table(MemoryBuffer1D<int, Stride1D.Dense> Buffer, int BlocksPerHead, int MergeGroupsPerHead, MemoryBuffer1D<float, Stride1D.Dense>? Partials)
        {
            public ArrayView<int> Tiles => Buffer.View;

            public void Dispose()
            {
                Buffer.Dispose();
                Partials?.Dispose();
            }
        }

        public Table Get(Accelerator accelerator, AttentionPattern pattern, AttentionSlice slice, int groupSize, int keyTile, int headDim)
        {
            // KvHeads does not change the table; the rest of the slice (heads, positions, ranges) does.
            slice = slice with { KvHeads = 0 };
            lock (_tables)
            {
                for (int i = 0; i < _tables.Count; i++)
                {
                    var entry = _tables[i];
                    if (ReferenceEquals(entry.Pattern, pattern) && entry.Slice == slice && entry.GroupSize == groupSize)
                    {
                        return entry.Table;
                    }
                }

                int[] tiles = GpuTileTable.Build(pattern, slice, groupSize, keyTile);
                MemoryBuffer1D<int, Stride1D.Dense> buffer = accelerator.Allocate1D(tiles);
                // Launches on the default stream run one after another, so one call's parts are merged before the next
                // call with this table overwrites them.
                var partials = tiles[1] > 0 ? accelerator.Allocate1D<float>(GpuPartialMerge.PartialFloats(slice.Heads, tiles[2], headDim)) : null;
                if (_tables.Count == TablesPerAccelerator)
                {
                    // Launches already queued finish before the next one on the default stream, which frees nothing early.
                    accelerator.Synchronize();
                    _tables[0].Table.Dispose();
                    _tables.RemoveAt(0);
                }

                var table = new Table(buffer, tiles[0], tiles[1], partials);
                _tables.Add((pattern, slice, groupSize, table));
                return table;
            }
        }
    }
}
