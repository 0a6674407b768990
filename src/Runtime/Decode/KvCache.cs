using System;
using System.Linq;
using SparseAttention.Cpu;
using SparseAttention.Decode;

namespace SparseAttention;

/// <summary>
/// A rolling key/value cache for decoding a stream token by token with one kernel's pattern (one cache per layer).
/// Memory is fixed when it is created and never grows with the stream: per KV head, a ring of
/// <see cref="RingSlots"/> slots (position p in slot p mod RingSlots, the Mistral paper's rolling buffer), which holds
/// every position the window can still reach, and one pinned slot per global token (attention sinks), kept after the
/// token leaves the ring because every later query still sees it.
/// </summary>
/// <remarks>
/// Create it with the generated <c>CreateCache(kvHeads)</c>, append each token's keys and values, then call the
/// generated <c>Decode</c> for the newest token; or run a prompt through the generated <c>Prefill</c>, which appends
/// as it goes. Not thread-safe: one stream, one caller at a time.
/// </remarks>
public sealed class KvCache
{
    // One pair of arrays is used: fp32 for CacheElement.Single, 16-bit (Half or BFloat16 bits) otherwise.
    private readonly LineAlignedArray<float> _keys;
    private readonly LineAlignedArray<float> _values;
    private readonly LineAlignedArray<ushort> _narrowKeys;
    private readonly LineAlignedArray<ushort> _narrowValues;
    private readonly int[] _pinnedPositions;

    // Half caches only: which slots hold an infinity or NaN, and how many per KV head. Decode widens Half with a fast rule
    // that is exact for finite values only; a KV head holding one of these takes the exact rule instead.
    private readonly bool[] _nonFiniteSlots = Array.Empty<bool>();
    private readonly int[] _nonFiniteSlotsPerKvHead = Array.Empty<int>();

    /// <summary>
    /// Creates an empty cache for <paramref name="pattern"/>. The generated <c>CreateCache(kvHeads)</c> calls this with
    /// the kernel's own pattern and HeadDim, which is what its <c>Decode</c> and <c>Prefill</c> accept.
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern cannot be decoded with a bounded cache, or one KV head's ring would not fit in an array (see <see cref="AttentionPattern.FindStreamingProblem(int)"/>).</exception>
    /// <exception cref="ArgumentException"><paramref name="kvHeads"/> or <paramref name="headDim"/> is not positive, or the cache would be too large.</exception>
    public KvCache(AttentionPattern pattern, int kvHeads, int headDim)
        : this(pattern, kvHeads, headDim, CacheElement.Single)
    {
    }

    /// <summary>
    /// Creates an empty cache holding keys and values as <paramref name="element"/>: <see cref="CacheElement.Half"/> or
    /// <see cref="CacheElement.BFloat16"/> halve <see cref="MemoryBytes"/> and the bytes decode reads per token; appended
    /// fp32 values are rounded to the type (to nearest even), and decode widens each block of slots it reads once.
    /// </summary>
    /// <exception cref="NotSupportedException">The pattern cannot be decoded with a bounded cache.</exception>
    /// <exception cref="ArgumentException">A size is not positive, the cache would be too large, or <paramref name="element"/> is undefined.</exception>
    public KvCache(AttentionPattern pattern, int kvHeads, int headDim, CacheElement element)
    {
        if (!Enum.IsDefined(element))
        {
            throw new ArgumentException($"element must be CacheElement.Single, Half or BFloat16; got {(int)element}.", nameof(element));
        }

        CheckShape(pattern, kvHeads, headDim);
        Pattern = pattern;
        KvHeads = kvHeads;
        HeadDim = headDim;
        RingSlots = pattern.StreamingRingSlots;
        _pinnedPositions = pattern.GlobalTokens.ToArray();
        long floats = (long)kvHeads * Capacity * headDim;
        Element = element;
        // Pinned, each starting on a cache line: decode addresses a cache by pointer (batched decode many caches' at once),
        // and reads rows whole lines at a time.
        if (element == CacheElement.Single)
        {
            _keys = new LineAlignedArray<float>((int)floats);
            _values = new LineAlignedArray<float>((int)floats);
        }
        else
        {
            _narrowKeys = new LineAlignedArray<ushort>((int)floats);
            _narrowValues = new LineAlignedArray<ushort>((int)floats);
        }

        if (element == CacheElement.Half)
        {
            _nonFiniteSlots = new bool[kvHeads * Capacity];
            _nonFiniteSlotsPerKvHead = new int[kvHeads];
        }
    }

    /// <summary>
    /// Throws unless an append's key and value (<paramref name="keyLength"/>, <paramref name="valueLength"/> floats) hold
    /// the same whole number of tokens, <c>[tokens, KvHeads, HeadDim]</c> (shared with <see cref="DeviceKvCache"/>).
    /// </summary>
    internal static void CheckTokenLengths(int kvHeads, int headDim, long keyLength, long valueLength)
    {
        int tokenFloats = kvHeads * headDim;
        if (keyLength == 0 || keyLength % tokenFloats != 0)
        {
            throw new ArgumentException($"key must hold [tokens, KvHeads, HeadDim] = a positive multiple of {kvHeads} x {headDim} = {tokenFloats} floats; it holds {keyLength}.", "key");
        }

        if (valueLength != keyLength)
        {
            throw new ArgumentException($"value must hold as many floats as key ({keyLength}, [tokens, KvHeads, HeadDim]); it holds {valueLength}.", "value");
        }
    }

    /// <summary>
    /// Throws as the constructor does when a cache for <paramref name="pattern"/> with these sizes cannot exist (shared with
    /// <see cref="DeviceKvCache"/>, whose sizes are the same).
    /// </summary>
    internal static void CheckShape(AttentionPattern pattern, int kvHeads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (kvHeads < 1)
        {
            throw new ArgumentException($"kvHeads must be at least 1; got {kvHeads}.", nameof(kvHeads));
        }

        if (headDim < 1)
        {
            throw new ArgumentException($"headDim must be at least 1; got {headDim}.", nameof(headDim));
        }

        // The pattern's own limits first (one KV head's ring must fit), so a too-wide window is named as the cause.
        string? problem = pattern.FindStreamingProblem(headDim);
        if (problem != null)
        {
            throw new NotSupportedException("This pattern cannot be decoded with a rolling KV cache: " + problem + ".");
        }

        int capacity = pattern.StreamingRingSlots + pattern.GlobalTokens.Count;
        Int128 floats = (Int128)kvHeads * capacity * headDim;
        if (floats > Array.MaxLength)
        {
            throw new ArgumentException($"A cache of {kvHeads} KV heads x {capacity} slots x HeadDim {headDim} needs {floats} floats per tensor, more than one array holds ({Array.MaxLength}); use fewer KV heads per cache (one cache per group of KV heads).", nameof(kvHeads));
        }
    }

    /// <summary>How keys and values are stored.</summary>
    public CacheElement Element { get; }

    /// <summary>The pattern the cache was sized for.</summary>
    public AttentionPattern Pattern { get; }

    /// <summary>Key/value heads.</summary>
    public int KvHeads { get; }

    /// <summary>Size of one head's key and value vector.</summary>
    public int HeadDim { get; }

    /// <summary>Tokens appended so far; the next token appended is at this position.</summary>
    public long Count { get; private set; }

    /// <summary>Ring slots per KV head: the newest position and every earlier one the window still reaches.</summary>
    public int RingSlots { get; }

    /// <summary>Pinned slots per KV head, one per global token (attention sink).</summary>
    public int PinnedSlots => _pinnedPositions.Length;

    /// <summary>Token slots per KV head: <see cref="RingSlots"/> + <see cref="PinnedSlots"/>. Fixed for the cache's life.</summary>
    public int Capacity => RingSlots + PinnedSlots;

    /// <summary>Bytes of keys and values held: 2 x KvHeads x Capacity x HeadDim x (4, or 2 for Half and BFloat16), the same at token 1 and token 1,000,000.</summary>
    public long MemoryBytes => Element == CacheElement.Single ? 2L * _keys.Length * sizeof(float) : 2L * _narrowKeys.Length * sizeof(ushort);

    /// <summary>
    /// Appends one or more tokens' keys and values, token by token: <c>[tokens, KvHeads, HeadDim]</c>, each token's
    /// <c>[KvHeads, HeadDim]</c> after the previous one's. Nothing changes when an argument is wrong.
    /// </summary>
    /// <exception cref="ArgumentException">A length is not a whole number of tokens, or key and value differ.</exception>
    /// <exception cref="InvalidOperationException">The stream would pass position int.MaxValue.</exception>
    public void Append(ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int tokenFloats = KvHeads * HeadDim;
        CheckTokenLengths(KvHeads, HeadDim, key.Length, value.Length);
        AppendTokens(key, value, key.Length / tokenFloats, firstOffset: 0, tokenStride: tokenFloats, kvHeadStride: HeadDim);
    }

    /// <summary>Forgets every token, for a new stream; the memory is kept.</summary>
    public void Clear() => Count = 0;

    /// <summary>Whether the key and value of <paramref name="position"/> are still held (in the ring, or pinned as a global token).</summary>
    public bool Holds(long position) =>
        position >= 0 && position < Count && (position >= OldestInRing || PinnedIndexOf(position) >= 0);

    /// <summary>
    /// Copies the key and value of <paramref name="position"/> for <paramref name="kvHead"/> into the destinations
    /// (HeadDim floats each); false when the cache no longer holds that position.
    /// </summary>
    public bool TryRead(long position, int kvHead, Span<float> key, Span<float> value)
    {
        if ((uint)kvHead >= (uint)KvHeads)
        {
            throw new ArgumentOutOfRangeException(nameof(kvHead), $"kvHead must be in [0, {KvHeads}); got {kvHead}.");
        }

        if (key.Length < HeadDim || value.Length < HeadDim)
        {
            throw new ArgumentException($"key and value need HeadDim = {HeadDim} floats each.", key.Length < HeadDim ? nameof(key) : nameof(value));
        }

        if (!Holds(position))
        {
            return false;
        }

        int slot = position >= OldestInRing ? RingSlotOf(position) : RingSlots + PinnedIndexOf(position);
        ReadSlots(kvHead, slot, 1, key, value);
        return true;
    }

    /// <summary>The oldest position still in the ring.</summary>
    internal long OldestInRing => Math.Max(0, Count - RingSlots);

    /// <summary>Where the cache keeps each position it holds.</summary>
    internal SlotMap Map => new(origin: 0, RingSlots, OldestInRing, _pinnedPositions);

    /// <summary>The fp32 keys ([KvHeads, Capacity, HeadDim], line-aligned, pinned); null unless <see cref="Element"/> is Single.</summary>
    internal unsafe float* Keys => _keys.Start;

    /// <summary>The fp32 values; null unless <see cref="Element"/> is Single.</summary>
    internal unsafe float* Values => _values.Start;

    /// <summary>The 16-bit keys (Half or BFloat16 bits, same layout); null when <see cref="Element"/> is Single.</summary>
    internal unsafe ushort* NarrowKeys => _narrowKeys.Start;

    /// <summary>The 16-bit values; null when <see cref="Element"/> is Single.</summary>
    internal unsafe ushort* NarrowValues => _narrowValues.Start;

    /// <summary>
    /// Copies <paramref name="count"/> slots of <paramref name="kvHead"/> from <paramref name="firstSlot"/> on into fp32
    /// <paramref name="keys"/> and <paramref name="values"/> (count x HeadDim each), widening a narrow cache's elements.
    /// </summary>
    internal void ReadSlots(int kvHead, int firstSlot, int count, Span<float> keys, Span<float> values)
    {
        int offset = (kvHead * Capacity + firstSlot) * HeadDim, length = count * HeadDim;
        switch (Element)
        {
            case CacheElement.Single:
                _keys.Slice(offset, length).CopyTo(keys);
                _values.Slice(offset, length).CopyTo(values);
                break;
            default:
                Tensors.ElementConversion.ToSingle(Element, _narrowKeys.Slice(offset, length), keys);
                Tensors.ElementConversion.ToSingle(Element, _narrowValues.Slice(offset, length), values);
                break;
        }
    }

    internal int[] PinnedPositions => _pinnedPositions;

    /// <summary>Whether a Half cache holds an infinity or NaN in any slot of <paramref name="kvHead"/> (false for other elements).</summary>
    internal bool HoldsNonFiniteHalf(int kvHead) => Element == CacheElement.Half && _nonFiniteSlotsPerKvHead[kvHead] > 0;

    /// <summary>Throws unless <paramref name="tokens"/> more positions still fit in an int, which the pattern's positions are.</summary>
    internal void CheckRoomFor(long tokens)
    {
        if (Count + tokens > int.MaxValue)
        {
            throw new InvalidOperationException($"The stream would pass position {int.MaxValue} (it holds {Count} tokens, {tokens} more were given); positions are ints. Start a new stream with Clear().");
        }
    }

    /// <summary>
    /// Appends tokens <paramref name="first"/> .. first + count - 1 of a sequence laid out as a kernel's key and value
    /// (<c>[KvHeads, seqLen, HeadDim]</c>), as prefill has them. The caller has validated the lengths.
    /// </summary>
    internal void AppendFromSequence(ReadOnlySpan<float> key, ReadOnlySpan<float> value, int seqLen, int first, int count) =>
        AppendTokens(key, value, count, firstOffset: first * HeadDim, tokenStride: HeadDim, kvHeadStride: seqLen * HeadDim);

    /// <summary>
    /// Appends <paramref name="tokens"/> tokens whose KV head h vector starts at
    /// <c>firstOffset + token * tokenStride + h * kvHeadStride</c>: each into its ring slot, global tokens also into
    /// their pinned slot.
    /// </summary>
    private void AppendTokens(ReadOnlySpan<float> key, ReadOnlySpan<float> value, int tokens, int firstOffset, int tokenStride, int kvHeadStride)
    {
        CheckRoomFor(tokens);
        for (int token = 0; token < tokens; token++)
        {
            long position = Count + token;
            int pinned = PinnedIndexOf(position);
            for (int kvHead = 0; kvHead < KvHeads; kvHead++)
            {
                int from = firstOffset + token * tokenStride + kvHead * kvHeadStride;
                long headBase = (long)kvHead * Capacity;
                WriteSlot(headBase + RingSlotOf(position), key.Slice(from, HeadDim), value.Slice(from, HeadDim));
                if (pinned >= 0)
                {
                    WriteSlot(headBase + RingSlots + pinned, key.Slice(from, HeadDim), value.Slice(from, HeadDim));
                }
            }
        }

        Count += tokens;
    }

    private int RingSlotOf(long position) => (int)(position % RingSlots);

    /// <summary>The index of <paramref name="position"/> among the global tokens, negative when it is not one.</summary>
    private int PinnedIndexOf(long position) => position > int.MaxValue ? -1 : Array.BinarySearch(_pinnedPositions, (int)position);

    private void WriteSlot(long slot, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int offset = (int)(slot * HeadDim);
        switch (Element)
        {
            case CacheElement.Single:
                key.CopyTo(_keys.Slice(offset, HeadDim));
                value.CopyTo(_values.Slice(offset, HeadDim));
                break;
            case CacheElement.Half:
                Tensors.ElementConversion.FromSingle(key, System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, Half>(_narrowKeys.Slice(offset, HeadDim)));
                Tensors.ElementConversion.FromSingle(value, System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, Half>(_narrowValues.Slice(offset, HeadDim)));
                bool nonFinite = Tensors.ElementConversion.HoldsHalfInfinityOrNaN(_narrowKeys.Slice(offset, HeadDim)) || Tensors.ElementConversion.HoldsHalfInfinityOrNaN(_narrowValues.Slice(offset, HeadDim));
                if (nonFinite != _nonFiniteSlots[slot])
                {
                    _nonFiniteSlots[slot] = nonFinite;
                    _nonFiniteSlotsPerKvHead[slot / Capacity] += nonFinite ? 1 : -1;
                }

                break;
            default:
                Tensors.ElementConversion.FromSingle(key, System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, BFloat16>(_narrowKeys.Slice(offset, HeadDim)));
                Tensors.ElementConversion.FromSingle(value, System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, BFloat16>(_narrowValues.Slice(offset, HeadDim)));
                break;
        }
    }
}

/// <summary>How a <see cref="KvCache"/> stores keys and values.</summary>
public enum CacheElement
{
    /// <summary>fp32, as appended: decode reads 4 bytes per element.</summary>
    Single,

    /// <summary>IEEE half precision: half the memory and the bytes decode reads; 11 significant bits.</summary>
    Half,

    /// <summary>bfloat16 (<see cref="SparseAttention.BFloat16"/>): half the memory, fp32's range, 8 significant bits.</summary>
    BFloat16,
}
