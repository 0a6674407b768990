using System;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Half = System.Half;

namespace SparseAttention.Gpu;

/// <summary>
/// ILGPU calls that stage their inputs in fp32 buffers on the device before the declaration's kernel runs: views of
/// <see cref="System.Half"/> and <see cref="BFloat16"/> (widened by small conversion kernels, once per element, the output
/// narrowed back, round to nearest even), and packed variable-length sequences (each sequence's rows copied into a call
/// of its own). The staging buffers are kept per accelerator, and one call's copies and launches are queued under a lock,
/// so concurrent callers on one accelerator cannot interleave their use of them.
/// </summary>
public static class GpuStagedForward
{
    private static readonly ConditionalWeakTable<Accelerator, Staging> s_staging = new();

    /// <summary>
    /// Queues attention over views of <typeparamref name="T"/> (float, <see cref="System.Half"/> or <see cref="BFloat16"/>)
    /// with the layouts of the fp32 view overload; returns without waiting. The views must be validated (lengths,
    /// accelerator, overlap).
    /// </summary>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not an element type attention takes (named <c>query</c>).</exception>
    public static void Forward<T>(GpuAttentionKernel kernel, Accelerator accelerator, AttentionPattern pattern, ArrayView<T> query, ArrayView<T> key, ArrayView<T> value, ArrayView<T> output, AttentionShape shape, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (typeof(T) == typeof(float))
        {
            kernel.Launch(accelerator, pattern, query.Cast<float>(), key.Cast<float>(), value.Cast<float>(), output.Cast<float>(), shape, scale, scores, options, sinkLogits, default);
            return;
        }

        if (typeof(T) != typeof(Half) && typeof(T) != typeof(BFloat16))
        {
            throw Tensors.ElementConversion.Unsupported<T>(nameof(query));
        }

        bool half = typeof(T) == typeof(Half);
        Staging staging = s_staging.GetValue(accelerator, _ => new Staging());
        lock (staging)
        {
            ArrayView<float> q = staging.View(accelerator, 0, query.Length), k = staging.View(accelerator, 1, key.Length);
            ArrayView<float> v = staging.View(accelerator, 2, value.Length), o = staging.View(accelerator, 3, output.Length);
            Action<Index1D, ArrayView<ushort>, ArrayView<float>> widen = half ? staging.WidenHalf(accelerator) : staging.WidenBFloat16(accelerator);
            widen((int)query.Length, query.Cast<ushort>(), q);
            widen((int)key.Length, key.Cast<ushort>(), k);
            widen((int)value.Length, value.Cast<ushort>(), v);
            kernel.Launch(accelerator, pattern, q, k, v, o, shape, scale, scores, options, sinkLogits, default);
            (half ? staging.NarrowHalf(accelerator) : staging.NarrowBFloat16(accelerator))((int)output.Length, o, output.Cast<ushort>());
        }
    }

    /// <summary>
    /// Queues attention over packed variable-length sequences in fp32 device views ([Heads, totalRows, HeadDim], keys with
    /// KvHeads; sequence i is rows [sequenceStarts[i], sequenceStarts[i + 1])): each sequence's rows of every head are
    /// copied on the device into staging buffers laid out as a call of its own, run, and copied back. The arguments must
    /// be validated (views, shape with Batch 1, sequence starts).
    /// </summary>
    public static void ForwardPacked(GpuAttentionKernel kernel, Accelerator accelerator, AttentionPattern pattern, int headDim, ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output, AttentionShape shape, ReadOnlySpan<int> sequenceStarts, float scale, ScoreModifiers scores, AttentionOptions options, ReadOnlySpan<float> sinkLogits)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        int total = shape.SeqLen;
        Staging staging = s_staging.GetValue(accelerator, _ => new Staging());
        lock (staging)
        {
            for (int i = 0; i + 1 < sequenceStarts.Length; i++)
            {
                int first = sequenceStarts[i], rows = sequenceStarts[i + 1] - first;
                if (rows == 0)
                {
                    continue;
                }

                long rowFloats = (long)rows * headDim;
                ArrayView<float> q = staging.View(accelerator, 0, shape.Heads * rowFloats), k = staging.View(accelerator, 1, shape.KvHeads * rowFloats);
                ArrayView<float> v = staging.View(accelerator, 2, shape.KvHeads * rowFloats), o = staging.View(accelerator, 3, shape.Heads * rowFloats);
                for (int head = 0; head < shape.Heads; head++)
                {
                    query.SubView(((long)head * total + first) * headDim, rowFloats).CopyTo(q.SubView(head * rowFloats, rowFloats));
                }

                for (int head = 0; head < shape.KvHeads; head++)
                {
                    key.SubView(((long)head * total + first) * headDim, rowFloats).CopyTo(k.SubView(head * rowFloats, rowFloats));
                    value.SubView(((long)head * total + first) * headDim, rowFloats).CopyTo(v.SubView(head * rowFloats, rowFloats));
                }

                kernel.Launch(accelerator, pattern, q, k, v, o, shape with { SeqLen = rows }, scale, scores, options, sinkLogits, default);
                for (int head = 0; head < shape.Heads; head++)
                {
                    o.SubView(head * rowFloats, rowFloats).CopyTo(output.SubView(((long)head * total + first) * headDim, rowFloats));
                }
            }
        }
    }

    /// <summary>Half bits to float: exponent and mantissa shifted into place and rescaled by 2^112 (denormals too); exponent 31 stays inf/NaN.</summary>
    internal static void WidenHalfKernel(Index1D index, ArrayView<ushort> source, ArrayView<float> destination)
    {
        uint half = source[index];
        uint magnitude = half & 0x7FFFu;
        uint bits = magnitude >= 0x7C00u
            ? (magnitude << 13) | 0x7F800000u
            : Interop.FloatAsInt(Interop.IntAsFloat(magnitude << 13) * 5.192296858534828e+33f);
        destination[index] = Interop.IntAsFloat(bits | ((half & 0x8000u) << 16));
    }

    internal static void WidenBFloat16Kernel(Index1D index, ArrayView<ushort> source, ArrayView<float> destination) =>
        destination[index] = Interop.IntAsFloat((uint)source[index] << 16);

    /// <summary>Float to Half bits, rounding to nearest even; overflow to infinity, underflow through Half's denormals to zero, NaN kept quiet.</summary>
    internal static void NarrowHalfKernel(Index1D index, ArrayView<float> source, ArrayView<ushort> destination) =>
        destination[index] = HalfBits(source[index]);

    internal static void NarrowBFloat16Kernel(Index1D index, ArrayView<float> source, ArrayView<ushort> destination) =>
        destination[index] = BFloat16.RoundBits(Interop.FloatAsInt(source[index]));

    /// <summary>The nearest Half (ties to even) of <paramref name="value"/>, as bits.</summary>
    internal static ushort HalfBits(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        uint sign = (bits >> 16) & 0x8000u;
        uint magnitude = bits & 0x7FFFFFFFu;
        if (magnitude > 0x7F800000u)
        {
            return (ushort)(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu)); // NaN, quiet
        }

        if (magnitude >= 0x477FF000u)
        {
            return (ushort)(sign | 0x7C00u); // rounds past 65504: infinity
        }

        if (magnitude < 0x38800000u)
        {
            // Below Half's smallest normal (2^-14): a denormal or zero. Half's denormal unit is 2^-24, so the result is
            // value x 2^24 rounded to an integer (ties to even), done on the mantissa with its implicit bit.
            if (magnitude < 0x33000000u)
            {
                return (ushort)sign; // below half of 2^-24: zero
            }

            uint exponent = magnitude >> 23;
            uint mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
            int shift = 126 - (int)exponent; // 14..24: the mantissa's 24 bits down to units of 2^-24
            uint kept = mantissa >> shift;
            uint rest = mantissa & ((1u << shift) - 1u);
            uint halfway = 1u << (shift - 1);
            if (rest > halfway || (rest == halfway && (kept & 1u) != 0))
            {
                kept++;
            }

            return (ushort)(sign | kept);
        }

        // Normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, ties to even; a carry into the
        // exponent is the right result (up to infinity, excluded above).
        uint rounded = magnitude - 0x38000000u + 0xFFFu + ((magnitude >> 13) & 1u);
        return (ushort)(sign | (rounded >> 13));
    }

    /// <summary>One accelerator's four fp32 staging buffers and loaded conversion kernels.</summary>
    private sealed class Staging
    {
        private readonly MemoryBuffer1D<float, Stride1D.Dense>?[] _buffers = new MemoryBuffer1D<float, Stride1D.Dense>?[4];
        private Action<Index1D, ArrayView<ushort>, ArrayView<float>>? _widenHalf, _widenBFloat16;
        private Action<Index1D, ArrayView<float>, ArrayView<ushort>>? _narrowHalf, _narrowBFloat16;

        public ArrayView<float> View(Accelerator accelerator, int which, long length)
        {
            if (_buffers[which] is not { } buffer || buffer.Length < length)
            {
                // Work queued before still uses the old buffer: let it finish first.
                accelerator.Synchronize();
                _buffers[which]?.Dispose();
                _buffers[which] = buffer = accelerator.Allocate1D<float>(Math.Max(1, length));
            }

            return buffer.View.SubView(0, length);
        }

        public Action<Index1D, ArrayView<ushort>, ArrayView<float>> WidenHalf(Accelerator accelerator) =>
            _widenHalf ??= accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<float>>(WidenHalfKernel);

        public Action<Index1D, ArrayView<ushort>, ArrayView<float>> WidenBFloat16(Accelerator accelerator) =>
            _widenBFloat16 ??= accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<float>>(WidenBFloat16Kernel);

        public Action<Index1D, ArrayView<float>, ArrayView<ushort>> NarrowHalf(Accelerator accelerator) =>
            _narrowHalf ??= accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>>(NarrowHalfKernel);

        public Action<Index1D, ArrayView<float>, ArrayView<ushort>> NarrowBFloat16(Accelerator accelerator) =>
            _narrowBFloat16 ??= accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>>(NarrowBFloat16Kernel);
    }
}
