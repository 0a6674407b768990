namespace SparseAttention;

/// <summary>Where an <see cref="AttentionDevice"/> runs the generated kernels.</summary>
public enum AttentionBackend
{
    /// <summary>The best present: a CUDA GPU, then an OpenCL GPU, then the SIMD CPU kernels.</summary>
    Auto,

    /// <summary>The generated ILGPU kernel on the first NVIDIA GPU, compiled to PTX.</summary>
    Cuda,

    /// <summary>The generated ILGPU kernel on the first OpenCL GPU.</summary>
    OpenCL,

    /// <summary>The generated SIMD CPU kernels (Vector512/256/128 or scalar), on all cores. Always present.</summary>
    Cpu,

    /// <summary>
    /// The generated ILGPU kernel on ILGPU's CPU accelerator, which emulates a GPU's groups, shared memory and
    /// barriers with threads. Much slower than <see cref="Cpu"/>; it exists to test the GPU kernel without a GPU.
    /// </summary>
    IlgpuCpu,
}
