using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Util;
using SparseAttention.Gpu;

namespace SparseAttention.Runtime.Tests.Gpu;

/// <summary>
/// The two ways the kernel reduces across the eight lanes that share rows give the same answer: shuffles (CUDA, and
/// what the CPU accelerator runs in the kernel tests) and shared memory (OpenCL, which only compiles here).
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class GpuRowSetTests(IlgpuCpuDevice fixture)
{
    private const int Threads = 128;

    private static void Reduce<TRowSets>(ArrayView<Float4> input, ArrayView<Float4> maxima, ArrayView<Float4> sums)
        where TRowSets : struct, IGpuRowSets
    {
        var scratch = SharedMemory.Allocate<Float4>(Threads);
        int thread = Group.IdxX;
        maxima[thread] = default(TRowSets).Max(input[thread], scratch, thread);
        sums[thread] = default(TRowSets).Sum(input[thread], scratch, thread);
    }

    [Fact]
    public void ShufflesAndSharedMemoryGiveEveryLaneItsRowSetsMaxAndSum()
    {
        var random = new Random(6);
        Float4[] input = Enumerable.Range(0, Threads).Select(_ => new Float4(
            (float)random.NextDouble() * 10f - 5f,
            random.Next(4) == 0 ? float.NegativeInfinity : (float)random.NextDouble(),
            random.Next(2),
            -(float)random.NextDouble())).ToArray();

        foreach (Action<ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>> kernel in new Action<ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>>[] { Reduce<ShuffleRowSets>, Reduce<SharedMemoryRowSets> })
        {
            Accelerator accelerator = fixture.Device.Accelerator!;
            using var inputBuffer = accelerator.Allocate1D(input);
            using var maxima = accelerator.Allocate1D<Float4>(Threads);
            using var sums = accelerator.Allocate1D<Float4>(Threads);
            accelerator.LoadStreamKernel(kernel)(new KernelConfig(1, Threads), inputBuffer.View, maxima.View, sums.View);
            accelerator.Synchronize();
            Float4[] max = maxima.GetAsArray1D(), sum = sums.GetAsArray1D();

            for (int thread = 0; thread < Threads; thread++)
            {
                Float4[] set = input.Skip(thread & ~7).Take(8).ToArray();
                string context = $"{kernel.Method} thread {thread}";
                Assert.True(Same(new Float4(set.Max(v => v.X), set.Max(v => v.Y), set.Max(v => v.Z), set.Max(v => v.W)), max[thread]), context + " max");
                Assert.True(Close(new Float4(set.Sum(v => v.X), set.Sum(v => v.Y), set.Sum(v => v.Z), set.Sum(v => v.W)), sum[thread]), context + " sum");
                // Every lane of a row set holds the same bits, so the rows' state stays identical across them.
                Assert.True(Same(sum[thread & ~7], sum[thread]), context + " lanes agree");
            }
        }
    }

    [Fact]
    public void AnAcceleratorWithSmallGroupsIsRefusedWithHowToCreateOne()
    {
        // ILGPU's default CPU accelerator has groups of 16 threads in warps of 4: the kernel's 128-thread groups do not fit.
        using var context = Context.Create(builder => builder.CPU());
        using CPUAccelerator accelerator = context.CreateCPUAccelerator(0);
        var data = new float[DenseCausal.HeadDim * 8];
        var output = Enumerable.Repeat(7f, data.Length).ToArray();
        NotSupportedException refused = Assert.Throws<NotSupportedException>(() => DenseCausal.Forward(accelerator, data, data, data, output, new AttentionShape(1, 1, 8)));
        Assert.Contains("128 threads", refused.Message, StringComparison.Ordinal);
        Assert.Contains("CPUDeviceKind.Nvidia", refused.Message, StringComparison.Ordinal);
        Assert.All(output, value => Assert.Equal(7f, value));
    }

    [Fact]
    public void AKernelIsWrappedOnlyWithBothFormsAndAPositiveShape()
    {
        static void Body(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<int> t, ArrayView<float> p, ArrayView<float> l, ArrayView<float> s, GpuAttentionArguments a)
        {
        }

        Assert.Equal("kernel", Assert.Throws<ArgumentNullException>(() => new GpuAttentionKernel(null!, Body, 64, 32, 64, 128)).ParamName);
        Assert.Equal("openClKernel", Assert.Throws<ArgumentNullException>(() => new GpuAttentionKernel(Body, null!, 64, 32, 64, 128)).ParamName);
        Assert.Equal("headDim", Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionKernel(Body, Body, 0, 32, 64, 128)).ParamName);
        Assert.Equal("keyTile", Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionKernel(Body, Body, 64, 0, 64, 128)).ParamName);
        Assert.Equal("queryRowsPerGroup", Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionKernel(Body, Body, 64, 32, 0, 128)).ParamName);
        Assert.Equal("threadsPerGroup", Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionKernel(Body, Body, 64, 32, 64, -1)).ParamName);
    }

    private static bool Same(Float4 a, Float4 b) => a.X.Equals(b.X) && a.Y.Equals(b.Y) && a.Z.Equals(b.Z) && a.W.Equals(b.W);

    private static bool Close(Float4 a, Float4 b) => Near(a.X, b.X) && Near(a.Y, b.Y) && Near(a.Z, b.Z) && Near(a.W, b.W);

    private static bool Near(float a, float b) => a.Equals(b) || Math.Abs(a - b) <= 1e-5f;
}
