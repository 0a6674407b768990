using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace SparseAttention.Decode;

/// <summary>
/// Decode's software requests for cache lines it reads soon (x86's prefetch instructions, which never fault), and which
/// level of the core's caches they fill. Decode reads each byte of its cache once, from memory, so the requests are what
/// keeps the memory busy while the core computes; which level they should fill depends on the core, measured:
/// <list type="bullet">
/// <item>Zen 4 (AMD family 19h; one vCPU): requests into L1 (<c>prefetcht0</c>) decoded fp32 at 64K at 10.5-11.5 GB/s,
/// requests into L2 (<c>prefetcht1</c>) at 15.8-17.5 GB/s, where a plain sum streams 25-30; the distance ahead (one to eight
/// tiles) changed nothing. A request into L1 holds one of the core's few L1 miss buffers for the whole trip to memory, and
/// the key loads wait behind them.</item>
/// <item>Zen 5 (family 1Ah), with its 48 KiB L1: requests into L2 took 1.10x the time of requests into L1.</item>
/// <item>An Intel AVX-512 server part: no difference either way.</item>
/// </list>
/// So family 19h (Zen 3 and Zen 4, which share that L1 design) asks for L2, every other core for L1. Requests for every
/// line are needed: on the Zen 4, decode without them (the hardware prefetchers alone), or with requests for every other
/// line, took 1.03-1.36x the time in every key order tried; their cost is a cap near 17-19 GB/s per core. The environment
/// variable <c>SPARSEATTENTION_DECODE_REQUESTS</c> = <c>L1</c> or <c>L2</c> overrides the choice, so both can be measured on
/// a new core without a rebuild; it is read once, when decode first runs.
/// </summary>
internal static unsafe class LineRequests
{
    /// <summary>Whether requests fill L2 only (<c>prefetcht1</c>) rather than L1 (<c>prefetcht0</c>); a JIT-time constant once tiered up.</summary>
    public static readonly bool IntoL2 = ChooseL2(Environment.GetEnvironmentVariable("SPARSEATTENTION_DECODE_REQUESTS"), IsAmdFamily19h());

    /// <summary>Which level this process's requests fill, as the benchmarks print it.</summary>
    public static string Level => !Sse.IsSupported ? "none (no x86 prefetch)" : IntoL2 ? "L2 (prefetcht1)" : "L1 (prefetcht0)";

    /// <summary>A request for the 64-byte line at <paramref name="address"/>; nothing where x86's prefetch is not available.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Request(byte* address)
    {
        if (Sse.IsSupported)
        {
            if (IntoL2)
            {
                Sse.Prefetch1(address);
            }
            else
            {
                Sse.Prefetch0(address);
            }
        }
    }

    /// <summary>The choice: an explicit <c>L1</c> or <c>L2</c> in <paramref name="setting"/> (any case), else L2 on family 19h.</summary>
    internal static bool ChooseL2(string? setting, bool amdFamily19h) => setting?.Trim().ToUpperInvariant() switch
    {
        "L2" => true,
        "L1" => false,
        _ => amdFamily19h,
    };

    /// <summary>Whether this is an AMD core of family 19h (Zen 3, Zen 4): CPUID's vendor string and its displayed family.</summary>
    private static bool IsAmdFamily19h()
    {
        if (!X86Base.IsSupported)
        {
            return false;
        }

        (int _, int ebx, int ecx, int edx) = X86Base.CpuId(0, 0);
        // "AuthenticAMD" spread over EBX, EDX, ECX, four ASCII bytes each, little-endian.
        bool amd = ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163;
        if (!amd)
        {
            return false;
        }

        int signature = X86Base.CpuId(1, 0).Eax;
        int family = (signature >> 8) & 0xF;
        if (family == 0xF)
        {
            family += (signature >> 20) & 0xFF;
        }

        return family == 0x19;
    }
}
