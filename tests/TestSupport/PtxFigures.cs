using System.Text.RegularExpressions;

namespace SparseAttention.Testing;

/// <summary>
/// Counts read from one kernel's PTX (a static count over the code, not a dynamic one): local-memory traffic, which a
/// per-lane array indexed by a loop counter would cause; shared loads and multiply-adds, whose ratio says how well the
/// register-blocked micro-tiles reuse each load; and the static shared memory. ILGPU writes a * b + c as mul.f32 and
/// add.f32 without a rounding modifier, which ptxas contracts into one FMA (its default, --fmad=true), so a multiply-add
/// is a plain mul.f32 or an fma; a mul.rn.f32 would forbid the contraction and is counted apart. Shared by the PTX tests
/// and the benchmark program's `--gpu-ptx`.
/// </summary>
public sealed record PtxFigures(string Name, string Architecture, int LocalLoads, int LocalStores, int LocalDeclarations, int SharedLoads, int VectorSharedLoads, int MultiplyAdds, int RoundedMultiplies, int Exp2s, int Shuffles, int SharedBytes)
{
    public double MultiplyAddsPerSharedLoad => SharedLoads == 0 ? 0 : (double)MultiplyAdds / SharedLoads;

    public static PtxFigures Of(string name, string architecture, string ptx) => new(
        name,
        architecture,
        Count(ptx, @"\bld\.local\b"),
        Count(ptx, @"\bst\.local\b"),
        Count(ptx, @"^\s*\.local\b"),
        Count(ptx, @"\bld\.shared\b"),
        Count(ptx, @"\bld\.shared\.v4\b"),
        Count(ptx, @"\bfma\.rn\.f32\b") + Count(ptx, @"\bmul\.f32\b"),
        Count(ptx, @"\bmul\.r[nzmp]\.f32\b"),
        Count(ptx, @"\bex2\.approx"),
        Count(ptx, @"\bshfl\.sync\.bfly"),
        Regex.Matches(ptx, @"\.shared\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]").Sum(match => int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)));

    public override string ToString() =>
        $"{Name} {Architecture}: {MultiplyAdds} multiply-adds / {SharedLoads} ld.shared ({VectorSharedLoads} .v4) = {MultiplyAddsPerSharedLoad:F1} per shared load; " +
        $"{LocalLoads} ld.local, {LocalStores} st.local, {LocalDeclarations} .local; {Exp2s} ex2.approx, {Shuffles} shfl.sync.bfly; {SharedBytes} B shared";

    private static int Count(string ptx, string pattern) => Regex.Matches(ptx, pattern, RegexOptions.Multiline).Count;
}
