using System;

namespace SparseAttention
{
    /// <summary>
    /// Arithmetic on <see cref="KeySegment"/>s: what a component's keys are once the keys of earlier components are taken
    /// out. Both operands are arithmetic runs, so their intersection is one too (a linear congruence), and what is left is
    /// a run before it, a run after it, and the gaps between its elements, written as whichever takes fewer segments:
    /// one run per gap, or one run per residue of the intersection's period. See docs/design.md §2.3.
    /// </summary>
    internal static class KeySegmentMath
    {
        /// <summary>
        /// The most pieces <see cref="Subtract"/> can cut one segment into when it removes a run of step
        /// <paramref name="removedStep"/>: the part before, the part after, and at most <c>removedStep - 1</c> gap runs.
        /// </summary>
        public static long MaxPieces(long removedStep) => removedStep + 1;

        /// <summary>
        /// Writes <paramref name="piece"/> without the keys of <paramref name="removed"/> as disjoint segments and returns how
        /// many it wrote (0 when nothing is left). <paramref name="destination"/> needs
        /// <see cref="MaxPieces"/>(removed.Step) entries.
        /// </summary>
        public static int Subtract(KeySegment piece, KeySegment removed, Span<KeySegment> destination)
        {
            long low = Math.Max(piece.Start, removed.Start), high = Math.Min(piece.Last, removed.Last);
            if (piece.Count == 0)
            {
                return 0;
            }

            if (low > high || removed.Count == 0)
            {
                destination[0] = piece;
                return 1;
            }

            // Two quick cases the general congruence below also covers: a single key (a global column), and two runs of
            // step 1 (a window over a block). They are most of the subtractions a row tail does.
            if (piece.Count == 1)
            {
                if (((long)piece.Start - removed.Start) % removed.Step == 0)
                {
                    return 0;
                }

                destination[0] = piece;
                return 1;
            }

            if (piece.Step == 1 && removed.Step == 1)
            {
                int kept = 0;
                if (low > piece.Start)
                {
                    destination[kept++] = new KeySegment(piece.Start, 1, (int)(low - piece.Start));
                }

                if (high < piece.Last)
                {
                    destination[kept++] = new KeySegment((int)(high + 1), 1, (int)(piece.Last - high));
                }

                return kept;
            }

            // Keys of the piece are Start + Step t; those also in the removed run solve Step t ≡ removed.Start - Start (mod removed.Step).
            long gcd = Gcd(piece.Step, removed.Step);
            long difference = (long)removed.Start - piece.Start;
            if (Mod(difference, gcd) != 0)
            {
                destination[0] = piece;
                return 1;
            }

            long period = removed.Step / gcd;
            long firstSolution = period == 1 ? 0 : Mod(Mod(difference / gcd, period) * ModInverse(Mod(piece.Step / gcd, period), period), period);
            long tLow = CeilDiv(low - piece.Start, piece.Step), tHigh = FloorDiv(high - piece.Start, piece.Step);
            long tFirst = tLow + Mod(firstSolution - tLow, period);
            if (tFirst > tHigh)
            {
                destination[0] = piece;
                return 1;
            }

            long tLast = tFirst + (tHigh - tFirst) / period * period;
            long hits = (tLast - tFirst) / period + 1;
            int count = 0;
            if (tFirst > 0)
            {
                destination[count++] = new KeySegment(piece.Start, piece.Step, (int)tFirst);
            }

            if (period > 1 && hits > 1)
            {
                if (hits - 1 <= period - 1)
                {
                    // Few removed keys: the gap after each one is a run of period - 1 keys.
                    for (long t = tFirst; t < tLast; t += period)
                    {
                        destination[count++] = new KeySegment((int)(piece.Start + piece.Step * (t + 1)), piece.Step, (int)(period - 1));
                    }
                }
                else
                {
                    // Many removed keys: every other residue of the period is one long run of step Step x period.
                    for (long u = 1; u < period; u++)
                    {
                        long runCount = (tLast - 1 - (tFirst + u)) / period + 1;
                        destination[count++] = new KeySegment((int)(piece.Start + piece.Step * (tFirst + u)), (int)(piece.Step * period), (int)runCount);
                    }
                }
            }

            if (tLast < piece.Count - 1)
            {
                destination[count++] = new KeySegment((int)(piece.Start + piece.Step * (tLast + 1)), piece.Step, (int)(piece.Count - 1 - tLast));
            }

            return count;
        }

        /// <summary>
        /// The part of <paramref name="segment"/> inside [<paramref name="first"/>, <paramref name="last"/>], or a segment of
        /// count 0 when none is.
        /// </summary>
        public static KeySegment Clip(KeySegment segment, long first, long last)
        {
            if (segment.Count == 0)
            {
                return segment;
            }

            long tFirst = Math.Max(0, CeilDiv(first - segment.Start, segment.Step));
            long tLast = Math.Min(segment.Count - 1L, FloorDiv(last - segment.Start, segment.Step));
            return tFirst > tLast
                ? new KeySegment(segment.Start, segment.Step, 0)
                : new KeySegment((int)(segment.Start + segment.Step * tFirst), segment.Step, (int)(tLast - tFirst + 1));
        }

        /// <summary>A run from <paramref name="first"/> to at most <paramref name="last"/> in steps of <paramref name="step"/>; empty when first &gt; last.</summary>
        public static KeySegment Run(long first, long last, long step) =>
            first > last ? new KeySegment((int)Math.Max(0, Math.Min(first, int.MaxValue)), (int)step, 0) : new KeySegment((int)first, (int)step, (int)((last - first) / step + 1));

        public static long Mod(long value, long modulus) => ((value % modulus) + modulus) % modulus;

        public static long FloorDiv(long value, long divisor) => value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor);

        public static long CeilDiv(long value, long divisor) => -FloorDiv(-value, divisor);

        public static long Gcd(long a, long b)
        {
            while (b != 0)
            {
                long t = a % b;
                a = b;
                b = t;
            }

            return Math.Abs(a);
        }

        /// <summary>The inverse of <paramref name="value"/> mod <paramref name="modulus"/> (they are coprime), by extended Euclid.</summary>
        private static long ModInverse(long value, long modulus)
        {
            long oldR = value, r = modulus, oldS = 1, s = 0;
            while (r != 0)
            {
                long quotient = oldR / r;
                (oldR, r) = (r, oldR - quotient * r);
                (oldS, s) = (s, oldS - quotient * s);
            }

            return Mod(oldS, modulus);
        }

        /// <summary>
        /// The first key of <paramref name="segments"/> (in ascending order of their starts) in [<paramref name="first"/>,
        /// <paramref name="end"/>) and the step of the segment it is in, as the first part <see cref="Clip(ReadOnlySpan{KeySegment}, ReadOnlySpan{int}, int, int, int, Span{KeySegment}, Span{int})"/> writes would start; false
        /// when no key lies there. Decode asks where a thread's next block of slots starts, to request it in advance.
        /// </summary>
        internal static bool FirstKeyIn(ReadOnlySpan<KeySegment> segments, int first, int end, out int key, out int step)
        {
            foreach (KeySegment segment in segments)
            {
                long index = FirstIndexAtOrAfter(segment, first);
                long candidate = segment.Start + index * segment.Step;
                if (index < segment.Count && candidate < end)
                {
                    key = (int)candidate;
                    step = segment.Step;
                    return true;
                }
            }

            key = 0;
            step = 0;
            return false;
        }

        /// <summary>The index in <paramref name="segment"/> of its first key at or after <paramref name="first"/> (Count or more when none is).</summary>
        private static long FirstIndexAtOrAfter(KeySegment segment, int first) =>
            segment.Start >= first ? 0 : ((long)first - segment.Start + segment.Step - 1) / segment.Step;

        /// <summary>
        /// The parts of <paramref name="segments"/> whose keys lie in [<paramref name="first"/>, <paramref name="end"/>), moved
        /// down by <paramref name="shift"/>, and in <paramref name="destinationPositions"/> the position of each part's first
        /// key: from <paramref name="positions"/> (each segment's first position, when the segments are slots) or, when that is
        /// empty, the segment's own keys. Returns how many parts it wrote (at most one per segment). Decode clips slot segments
        /// to a block of slots; a partial call cuts a row's segments to its key range.
        /// </summary>
        internal static int Clip(ReadOnlySpan<KeySegment> segments, ReadOnlySpan<int> positions, int first, int end, int shift, Span<KeySegment> destination, Span<int> destinationPositions)
        {
            int written = 0;
            for (int index = 0; index < segments.Length; index++)
            {
                KeySegment segment = segments[index];
                long firstIndex = FirstIndexAtOrAfter(segment, first);
                long lastIndex = segment.Last < end ? segment.Count - 1 : ((long)end - 1 - segment.Start) / segment.Step;
                if (segment.Start < end && firstIndex <= lastIndex)
                {
                    int start = (int)(segment.Start + firstIndex * segment.Step);
                    destinationPositions[written] = positions.IsEmpty ? start : (int)(positions[index] + firstIndex * segment.Step);
                    destination[written++] = new KeySegment(start - shift, segment.Step, (int)(lastIndex - firstIndex + 1));
                }
            }

            return written;
        }
}
}
