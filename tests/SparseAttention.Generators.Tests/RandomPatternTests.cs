using System.Reflection;
using System.Text;
using SparseAttention.Testing;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// Differential property test: random declarations are generated, compiled in one in-memory compilation,
/// loaded into a collectible AssemblyLoadContext, and every kernel — its SIMD form on a random ISA and its ILGPU
/// form on ILGPU's CPU accelerator — is compared to the reference on random shapes. The declared pattern is also
/// rebuilt independently to prove the generator read it right.
/// </summary>
public class RandomPatternTests
{
    /// <summary>A [FixedFactorized] declaration's values.</summary>
    private sealed record FixedValues(int Block, int Summary, bool VaryByHead);

    /// <summary>A [BlockSparse] declaration's values.</summary>
    private sealed record BlockValues(int BlockSize, int WindowBlocks, int[] GlobalBlocks, int RandomBlocks, long Seed);

    /// <summary>
    /// A random declaration. <paramref name="MaskModulus"/> (0: none) declares [AttentionMask] hiding pairs with
    /// (query + 2 key + head) mod it = 0, except a query's own key; <paramref name="ScoreMod"/> declares a score mod that
    /// scales and shifts each score by its arguments.
    /// </summary>
    private sealed record Declaration(string Name, int HeadDim, bool Causal, int? Left, int? Right, int? Size, int[] Dilation, int[] Globals, int? Stride, FixedValues? Fixed, BlockValues? Blocks, float? Softcap = null, bool Alibi = false, int MaskModulus = 0, bool ScoreMod = false)
    {
        /// <summary>The pattern built from the declared values through the runtime's constructors, not the generator.</summary>
        public AttentionPattern Expected
        {
            get
            {
                var classic = new AttentionPattern(Causal, Size is int size ? size - 1 : Left ?? (Right is null ? null : 0), Size is not null ? 0 : Right ?? (Left is null ? null : 0), Dilation, Globals, Stride);
                var components = new List<PatternComponent>(classic.Components);
                if (Fixed is { } f) components.Add(new FixedFactorizedComponent(f.Block, f.Summary, f.VaryByHead));
                if (Blocks is { } b) components.Add(new BlockSparseComponent(b.BlockSize, b.WindowBlocks, b.GlobalBlocks, b.RandomBlocks, b.Seed, Causal));
                var pattern = new AttentionPattern(Causal, components);
                int modulus = MaskModulus;
                return modulus == 0 ? pattern : pattern.WithMask((query, key, head) => query == key || (query + 2 * key + head) % modulus != 0);
            }
        }

        public string Source()
        {
            var text = new StringBuilder();
            text.Append("[AttentionKernel(HeadDim = ").Append(HeadDim).Append(Causal ? "" : ", Causal = false").AppendLine(")]");
            if (Size is int size)
            {
                text.Append("[SlidingWindow(Size = ").Append(size).AppendLine(")]");
            }
            else if (Left is not null || Right is not null)
            {
                var arguments = new List<string>();
                if (Left is int left) arguments.Add("Left = " + left);
                if (Right is int right) arguments.Add("Right = " + right);
                text.Append("[SlidingWindow(").Append(string.Join(", ", arguments)).AppendLine(")]");
            }

            if (Dilation.Length > 0) text.Append("[Dilation(").Append(string.Join(", ", Dilation)).AppendLine(")]");
            if (Globals.Length > 0) text.Append("[GlobalTokens(").Append(string.Join(", ", Globals)).AppendLine(")]");
            if (Stride is int stride) text.Append("[Strided(Stride = ").Append(stride).AppendLine(")]");
            if (Fixed is { } f) text.Append("[FixedFactorized(Block = ").Append(f.Block).Append(", Summary = ").Append(f.Summary).Append(f.VaryByHead ? ", VaryByHead = true" : "").AppendLine(")]");
            if (Blocks is { } b)
            {
                text.Append("[BlockSparse(BlockSize = ").Append(b.BlockSize).Append(", WindowBlocks = ").Append(b.WindowBlocks)
                    .Append(", GlobalBlocks = new int[] { ").Append(string.Join(", ", b.GlobalBlocks)).Append(" }, RandomBlocks = ").Append(b.RandomBlocks)
                    .Append(", Seed = ").Append(b.Seed).AppendLine(")]");
            }

            if (Softcap is float cap) text.Append("[Softcap(").Append(cap.ToString("R", System.Globalization.CultureInfo.InvariantCulture)).AppendLine("f)]");
            if (Alibi) text.AppendLine("[Alibi]");
            if (MaskModulus > 0) text.AppendLine("[AttentionMask(nameof(Hide))]");
            if (ScoreMod) text.AppendLine("[ScoreMod(nameof(Shift))]");
            text.Append("public static partial class ").Append(Name).AppendLine(" {");
            if (MaskModulus > 0) text.Append("    static bool Hide(int query, int key, int head) => query == key || (query + 2 * key + head) % ").Append(MaskModulus).AppendLine(" != 0;");
            if (ScoreMod) text.AppendLine("    static float Shift(float score, int query, int key, int head) => 0.75f * score + 0.05f * ((query - key + head) % 5);");
            text.AppendLine("}");
            return text.ToString();
        }
    }

    private static Declaration RandomDeclaration(Random random, int index)
    {
        int[] headDims = { 8, 16, 24, 32, 40, 56, 64, 72, 96, 128, 136, 256 };
        int windowKind = random.Next(4);
        int? size = windowKind == 1 ? random.Next(1, 80) : null;
        int? left = windowKind == 2 ? random.Next(0, 80) : windowKind == 3 && random.Next(2) == 0 ? random.Next(0, 80) : null;
        int? right = windowKind == 2 || windowKind == 3 ? random.Next(0, 40) : null;
        bool dilated = windowKind != 0 && random.Next(3) == 0;
        return new Declaration(
            "Random" + index,
            headDims[random.Next(headDims.Length)],
            random.Next(2) == 0,
            left,
            right,
            size,
            dilated ? Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(1, 5)).ToArray() : Array.Empty<int>(),
            random.Next(3) == 0 ? Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(0, 150)).ToArray() : Array.Empty<int>(),
            random.Next(4) == 0 ? random.Next(1, 20) : null,
            random.Next(5) == 0 ? RandomFixed(random) : null,
            random.Next(5) == 0 ? new BlockValues(random.Next(1, 90), random.Next(0, 3), Enumerable.Range(0, random.Next(0, 3)).Select(_ => random.Next(-3, 5)).ToArray(), random.Next(0, 4), random.NextInt64(long.MinValue, long.MaxValue)) : null,
            random.Next(4) == 0 ? random.Next(1, 40) / 4f : null,
            random.Next(4) == 0,
            random.Next(4) == 0 ? random.Next(2, 7) : 0,
            random.Next(4) == 0);
    }

    private static FixedValues RandomFixed(Random random)
    {
        int summary = random.Next(1, 9);
        bool varyByHead = random.Next(2) == 0;
        return new FixedValues(varyByHead ? summary * random.Next(1, 6) : random.Next(summary, 90), summary, varyByHead);
    }

    [Fact]
    public void RandomDeclarationsCompileLoadAndMatchTheReference()
    {
        var random = new Random(2026);
        Declaration[] declarations = Enumerable.Range(0, 48).Select(index => RandomDeclaration(random, index)).ToArray();
        string source = "using SparseAttention;\nnamespace Generated;\n" + string.Join("\n", declarations.Select(declaration => declaration.Source()));

        GeneratorHarness.Result result = GeneratorHarness.Run(source);
        Assert.Empty(result.GeneratorDiagnostics);
        // Load emits the compilation and fails with its errors: asking the compilation for its diagnostics first bound all
        // 48 kernels once more (the test took 57 s alone, 54 s without it).
        (Assembly assembly, System.Runtime.Loader.AssemblyLoadContext context) = GeneratorHarness.Load(result.Output);
        using AttentionDevice ilgpuCpu = AttentionDevice.Create(AttentionBackend.IlgpuCpu);
        try
        {
            foreach (Declaration declaration in declarations)
            {
                CheckKernel(assembly.GetType("Generated." + declaration.Name)!, declaration, random, ilgpuCpu.Accelerator!);
            }
        }
        finally
        {
            context.Unload();
        }
    }

    private static void CheckKernel(Type type, Declaration declaration, Random random, ILGPU.Runtime.Accelerator accelerator)
    {
        KernelUnderTest kernel = KernelUnderTest.FromType(type);
        AttentionPattern pattern = kernel.Pattern;
        Assert.Equal(declaration.HeadDim, kernel.HeadDim);
        AttentionPattern declared = declaration.Expected;
        for (int head = 0; head < 3; head++)
        {
            for (int query = 0; query < 60; query++)
            {
                for (int key = 0; key < 60; key++)
                {
                    Assert.True(declared.IsVisible(query, key, head, 60) == pattern.IsVisible(query, key, head, 60), $"{declaration}: generated Pattern disagrees at ({query}, {key}, head {head})");
                }
            }
        }

        foreach (int seqLen in new[] { 1 + random.Next(5), 20 + random.Next(140) })
        {
            AttentionShape shape = AttentionCheck.RandomShape(random, seqLen);
            AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, declaration.HeadDim);
            KernelIsa isa = AttentionCheck.AllIsas[random.Next(AttentionCheck.AllIsas.Length)];
            float[] expected = AttentionCheck.Reference(kernel, inputs);
            AttentionCheck.AssertClose(expected, AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa }), shape, declaration.HeadDim, $"{declaration} {isa} {shape}");
            if (!kernel.HasUserCode)
            {
                // The ILGPU kernel does not run a mask or score mod yet (its overloads refuse them).
                AttentionCheck.AssertClose(expected, AttentionCheck.RunOnAccelerator(kernel, inputs, accelerator), shape, declaration.HeadDim, $"{declaration} ILGPU CPU {shape}");
            }
        }

        CheckNonFiniteInputs(kernel, declaration, random, accelerator);

        // A shape whose size wraps 64 bits is refused with its true size, whatever the pattern (docs/design.md §5).
        var wrapping = new AttentionShape(1 << 30, 1 << 30, 1 << 29);
        var exception = Assert.Throws<ArgumentException>(() => kernel.Forward(default, default, default, default, wrapping, AttentionOptions.Default));
        Assert.Equal("shape", exception.ParamName);
        Assert.Contains(((System.Int128)(1 << 30) * (1 << 29) * declaration.HeadDim).ToString(System.Globalization.CultureInfo.InvariantCulture), exception.Message);
    }

    /// <summary>
    /// The NaN/Inf policy (docs/design.md §4) on a random pattern: one random poison (NaN in a key, +inf in a value, a
    /// q·k overflowing fp32, or a huge but finite value) at a random position; a random ISA and the ILGPU kernel must
    /// give the reference's NaN rows and, on the others, its values.
    /// </summary>
    private static void CheckNonFiniteInputs(KernelUnderTest kernel, Declaration declaration, Random random, ILGPU.Runtime.Accelerator accelerator)
    {
        AttentionShape shape = AttentionCheck.RandomShape(random, 10 + random.Next(90));
        AttentionCheck.Inputs inputs = AttentionCheck.RandomInputs(random, shape, declaration.HeadDim);
        int position = random.Next(shape.SeqLen), d = declaration.HeadDim;
        int kvOffset = position * d, queryOffset = position * d; // KV head 0 and query head 0, which reads it
        string poison;
        switch (random.Next(4))
        {
            case 0:
                inputs.Key[kvOffset + random.Next(d)] = float.NaN;
                poison = "NaN key";
                break;
            case 1:
                inputs.Value[kvOffset + random.Next(d)] = float.PositiveInfinity;
                poison = "+inf value";
                break;
            case 2:
                Array.Fill(inputs.Key, 1e20f, kvOffset, d);
                Array.Fill(inputs.Query, -1e20f, queryOffset, d);
                poison = "q·k overflowing to -inf";
                break;
            default:
                Array.Fill(inputs.Value, 1e30f, kvOffset, d);
                poison = "value of 1e30";
                break;
        }

        KernelIsa isa = AttentionCheck.AllIsas[random.Next(AttentionCheck.AllIsas.Length)];
        float[] expected = AttentionCheck.Reference(kernel, inputs);
        string context = $"{declaration} {shape}, {poison} at {position}";
        AttentionCheck.AssertSameRowsOrNaN(expected, AttentionCheck.Run(kernel, inputs, new AttentionOptions { Isa = isa }), shape, d, $"{context}, {isa}");
        if (!kernel.HasUserCode)
        {
            AttentionCheck.AssertSameRowsOrNaN(expected, AttentionCheck.RunOnAccelerator(kernel, inputs, accelerator), shape, d, $"{context}, ILGPU CPU");
        }
    }
}
