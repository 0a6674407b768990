using System;

namespace SparseAttention.Cpu;

/// <summary>
/// Where each key position lives in a store of keys laid out as a ring followed by pinned slots: a position still in
/// the ring (at or after <see cref="Oldest"/>) sits at slot <c>(position - Origin) mod RingSlots</c>; an older one
/// must be a global token, kept in pinned slot <c>RingSlots + its index among the pattern's global tokens</c>.
/// The rolling cache is such a store (origin 0, wrapping); so is the linear scratch a prefill chunk runs against
/// (origin at its first position, never wrapping). Mapping a query's key segments through it turns
/// <see cref="AttentionPattern.GetKeySegments(int, int, int, Span{KeySegment}, int, out int)"/> into segments of slots
/// the row kernels read directly.
/// </summary>
internal readonly struct SlotMap
{
    private readonly int[] _pinnedPositions;

    public SlotMap(long origin, int ringSlots, long oldest, int[] pinnedPositions)
    {
        Origin = origin;
        RingSlots = ringSlots;
        Oldest = oldest;
        _pinnedPositions = pinnedPositions;
    }

    /// <summary>The position whose slot is 0 (and every RingSlots after it).</summary>
    public long Origin { get; }

    /// <summary>Slots in the ring; pinned slots follow them.</summary>
    public int RingSlots { get; }

    /// <summary>The oldest position still in the ring.</summary>
    public long Oldest { get; }

    /// <summary>Segments one query's mapped keys can need: each position segment splits at the ring's end at most once, pinned runs add at most one per global token.</summary>
    public static int MaxSlotSegments(AttentionPattern pattern) => 2 * pattern.MaxSegmentsPerQuery + pattern.GlobalTokens.Count;

    /// <summary>
    /// Writes <paramref name="positions"/> (disjoint key segments, in positions) as segments of slots and returns how
    /// many it wrote, and in <paramref name="firstPositions"/> the position of each slot segment's first key (a slot
    /// segment's keys are positions first, first + step, ...: pinned slots merge only when their positions are adjacent
    /// too). Every position must be in the ring or pinned; anything else means the store was built wrong.
    /// </summary>
    public int ToSlots(ReadOnlySpan<KeySegment> positions, Span<KeySegment> destination, Span<int> firstPositions)
    {
        int count = 0;
        foreach (KeySegment segment in positions)
        {
            long first = segment.Start;
            int remaining = segment.Count;

            // Positions that have left the ring: global tokens, read from their pinned slots; neighbours merge.
            int pinnedFrom = count;
            while (remaining > 0 && first < Oldest)
            {
                int index = Array.BinarySearch(_pinnedPositions, (int)first);
                if (index < 0)
                {
                    throw new InvalidOperationException($"Key position {first} left the ring and is not a global token; the KV store does not hold it.");
                }

                int slot = RingSlots + index;
                if (count > pinnedFrom && destination[count - 1].Step == 1 && destination[count - 1].Last == slot - 1
                    && firstPositions[count - 1] + destination[count - 1].Count == first)
                {
                    KeySegment run = destination[count - 1];
                    destination[count - 1] = new KeySegment(run.Start, 1, run.Count + 1);
                }
                else
                {
                    firstPositions[count] = (int)first;
                    destination[count++] = new KeySegment(slot, 1, 1);
                }

                first += segment.Step;
                remaining--;
            }

            // The rest is in the ring: one run up to the ring's end, the remainder from its start. A segment spans
            // less than the ring, so it wraps at most once.
            if (remaining > 0)
            {
                int slot = RingSlot(first);
                int beforeWrap = (int)Math.Min(remaining, (RingSlots - 1L - slot) / segment.Step + 1);
                firstPositions[count] = (int)first;
                destination[count++] = new KeySegment(slot, segment.Step, beforeWrap);
                if (remaining > beforeWrap)
                {
                    long wrapped = first + (long)beforeWrap * segment.Step;
                    firstPositions[count] = (int)wrapped;
                    destination[count++] = new KeySegment(RingSlot(wrapped), segment.Step, remaining - beforeWrap);
                }
            }
        }

        return count;
    }

    public int RingSlot(long position) => (int)((position - Origin) % RingSlots);
}
