using System;
using System.Linq;
using ILGPU;
using ILGPU.Runtime;
using SparseAttention.Cpu;

namespace SparseAttention;

/// <summary>
/// A rolling KV cache that lives where an <see cref="AttentionDevice"/> runs kernels, for the generated
/// <c>Decode</c> overloads that take it: in GPU memory on a CUDA, OpenCL or ILGPU-CPU device, so decode reads it there
/// and only the query and output cross to the host (or nothing does, with views); a <see cref="KvCache"/> on the
/// <see cref="AttentionBackend.Cpu"/> device, decoded by the SIMD kernels. Same slots as <see cref="KvCache"/>: per KV head
/// a ring of <see cref="RingSlots"/> slots (position p in slot p mod RingSlots) and one pinned slot per global token,
/// keys and values fp32. Create it with the generated <c>CreateCache(device, kvHeads)</c>; dispose it to free the
/// device memory. Not thread-safe: one stream, one caller at a time.
/// </summary>
public sealed class DeviceKvCache : IDisposable
{
    private readonly int[] _pinnedPositions;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _keys;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _values;
    private readonly MemoryBuffer1D<int, Stride1D.Dense>? _pinned;
    private MemoryBuffer1D<float, Stride1D.Dense>? _staging;
    private long _count;
    private bool _disposed;

    /// <summary>
    /// Creates an empty cache for <paramref name="pattern"/> on <paramref name="device"/>. The generated
    /// <c>CreateCache(device, kvHeads)</c> calls this with the kernel's own pattern and HeadDim.
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern cannot be decoded with a bounded cache.</exception>
    /// <exception cref="ArgumentException">A size is not positive, or the cache would be too large.</exception>
    public DeviceKvCache(AttentionDevice device, AttentionPattern pattern, int kvHeads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(device);
        KvCache.CheckShape(pattern, kvHeads, headDim);
        Device = device;
        Pattern = pattern;
        KvHeads = kvHeads;
        HeadDim = headDim;
        RingSlots = pattern.StreamingRingSlots;
        _pinnedPositions = pattern.GlobalTokens.ToArray();
        if (device.Accelerator is not { } accelerator)
        {
            Host = new KvCache(pattern, kvHeads, headDim);
            return;
        }

        long floats = (long)kvHeads * Capacity * headDim;
        _keys = accelerator.Allocate1D<float>(floats);
        _values = accelerator.Allocate1D<float>(floats);
        _pinned = accelerator.Allocate1D<int>(Math.Max(1, _pinnedPositions.Length));
        _pinned.View.SubView(0, _pinnedPositions.Length).CopyFromCPU(_pinnedPositions);
    }

    /// <summary>The device the cache lives on.</summary>
    public AttentionDevice Device { get; }

    /// <summary>The pattern the cache was sized for.</summary>
    public AttentionPattern Pattern { get; }

    /// <summary>Key/value heads.</summary>
    public int KvHeads { get; }

    /// <summary>Size of one head's key and value vector.</summary>
    public int HeadDim { get; }

    /// <summary>Ring slots per KV head: the newest position and every earlier one the window still reaches.</summary>
    public int RingSlots { get; }

    /// <summary>Pinned slots per KV head, one per global token.</summary>
    public int PinnedSlots => _pinnedPositions.Length;

    /// <summary>Token slots per KV head: <see cref="RingSlots"/> + <see cref="PinnedSlots"/>.</summary>
    public int Capacity => RingSlots + PinnedSlots;

    /// <summary>Bytes of keys and values held: 2 x KvHeads x Capacity x HeadDim x 4.</summary>
    public long MemoryBytes => 2L * KvHeads * Capacity * HeadDim * sizeof(float);

    /// <summary>Tokens appended so far; the next token appended is at this position.</summary>
    public long Count => Host?.Count ?? _count;

    /// <summary>
    /// The cache itself on the <see cref="AttentionBackend.Cpu"/> device (the generated span <c>Decode</c> runs the SIMD
    /// decode on it); null on an ILGPU device.
    /// </summary>
    public KvCache? Host { get; }

    /// <summary>The keys on the device, [KvHeads, Capacity, HeadDim]; default on the CPU device.</summary>
    internal ArrayView<float> Keys => _keys?.View ?? default;

    /// <summary>The values on the device, laid out as <see cref="Keys"/>.</summary>
    internal ArrayView<float> Values => _values?.View ?? default;

    /// <summary>Where the cache keeps each position it holds.</summary>
    internal SlotMap Map => new(origin: 0, RingSlots, Math.Max(0, Count - RingSlots), _pinnedPositions);

    /// <summary>The accelerator, or an exception saying the cache lives on the CPU device.</summary>
    internal Accelerator Accelerator
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return Device.Accelerator ?? throw new NotSupportedException($"This cache lives on the CPU device ({Device.Name}), which has no ILGPU views: pass spans.");
        }
    }

    /// <summary>
    /// Appends one or more tokens' keys and values from the host, token by token: <c>[tokens, KvHeads, HeadDim]</c>. Nothing
    /// changes when an argument is wrong.
    /// </summary>
    /// <exception cref="ArgumentException">A length is not a whole number of tokens, or key and value differ.</exception>
    public void Append(ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Host is { } host)
        {
            host.Append(key, value);
            return;
        }

        int tokens = CheckTokens(key.Length, value.Length);
        long floats = key.Length;
        Accelerator accelerator = Accelerator;
        if (_staging is null || _staging.Length < 2 * floats)
        {
            accelerator.Synchronize(); // a queued append may still read the old staging buffer
            _staging?.Dispose();
            _staging = accelerator.Allocate1D<float>(2 * floats);
        }

        ArrayView<float> keys = _staging.View.SubView(0, floats), values = _staging.View.SubView(floats, floats);
        keys.CopyFromCPU(key);
        values.CopyFromCPU(value);
        Scatter(accelerator, keys, values, tokens);
    }

    /// <summary>
    /// Appends tokens whose keys and values are already on the cache's accelerator (a projection's output), laid out as
    /// <c>[tokens, KvHeads, HeadDim]</c>; queued on the accelerator's default stream.
    /// </summary>
    /// <exception cref="ArgumentException">A view is invalid, on another accelerator, not a whole number of tokens, or key and value differ.</exception>
    /// <exception cref="NotSupportedException">The cache lives on the CPU device.</exception>
    public void Append(ArrayView<float> key, ArrayView<float> value)
    {
        Accelerator accelerator = Accelerator;
        AttentionArguments.CheckOnAccelerator(nameof(key), key, accelerator);
        AttentionArguments.CheckOnAccelerator(nameof(value), value, accelerator);
        Scatter(accelerator, key, value, CheckTokens(key.Length, value.Length));
    }

    /// <summary>Forgets every token, for a new stream; the memory is kept.</summary>
    public void Clear()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Host?.Clear();
        _count = 0;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _keys?.Dispose();
        _values?.Dispose();
        _pinned?.Dispose();
        _staging?.Dispose();
        Scratch.Dispose();
    }

    /// <summary>Decode's per-cache device scratch (tile table, partial slots), grown on demand and reused every token.</summary>
    internal Gpu.DecodeScratch Scratch { get; } = new();

    private int CheckTokens(long keyLength, long valueLength)
    {
        KvCache.CheckTokenLengths(KvHeads, HeadDim, keyLength, valueLength);
        long tokens = keyLength / ((long)KvHeads * HeadDim);
        if (Count + tokens > int.MaxValue)
        {
            throw new InvalidOperationException($"The stream would pass position {int.MaxValue}, the largest a pattern takes; Clear the cache for a new stream.");
        }

        return (int)tokens;
    }

    private void Scatter(Accelerator accelerator, ArrayView<float> keys, ArrayView<float> values, int tokens)
    {
        var scatter = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ScatterArguments>(ScatterTokens);
        scatter((int)keys.Length, keys, values, _keys!.View, _values!.View, _pinned!.View, new ScatterArguments((int)_count, tokens, KvHeads, HeadDim, Capacity, RingSlots, _pinnedPositions.Length));
        _count += tokens;
    }

    /// <summary>What <see cref="ScatterTokens"/> needs besides the views.</summary>
    internal readonly record struct ScatterArguments(int FirstPosition, int Tokens, int KvHeads, int HeadDim, int Capacity, int RingSlots, int PinnedCount);

    /// <summary>
    /// A thread per appended element: into its position's ring slot (only the last RingSlots tokens of the append, as the
    /// others would be overwritten within it) and, for a global token, its pinned slot.
    /// </summary>
    private static void ScatterTokens(Index1D index, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> cacheKeys, ArrayView<float> cacheValues, ArrayView<int> pinned, ScatterArguments arguments)
    {
        int headDim = arguments.HeadDim;
        int d = index % headDim, kvHead = index / headDim % arguments.KvHeads, token = index / (headDim * arguments.KvHeads);
        int position = arguments.FirstPosition + token;
        long headBase = (long)kvHead * arguments.Capacity;
        if (token >= arguments.Tokens - arguments.RingSlots)
        {
            long at = (headBase + position % arguments.RingSlots) * headDim + d;
            cacheKeys[at] = keys[index];
            cacheValues[at] = values[index];
        }

        for (int i = 0; i < arguments.PinnedCount; i++)
        {
            if (pinned[i] == position)
            {
                long at = (headBase + arguments.RingSlots + i) * headDim + d;
                cacheKeys[at] = keys[index];
                cacheValues[at] = values[index];
            }
        }
    }
}
