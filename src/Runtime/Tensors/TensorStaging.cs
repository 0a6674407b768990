using SparseAttention.Cpu;

namespace SparseAttention.Tensors;

/// <summary>
/// Moves one sequence of a batch between tensors of any element type and strides and the kernels' fp32
/// [Heads, SeqLen, HeadDim] buffers: every head of query, key and value widened in, or every head of output narrowed
/// back, one head per work item on the worker pool (which, unlike Parallel.For, allocates nothing per call).
/// </summary>
internal sealed unsafe class TensorStaging<T> : WorkerPool.Job
    where T : unmanaged
{
    [System.ThreadStatic]
    private static TensorStaging<T>? t_instance;

    private TensorLayout _query, _key, _value, _output;
    private T* _queryOrigin, _keyOrigin, _valueOrigin, _outputOrigin;
    private float* _queryBuffer, _keyBuffer, _valueBuffer, _outputBuffer;
    private int _batch;
    private bool _writingOutput;

    public static TensorStaging<T> ForThisThread() => t_instance ??= new TensorStaging<T>();

    /// <summary>The tensors (pinned by the caller) and the fp32 buffers of one sequence each.</summary>
    public void Prepare(TensorLayout query, T* queryOrigin, float* queryBuffer, TensorLayout key, T* keyOrigin, float* keyBuffer, TensorLayout value, T* valueOrigin, float* valueBuffer, TensorLayout output, T* outputOrigin, float* outputBuffer)
    {
        _query = query;
        _queryOrigin = queryOrigin;
        _queryBuffer = queryBuffer;
        _key = key;
        _keyOrigin = keyOrigin;
        _keyBuffer = keyBuffer;
        _value = value;
        _valueOrigin = valueOrigin;
        _valueBuffer = valueBuffer;
        _output = output;
        _outputOrigin = outputOrigin;
        _outputBuffer = outputBuffer;
    }

    /// <summary>Widens sequence <paramref name="batch"/> of query, key and value into their buffers.</summary>
    public void ReadInputs(int batch, int threads)
    {
        _batch = batch;
        _writingOutput = false;
        WorkerPool.Shared.Run(this, _query.Heads + 2 * _key.Heads, threads);
    }

    /// <summary>Narrows the output buffer into sequence <paramref name="batch"/> of the output tensor.</summary>
    public void WriteOutput(int batch, int threads)
    {
        _batch = batch;
        _writingOutput = true;
        WorkerPool.Shared.Run(this, _output.Heads, threads);
    }

    public override void Execute(int item)
    {
        if (_writingOutput)
        {
            _output.ScatterHead(_outputBuffer, _outputOrigin, _batch, item);
        }
        else if (item < _query.Heads)
        {
            _query.GatherHead(_queryOrigin, _batch, item, _queryBuffer);
        }
        else if (item < _query.Heads + _key.Heads)
        {
            _key.GatherHead(_keyOrigin, _batch, item - _query.Heads, _keyBuffer);
        }
        else
        {
            _value.GatherHead(_valueOrigin, _batch, item - _query.Heads - _key.Heads, _valueBuffer);
        }
    }
}
