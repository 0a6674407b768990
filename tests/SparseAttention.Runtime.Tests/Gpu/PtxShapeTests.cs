using ILGPU.Runtime.Cuda;
using SparseAttention.Testing;
using Xunit.Abstractions;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// The PTX of the generated kernel, read without a GPU: every per-lane value must be a register (ILGPU puts an array
/// indexed by a loop counter in local memory, which is DRAM-backed and would make the kernel memory-bound), and the
/// register-blocked micro-tiles must turn each 16-byte shared load into several FMAs.
/// </summary>
public class PtxShapeTests(ITestOutputHelper output)
{
    /// <summary>Declarations whose mask looks tokens up in a static array (a document table).</summary>
    private static readonly HashSet<string> MasksReadingStaticArrays = new() { nameof(DocumentMaskBidirectional), nameof(PackedDocumentsLayer) };

    public static TheoryData<string, int> KernelsByArchitecture()
    {
        var data = new TheoryData<string, int>();
        foreach (string name in GpuCompilationTests.DistinctKernelNames())
        {
            data.Add(name, 80);
            data.Add(name, 90);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KernelsByArchitecture))]
    public void TheKernelKeepsEveryValueInRegistersAndFeedsManyMultiplyAddsPerSharedLoad(string name, int architecture)
    {
        string ptx = GpuCompilationTests.Kernel(name).CompileToPtx(architecture == 80 ? CudaArchitecture.SM_80 : CudaArchitecture.SM_90);
        PtxFigures figures = PtxFigures.Of(name, "sm_" + architecture, ptx);
        output.WriteLine(figures.ToString());

        Assert.Contains(".entry", ptx);
        Assert.Contains("bar.sync", ptx); // the group barriers around each shared-memory tile

        if (MasksReadingStaticArrays.Contains(name))
        {
            // ILGPU inlines a static array the user's mask reads as a local array filled where it is read: the user's
            // cost (docs/design.md §2.4), not the kernel's. The kernel's own values are checked on every other kernel.
            Assert.True(figures.LocalStores > 0, "the inlined table is what reaches local memory");
            return;
        }

        Assert.Equal(0, figures.LocalLoads);
        Assert.Equal(0, figures.LocalStores);
        Assert.Equal(0, figures.LocalDeclarations);
        // QKᵀ: 8 vector loads feed 64 FMAs per column chunk; P·V at least 4 loads per 32 FMAs (static counts include the
        // staging and the softmax, so the floor is lower than the loops' ratio).
        Assert.True(figures.VectorSharedLoads > 0, "the micro-tiles read shared memory 16 bytes at a time");
        Assert.True(figures.MultiplyAddsPerSharedLoad >= 4, $"{figures.MultiplyAddsPerSharedLoad:F1} multiply-adds per shared load");
        Assert.Equal(0, figures.RoundedMultiplies); // a rounding modifier would keep ptxas from fusing the FMAs
        Assert.True(figures.Exp2s > 0, "exp2 is one ex2.approx instruction");
        Assert.True(figures.Shuffles > 0, "row maxima and sums go through warp shuffles");
    }
}
