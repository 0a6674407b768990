using System;
using System.Runtime.InteropServices;

namespace SparseAttention.Decode;

/// <summary>
/// Native memory for the large, long-lived buffers decode streams through. Decode reads every byte of a KV cache per
/// token; with 4 KiB pages a 32 MiB cache spans 8,192 pages, whose translations miss the TLB all the way, and the
/// hardware prefetchers stop at every page boundary. On Linux a buffer of 2 MiB or more is aligned to 2 MiB and marked
/// with <c>madvise(MADV_HUGEPAGE)</c>, so transparent huge pages back it where the system allows (the default
/// "madvise" mode does); with the decode kernel's longer prefetch distance, Mistral-shape decode at 64K took a median
/// 0.935x the time per token on a Zen 5 VM (BENCHMARKS.md). Elsewhere, or when the call fails, the memory is ordinary
/// pages: the advice changes speed, never results.
/// </summary>
internal static unsafe class LargePages
{
    /// <summary>The huge page size transparent huge pages use on x86-64 and (with 4 KiB base pages) arm64 Linux.</summary>
    public const long HugePageBytes = 2L << 20;

    private const int MadviseHugePage = 14;

    /// <summary>Zeroed memory of at least <paramref name="bytes"/> bytes (line-aligned; huge-page-aligned when that large); null for 0 bytes.</summary>
    public static Block? Allocate(long bytes)
    {
        if (bytes <= 0)
        {
            return null;
        }

        bool large = bytes >= HugePageBytes;
        long rounded = large ? (bytes + HugePageBytes - 1) / HugePageBytes * HugePageBytes : bytes;
        void* pointer = NativeMemory.AlignedAlloc((nuint)rounded, large ? (nuint)HugePageBytes : 64);
        if (large && OperatingSystem.IsLinux())
        {
            // Advice before the first touch: the clear below then faults the range in as huge pages where it can.
            AdviseHugePages(pointer, rounded);
        }

        NativeMemory.Clear(pointer, (nuint)rounded);
        return new Block(pointer, rounded);
    }

    /// <summary>Asks for huge pages; a C library without madvise (or that cannot be loaded) leaves ordinary pages.</summary>
    private static void AdviseHugePages(void* pointer, long bytes)
    {
        try
        {
            _ = Madvise((nint)pointer, (nuint)bytes, MadviseHugePage);
        }
        catch (Exception exception) when (exception is DllNotFoundException or EntryPointNotFoundException)
        {
            // Only speed depends on the advice.
        }
    }

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(nint address, nuint length, int advice);

    /// <summary>One allocation; freed by its finalizer, since a KV cache has no Dispose (it lives as long as its model).</summary>
    internal sealed class Block
    {
        private readonly long _bytes;

        public Block(void* pointer, long bytes)
        {
            Pointer = pointer;
            _bytes = bytes;
            // The GC sees only this small object; tell it how much native memory hangs on it, so it collects dropped caches.
            GC.AddMemoryPressure(bytes);
        }

        public void* Pointer { get; }

        ~Block()
        {
            NativeMemory.AlignedFree(Pointer);
            GC.RemoveMemoryPressure(_bytes);
        }
    }
}
