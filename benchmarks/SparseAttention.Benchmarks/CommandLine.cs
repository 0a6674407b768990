namespace SparseAttention.Benchmarks;

/// <summary>The benchmark program's `--name value` options.</summary>
internal static class CommandLine
{
    /// <summary>The value after <paramref name="name"/>, or null when the option is absent.</summary>
    public static string? Argument(string[] args, string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();

    /// <summary>The kernel ISA `--isa X` forces (Vector512, Vector256, Vector128, Scalar), or Auto when absent.</summary>
    public static KernelIsa Isa(string[] args) => Enum.Parse<KernelIsa>(Argument(args, "--isa") ?? "Auto", ignoreCase: true);

    /// <summary>
    /// The ISA a run's kernels use, marked "(forced)" when `--isa` chose it, and how many vector registers the JIT gives
    /// them (the 256- and 128-bit kernels' P·V passes depend on it).
    /// </summary>
    public static string IsaDescription(AttentionOptions options) =>
        $"{options.ResolveIsa()}{(options.Isa == KernelIsa.Auto ? "" : " (forced)")}, {(SparseAttention.Cpu.VectorRegisters.ThirtyTwo ? 32 : 16)} vector registers";
}
