namespace SparseAttention.Benchmarks;

/// <summary>The benchmark program's `--name value` options.</summary>
internal static class CommandLine
{
    /// <summary>The value after <paramref name="name"/>, or null when the option is absent.</summary>
    public static string? Argument(string[] args, string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
}
