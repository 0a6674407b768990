using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SparseAttention;

namespace SparseAttention.Benchmarks;

/// <summary>
/// ONNX Runtime's contrib op com.microsoft.GroupQueryAttention on the CPU: a one-node model written in code
/// (the ONNX protobuf fields by number, with Google.Protobuf's CodedOutputStream), inputs in ORT's
/// [batch, seq, heads * HeadDim] layout. local_window_size = W means keys i - W &lt; j &lt;= i (ORT 1.31.1),
/// our SlidingWindow(Size = W); -1 is dense causal. The op only expresses causal patterns.
/// </summary>
public sealed class OnnxRuntimeBaseline : IDisposable
{
    private readonly InferenceSession _session;
    private readonly AttentionShape _shape;
    private readonly int _headDim;
    private readonly float[] _query, _key, _value;
    private readonly int[] _seqLensK;
    private readonly int[] _totalSequenceLength;

    /// <summary>
    /// Makes ORT's managed binding load its native library from <paramref name="path"/> rather than from the package
    /// (`--ort-library`). Must run before the first ORT call of the process. What it is for: ORT picks its kernels from
    /// the CPU's features, so on an AVX-512 machine it always runs its AVX-512 code, whatever width ours are forced to;
    /// benchmarks/probes/ort-narrow.py writes a copy of the library that reads the XCR0 register as an AVX2-only (or
    /// SSE-only) machine's operating system sets it, so that a forced Vector256 (or Vector128) run races ORT's own code
    /// for that width on the same core.
    /// </summary>
    public static void LoadNativeLibraryFrom(string path)
    {
        if (!File.Exists(path))
        {
            throw new ArgumentException($"No ONNX Runtime library at '{path}'.", nameof(path));
        }

        string fullPath = Path.GetFullPath(path);
        NativeLibrary.SetDllImportResolver(typeof(InferenceSession).Assembly, (name, assembly, searchPath) =>
            name.Contains("onnxruntime", StringComparison.Ordinal) && !name.Contains("providers", StringComparison.Ordinal)
                ? NativeLibrary.Load(fullPath)
                : IntPtr.Zero);
    }

    public OnnxRuntimeBaseline(AttentionShape shape, int headDim, int localWindowSize, float[] query, float[] key, float[] value)
    {
        _shape = shape;
        _headDim = headDim;
        byte[] model = BuildModel(shape, headDim, localWindowSize);
        var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        _session = new InferenceSession(model, options);
        _query = ToOrtLayout(query, shape.Heads);
        _key = ToOrtLayout(key, shape.KvHeads);
        _value = ToOrtLayout(value, shape.KvHeads);
        _seqLensK = new[] { shape.SeqLen - 1 };
        _totalSequenceLength = new[] { shape.SeqLen };
    }

    /// <summary>Runs the op once and returns its output in our [Heads, SeqLen, HeadDim] layout.</summary>
    public float[] Run()
    {
        int hidden = _shape.Heads * _headDim, kvHidden = _shape.KvHeads * _headDim;
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("query", new DenseTensor<float>(_query, new[] { 1, _shape.SeqLen, hidden })),
            NamedOnnxValue.CreateFromTensor("key", new DenseTensor<float>(_key, new[] { 1, _shape.SeqLen, kvHidden })),
            NamedOnnxValue.CreateFromTensor("value", new DenseTensor<float>(_value, new[] { 1, _shape.SeqLen, kvHidden })),
            NamedOnnxValue.CreateFromTensor("seqlens_k", new DenseTensor<int>(_seqLensK, new[] { 1 })),
            NamedOnnxValue.CreateFromTensor("total_sequence_length", new DenseTensor<int>(_totalSequenceLength, Array.Empty<int>())),
        };
        using IDisposableReadOnlyCollection<DisposableNamedOnnxValue> results = _session.Run(inputs, new[] { "output" });
        float[] ort = results.Single().AsTensor<float>().ToArray();
        return FromOrtLayout(ort, _shape.Heads);
    }

    public void Dispose() => _session.Dispose();

    private float[] ToOrtLayout(float[] ours, int heads)
    {
        var ort = new float[ours.Length];
        for (int h = 0; h < heads; h++)
        {
            for (int s = 0; s < _shape.SeqLen; s++)
            {
                Array.Copy(ours, (h * _shape.SeqLen + s) * _headDim, ort, (s * heads + h) * _headDim, _headDim);
            }
        }

        return ort;
    }

    private float[] FromOrtLayout(float[] ort, int heads)
    {
        var ours = new float[ort.Length];
        for (int h = 0; h < heads; h++)
        {
            for (int s = 0; s < _shape.SeqLen; s++)
            {
                Array.Copy(ort, (s * heads + h) * _headDim, ours, (h * _shape.SeqLen + s) * _headDim, _headDim);
            }
        }

        return ours;
    }

    // ONNX protobuf field numbers (onnx/onnx.proto): ModelProto.ir_version 1, graph 7, opset_import 8;
    // OperatorSetIdProto.domain 1, version 2; GraphProto.node 1, name 2, input 11, output 12;
    // NodeProto.input 1, output 2, name 3, op_type 4, attribute 5, domain 7; AttributeProto.name 1, i 3, type 20;
    // ValueInfoProto.name 1, type 2; TypeProto.tensor_type 1; Tensor.elem_type 1, shape 2; Shape.dim 1;
    // Dimension.dim_value 1.
    private const int Float = 1, Int32 = 6, AttributeInt = 2;

    private static byte[] BuildModel(AttentionShape shape, int headDim, int localWindowSize)
    {
        int hidden = shape.Heads * headDim, kvHidden = shape.KvHeads * headDim;
        byte[] node = Message(writer =>
        {
            foreach (string input in new[] { "query", "key", "value", "", "", "seqlens_k", "total_sequence_length" })
            {
                writer.WriteTag(1, WireFormat.WireType.LengthDelimited);
                writer.WriteString(input);
            }

            foreach (string output in new[] { "output", "present_key", "present_value" })
            {
                writer.WriteTag(2, WireFormat.WireType.LengthDelimited);
                writer.WriteString(output);
            }

            WriteString(writer, 3, "gqa");
            WriteString(writer, 4, "GroupQueryAttention");
            WriteBytes(writer, 5, IntAttribute("num_heads", shape.Heads));
            WriteBytes(writer, 5, IntAttribute("kv_num_heads", shape.KvHeads));
            WriteBytes(writer, 5, IntAttribute("local_window_size", localWindowSize));
            WriteString(writer, 7, "com.microsoft");
        });

        byte[] graph = Message(writer =>
        {
            WriteBytes(writer, 1, node);
            WriteString(writer, 2, "sparse_attention_baseline");
            WriteBytes(writer, 11, ValueInfo("query", Float, 1, shape.SeqLen, hidden));
            WriteBytes(writer, 11, ValueInfo("key", Float, 1, shape.SeqLen, kvHidden));
            WriteBytes(writer, 11, ValueInfo("value", Float, 1, shape.SeqLen, kvHidden));
            WriteBytes(writer, 11, ValueInfo("seqlens_k", Int32, 1));
            WriteBytes(writer, 11, ValueInfo("total_sequence_length", Int32));
            WriteBytes(writer, 12, ValueInfo("output", Float, 1, shape.SeqLen, hidden));
        });

        return Message(writer =>
        {
            writer.WriteTag(1, WireFormat.WireType.Varint);
            writer.WriteInt64(8);
            WriteBytes(writer, 7, graph);
            WriteBytes(writer, 8, Message(w => { WriteString(w, 1, ""); w.WriteTag(2, WireFormat.WireType.Varint); w.WriteInt64(17); }));
            WriteBytes(writer, 8, Message(w => { WriteString(w, 1, "com.microsoft"); w.WriteTag(2, WireFormat.WireType.Varint); w.WriteInt64(1); }));
        });
    }

    private static byte[] IntAttribute(string name, long value) => Message(writer =>
    {
        WriteString(writer, 1, name);
        writer.WriteTag(3, WireFormat.WireType.Varint);
        writer.WriteInt64(value);
        writer.WriteTag(20, WireFormat.WireType.Varint);
        writer.WriteInt32(AttributeInt);
    });

    private static byte[] ValueInfo(string name, int elementType, params long[] dims)
    {
        byte[] shape = Message(writer =>
        {
            foreach (long dim in dims)
            {
                WriteBytes(writer, 1, Message(w => { w.WriteTag(1, WireFormat.WireType.Varint); w.WriteInt64(dim); }));
            }
        });
        byte[] tensor = Message(writer =>
        {
            writer.WriteTag(1, WireFormat.WireType.Varint);
            writer.WriteInt32(elementType);
            WriteBytes(writer, 2, shape);
        });
        return Message(writer =>
        {
            WriteString(writer, 1, name);
            WriteBytes(writer, 2, Message(w => WriteBytes(w, 1, tensor)));
        });
    }

    private static byte[] Message(Action<CodedOutputStream> write)
    {
        using var stream = new MemoryStream();
        var writer = new CodedOutputStream(stream);
        write(writer);
        writer.Flush();
        return stream.ToArray();
    }

    private static void WriteString(CodedOutputStream writer, int field, string value)
    {
        writer.WriteTag(field, WireFormat.WireType.LengthDelimited);
        writer.WriteString(value);
    }

    private static void WriteBytes(CodedOutputStream writer, int field, byte[] value)
    {
        writer.WriteTag(field, WireFormat.WireType.LengthDelimited);
        writer.WriteBytes(ByteString.CopyFrom(value));
    }
}
