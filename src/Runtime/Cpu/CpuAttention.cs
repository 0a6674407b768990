using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;

namespace SparseAttention.Cpu;

/// <summary>
/// Runs generated kernels over a whole call. Generated <c>Forward</c> methods call this after validating
/// their arguments. Two schedules:
/// <list type="bullet">
/// <item><see cref="RunTiled{TKernel}"/>, in passes. Keys are packed into transposed panels, one set per
/// stream step. The window pass gives each (head, residue stream of the dilation, block of query tiles)
/// work item the band (window or dense) through the register-blocked tile kernel. Where the stride runs as
/// tiles too, the strided pass continues each row's state over residue streams of step Stride. The last pass
/// a row sees adds the keys no band covered (global columns, short-stream strided runs) with the row kernel
/// and normalises; global rows are computed whole by the row kernel.</item>
/// <item><see cref="RunRows{TKernel}"/>: every row runs its exact key segments through the row kernel (the
/// scalar fallback, and patterns with no band, such as global tokens only or short strided streams).</item>
/// </list>
/// Work items go to <see cref="WorkerPool"/>; job objects and scratch are cached per thread, so a call
/// allocates nothing once warm. Kernels run the softmax in base 2: the scale handed to them (and folded into
/// the packed keys) is the softmax scale times log2(e), and probabilities are 2^(score - max).
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static unsafe class CpuAttention
{
    /// <summary>Query rows per work item of the row schedule.</summary>
    internal const int RowsPerWorkItem = 32;

    /// <summary>Query rows (about) per work item of the tiled schedule: enough tiles to reuse the keys in cache.</summary>
    internal const int TiledRowsPerWorkItem = 64;

    /// <summary>Below this much work (rows x keys, roughly) a call runs on the calling thread.</summary>
    private const long ParallelThresholdPairs = 1 << 15;

    /// <summary>Runs a kernel with a tile path: the window (or dense) band and long strided streams as tiles, the rest per row.</summary>
    public static void RunTiled<TKernel>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionTileKernel
    {
        if (!pattern.TryGetBand(0, out _, out _, out _) && !UsesStridedBands<TKernel>(pattern, 0, shape.SeqLen))
        {
            RunRows<TKernel>(pattern, query, key, value, output, shape, options);
            return;
        }

        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output)
        {
            RunTiledWindow<TKernel>(pattern, queryPointer, keyPointer, valuePointer, outputPointer, shape, SequenceWindow.Whole(shape.SeqLen), options);
        }
    }

    /// <summary>
    /// The tiled passes over the part of a sequence <paramref name="window"/> names: the whole of it for
    /// <see cref="RunTiled{TKernel}"/>, a prefill chunk's rows for <see cref="CpuDecode"/> (keys a linear run of
    /// <paramref name="shape"/>.SeqLen positions per KV head, pinned global tokens after them; the pattern then has a
    /// window band and no stride).
    /// </summary>
    internal static void RunTiledWindow<TKernel>(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, SequenceWindow window, AttentionOptions options)
        where TKernel : struct, IAttentionTileKernel
    {
        int threads = Threads(options, shape with { SeqLen = window.QueryRows });
        TiledJob<TKernel> job = TiledJob<TKernel>.ForThisThread();
        job.Prepare(pattern, query, key, value, output, shape, window, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E);
        fixed (float* panels = job.Panels)
        {
            job.PanelPointer = panels;
            job.Phase = TiledPhase.Pack;
            WorkerPool.Shared.Run(job, job.PackItems, threads);
            job.Phase = TiledPhase.Window;
            WorkerPool.Shared.Run(job, job.WindowItems, threads);
            job.Phase = TiledPhase.Strided;
            WorkerPool.Shared.Run(job, job.StridedItems, threads);
            job.PanelPointer = null;
        }
    }

    /// <summary>
    /// Which part of a sequence a tiled call computes. <c>Forward</c> computes all of it; a prefill chunk computes
    /// <see cref="QueryRows"/> rows from position <see cref="QueryFirst"/> on, against keys that start
    /// <see cref="PositionBase"/> positions into the stream, with global tokens older than that read through
    /// <see cref="Slots"/>. Query and output rows of a head are <see cref="QueryLayoutRows"/> apart, and keys of a KV
    /// head <see cref="KeyStride"/> apart.
    /// </summary>
    internal readonly record struct SequenceWindow(int QueryFirst, int QueryRows, int QueryLayoutRows, int KeyStride, int PositionBase, Decode.SlotMap? Slots)
    {
        public static SequenceWindow Whole(int seqLen) => new(0, seqLen, seqLen, seqLen, 0, null);
    }

    /// <summary>
    /// Whether head <paramref name="head"/>'s strided component runs as tiles over residue streams. Only when a
    /// stream spans more than one key tile: shorter streams make every strided tile a half-empty triangle,
    /// and the row kernel is faster (measured: stride 64 at n = 4096 is faster per row, stride 128 at 16384
    /// 1.45x faster tiled).
    /// </summary>
    private static bool UsesStridedBands<TKernel>(AttentionPattern pattern, int head, int seqLen)
        where TKernel : struct, IAttentionTileKernel =>
        pattern.TryGetStridedBands(head, out _, out _) && seqLen / pattern.Stride > TKernel.KeyTile;

    /// <summary>Runs a kernel row by row over each row's exact key segments.</summary>
    public static void RunRows<TKernel>(AttentionPattern pattern, ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value, Span<float> output, AttentionShape shape, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
    {
        fixed (float* queryPointer = query, keyPointer = key, valuePointer = value, outputPointer = output)
        {
            RunRowsWindow<TKernel>(pattern, queryPointer, keyPointer, valuePointer, outputPointer, shape, SequenceWindow.Whole(shape.SeqLen), options);
        }
    }

    /// <summary>The row schedule over the part of a sequence <paramref name="window"/> names (see <see cref="RunTiledWindow{TKernel}"/>).</summary>
    internal static void RunRowsWindow<TKernel>(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, SequenceWindow window, AttentionOptions options)
        where TKernel : struct, IAttentionRowKernel
    {
        int threads = Threads(options, shape with { SeqLen = window.QueryRows });
        RowJob<TKernel> job = RowJob<TKernel>.ForThisThread();
        job.Prepare(pattern, query, key, value, output, shape, window, options.ResolveScale(TKernel.HeadDim) * VectorMath.Log2E);
        WorkerPool.Shared.Run(job, job.Items, threads);
    }

    private static int Threads(AttentionOptions options, AttentionShape shape) =>
        Threads(options, (long)shape.Heads * shape.SeqLen * Math.Min(shape.SeqLen, 64));

    /// <summary>Threads for a call of about <paramref name="roughPairs"/> (query, key) pairs: one below the point where waking workers costs more than it saves.</summary>
    internal static int Threads(AttentionOptions options, long roughPairs) =>
        roughPairs < ParallelThresholdPairs ? 1 : options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;

    /// <summary>Runs one row's segments through the row kernel from a fresh state and writes the normalised row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ComputeWholeRow<TKernel>(ref float query, ref float keys, ref float values, float* output, ReadOnlySpan<KeySegment> segments, float scale, Span<float> scratch, Span<float> accumulator)
        where TKernel : struct, IAttentionRowKernel
    {
        float max = float.NegativeInfinity, sum = 0f;
        accumulator.Clear();
        TKernel.AccumulateRow(ref query, ref keys, ref values, segments, scale, scratch, ref max, ref sum, accumulator);
        WriteNormalised(accumulator, sum, output);
    }

    /// <summary>
    /// output = accumulator / sum. A row that saw no key (sum 0) is written as zeros. The NaN/Inf policy ends here: a row
    /// whose sum is NaN (a non-finite visible score) or whose output has a NaN or infinity in any element (a non-finite
    /// visible value; 0 x inf is NaN too) is written as NaN in every element, so every path gives the same answer.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WriteNormalised(ReadOnlySpan<float> accumulator, float sum, float* output)
    {
        // sum >= 1 when any key was seen (the largest score contributes 2^0), so 1 / sum cannot overflow the output.
        float inverse = sum == 0f ? 0f : 1f / sum;
        int d = 0;
        bool finite = true;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            // HeadDim is a multiple of 8, so 256-bit vectors cover the row; the loop below only runs on
            // machines with narrower vectors. x - x is 0 for a finite x and NaN for NaN and ±inf.
            var scale = new System.Numerics.Vector<float>(inverse);
            var check = System.Numerics.Vector<float>.Zero;
            for (; d + System.Numerics.Vector<float>.Count <= accumulator.Length; d += System.Numerics.Vector<float>.Count)
            {
                System.Numerics.Vector<float> normalised = new System.Numerics.Vector<float>(accumulator.Slice(d)) * scale;
                check += normalised - normalised;
                System.Numerics.Vector.Store(normalised, output + d);
            }

            finite = System.Numerics.Vector.EqualsAll(check, System.Numerics.Vector<float>.Zero);
        }

        for (; d < accumulator.Length; d++)
        {
            output[d] = accumulator[d] * inverse;
            finite &= float.IsFinite(output[d]);
        }

        if (!finite)
        {
            new Span<float>(output, accumulator.Length).Fill(float.NaN);
        }
    }

    /// <summary>State shared by every job: the call's pointers and sizes.</summary>
    private abstract class CallJob : WorkerPool.Job
    {
        protected AttentionPattern Pattern = null!;
        protected float* Query, Key, Value, Output;
        protected AttentionShape Shape;
        protected SequenceWindow Window;
        protected float Scale;

        protected void PrepareCall(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, SequenceWindow window, float scale)
        {
            Window = window;
            Pattern = pattern;
            Query = query;
            Key = key;
            Value = value;
            Output = output;
            Shape = shape;
            Scale = scale;
        }

        /// <summary>Where query (and output) row <paramref name="position"/> of <paramref name="head"/> starts.</summary>
        protected long RowOffset(int head, int position, int headDim) => ((long)head * Window.QueryLayoutRows + position - Window.QueryFirst) * headDim;

        /// <summary>Where the keys (and values) of <paramref name="head"/>'s KV head start.</summary>
        protected long KvOffset(int head, int headDim) => (long)Shape.KvHeadOf(head) * Window.KeyStride * headDim;

        /// <summary>
        /// The key segments of row <paramref name="position"/>, as offsets into the call's keys. For a whole sequence
        /// they are the pattern's own. For a prefill chunk they are the pattern's at the real stream position, mapped
        /// through the chunk's slots (the window's segment lands on the same keys, shifted; older global tokens on the
        /// pinned slots after the linear run).
        /// </summary>
        protected int KeySegmentsOf(int position, int head, WorkerScratch scratch, out int firstGlobal, out bool isGlobal, out KeySegment[] segments)
        {
            if (Window.Slots is not { } slots)
            {
                isGlobal = Pattern.IsGlobal(position);
                segments = scratch.Segments;
                return Pattern.GetKeySegments(position, head, Shape.SeqLen, scratch.Segments, out firstGlobal);
            }

            int real = Window.PositionBase + position;
            isGlobal = Pattern.IsGlobal(real);
            int count = Pattern.GetKeySegments(real, head, real + 1, scratch.Segments, out firstGlobal);

            // With a window, its segment (always the first) is mapped on its own, so the segments from index 1 on are still
            // the ones after it, which is what the tiled passes skip. Such a call has no strided bands, so the first
            // global segment is never asked for. Without a window every segment is a global column: all mapped at once.
            int mapped = 0, windowSegments = 0;
            if (Pattern.HasWindow)
            {
                windowSegments = 1;
                mapped = slots.ToSlots(scratch.Segments.AsSpan(0, 1), scratch.MappedSegments);
                if (mapped != 1 && !isGlobal)
                {
                    throw new InvalidOperationException("A prefill chunk's window segment must map to one run of its linear keys.");
                }
            }

            mapped += slots.ToSlots(scratch.Segments.AsSpan(windowSegments, count - windowSegments), scratch.MappedSegments.AsSpan(mapped));
            segments = scratch.MappedSegments;
            firstGlobal = 1;
            return mapped;
        }
    }

    private sealed class RowJob<TKernel> : CallJob
        where TKernel : struct, IAttentionRowKernel
    {
        [ThreadStatic]
        private static RowJob<TKernel>? t_instance;

        public int Items;
        private int _blocksPerHead;

        public static RowJob<TKernel> ForThisThread() => t_instance ??= new RowJob<TKernel>();

        public void Prepare(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, SequenceWindow window, float scale)
        {
            PrepareCall(pattern, query, key, value, output, shape, window, scale);
            _blocksPerHead = (window.QueryRows + RowsPerWorkItem - 1) / RowsPerWorkItem;
            Items = shape.Heads * _blocksPerHead;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            int headDim = TKernel.HeadDim;
            int head = item / _blocksPerHead;
            int firstRow = Window.QueryFirst + item % _blocksPerHead * RowsPerWorkItem;
            int lastRow = Math.Min(firstRow + RowsPerWorkItem, Window.QueryFirst + Window.QueryRows);
            long kvOffset = KvOffset(head, headDim);
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, 1, headDim, 0);
            for (int row = firstRow; row < lastRow; row++)
            {
                int count = KeySegmentsOf(row, head, scratch, out _, out _, out KeySegment[] segments);
                long rowOffset = RowOffset(head, row, headDim);
                ComputeWholeRow<TKernel>(ref *(Query + rowOffset), ref *(Key + kvOffset), ref *(Value + kvOffset), Output + rowOffset, segments.AsSpan(0, count), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), scratch.Accumulators.AsSpan(0, headDim));
            }
        }
    }

    /// <summary>What a tiled job's work items do in each of its passes.</summary>
    private enum TiledPhase
    {
        /// <summary>Pack the keys of every (stream step, KV head) into panels.</summary>
        Pack,

        /// <summary>The window (or dense) band over the dilation's residue streams.</summary>
        Window,

        /// <summary>The strided band(s) over residue streams of step Stride, continuing the window's state.</summary>
        Strided,
    }

    private sealed class TiledJob<TKernel> : CallJob
        where TKernel : struct, IAttentionTileKernel
    {
        [ThreadStatic]
        private static TiledJob<TKernel>? t_instance;

        public float[] Panels = Array.Empty<float>();
        public float* PanelPointer;
        public TiledPhase Phase;
        public int PackItems;
        public int WindowItems;
        public int StridedItems;
        public bool HasWindowBand;
        public bool HasStridedBands;

        private int[] _steps = Array.Empty<int>();
        private long[] _panelsPerKvHead = Array.Empty<long>();
        private long[] _stepOffsets = Array.Empty<long>();
        private int _stepCount;
        private int[] _windowItemsBefore = Array.Empty<int>();
        private int[] _stridedItemsBefore = Array.Empty<int>();
        private bool[] _headUsesStridedBands = Array.Empty<bool>();
        private bool _stridedAfterWindow;
        private int _tilesPerItem;
        private bool _rowsNeedMore;

        // Row state handed from the window pass to the strided pass: running max, sum and output per row.
        private float[] _state = Array.Empty<float>();

        public static TiledJob<TKernel> ForThisThread() => t_instance ??= new TiledJob<TKernel>();

        public void Prepare(AttentionPattern pattern, float* query, float* key, float* value, float* output, AttentionShape shape, SequenceWindow window, float scale)
        {
            PrepareCall(pattern, query, key, value, output, shape, window, scale);
            int headDim = TKernel.HeadDim, keyTile = TKernel.KeyTile;
            _rowsNeedMore = pattern.Stride > 0 || pattern.GlobalTokens.Count > 0;
            _tilesPerItem = Math.Max(1, TiledRowsPerWorkItem / TKernel.TileRows);
            HasWindowBand = pattern.TryGetBand(0, out _, out _, out _);

            Grow(ref _headUsesStridedBands, shape.Heads);
            HasStridedBands = false;
            _stridedAfterWindow = false;
            for (int head = 0; head < shape.Heads; head++)
            {
                // The bands are the same for every head that runs them; heads whose window is dilated do not.
                _headUsesStridedBands[head] = UsesStridedBands<TKernel>(pattern, head, shape.SeqLen);
                if (_headUsesStridedBands[head])
                {
                    pattern.TryGetStridedBands(head, out _, out var after);
                    _stridedAfterWindow = after is not null;
                    HasStridedBands = true;
                }
            }

            // Panels for every stream step in use: each distinct dilation of the window, and the stride.
            _stepCount = 0;
            Grow(ref _steps, Math.Max(1, pattern.Dilations.Count) + 1);
            Grow(ref _panelsPerKvHead, _steps.Length);
            Grow(ref _stepOffsets, _steps.Length);
            long total = 0;
            if (HasWindowBand)
            {
                for (int head = 0; head < Math.Max(1, pattern.Dilations.Count); head++)
                {
                    AddStep(pattern.DilationOf(head), shape, headDim, keyTile, ref total);
                }
            }

            if (HasStridedBands)
            {
                AddStep(pattern.Stride, shape, headDim, keyTile, ref total);
            }

            if (Panels.Length < total)
            {
                Panels = GC.AllocateUninitializedArray<float>(CheckedArrayLength(total, "packs the keys once per stream step (each distinct dilation, and the stride) into"));
            }

            PackItems = _stepCount * shape.KvHeads;
            WindowItems = HasWindowBand ? CountItems(ref _windowItemsBefore, shape, strided: false) : 0;
            StridedItems = HasStridedBands ? CountItems(ref _stridedItemsBefore, shape, strided: true) : 0;
            if (HasWindowBand && HasStridedBands)
            {
                long stateFloats = (long)shape.Heads * window.QueryRows * (headDim + 2);
                if (_state.Length < stateFloats)
                {
                    _state = GC.AllocateUninitializedArray<float>(CheckedArrayLength(stateFloats, "hands each row's softmax state from the window pass to the strided pass in"));
                }
            }
        }

        /// <summary>
        /// <paramref name="floats"/> as an array length, or an <see cref="ArgumentException"/> on the shape saying which buffer
        /// would be too large: inputs that fit in spans can still need more scratch than one array holds.
        /// </summary>
        private static int CheckedArrayLength(long floats, string what)
        {
            if (floats > Array.MaxLength)
            {
                throw new ArgumentException($"This call is too large for the tiled kernel: it {what} {floats} floats, more than one array holds ({Array.MaxLength}); split it over fewer heads.", "shape");
            }

            return (int)floats;
        }

        private void AddStep(int step, AttentionShape shape, int headDim, int keyTile, ref long total)
        {
            if (Array.IndexOf(_steps, step, 0, _stepCount) >= 0)
            {
                return;
            }

            _steps[_stepCount] = step;
            _panelsPerKvHead[_stepCount] = KeyPanels.FloatsPerKvHead(shape.SeqLen, step, headDim, TKernel.Lanes, keyTile);
            _stepOffsets[_stepCount] = total;
            total += _panelsPerKvHead[_stepCount] * shape.KvHeads;
            _stepCount++;
        }

        /// <summary>Work items per head for one pass: each residue stream's query tiles, in blocks.</summary>
        private int CountItems(ref int[] itemsBefore, AttentionShape shape, bool strided)
        {
            Grow(ref itemsBefore, shape.Heads + 1);
            itemsBefore[0] = 0;
            for (int head = 0; head < shape.Heads; head++)
            {
                int step = !strided ? Pattern.DilationOf(head) : _headUsesStridedBands[head] ? Pattern.Stride : 0;
                int blocks = 0;
                if (step > 0)
                {
                    // A residue stream holds at most ceil(QueryRows / step) of the rows this call computes.
                    int tiles = (KeyPanels.StreamLength(Window.QueryRows, step, 0) + TKernel.TileRows - 1) / TKernel.TileRows;
                    blocks = step * ((tiles + _tilesPerItem - 1) / _tilesPerItem);
                }

                itemsBefore[head + 1] = itemsBefore[head] + blocks;
            }

            return itemsBefore[shape.Heads];
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int item)
        {
            switch (Phase)
            {
                case TiledPhase.Pack:
                    Pack(item);
                    break;
                case TiledPhase.Window:
                    RunTiles(item, _windowItemsBefore, strided: false);
                    break;
                default:
                    RunTiles(item, _stridedItemsBefore, strided: true);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Pack(int item)
        {
            int stepIndex = item / Shape.KvHeads, kvHead = item % Shape.KvHeads;
            int headDim = TKernel.HeadDim;
            KeyPanels.Pack(Key + (long)kvHead * Window.KeyStride * headDim, Shape.SeqLen, headDim, _steps[stepIndex], TKernel.Lanes, TKernel.KeyTile, Scale, PanelsOf(stepIndex, kvHead));
        }

        private float* PanelsOf(int stepIndex, int kvHead) => PanelPointer + _stepOffsets[stepIndex] + kvHead * _panelsPerKvHead[stepIndex];

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunTiles(int item, int[] itemsBefore, bool strided)
        {
            int headDim = TKernel.HeadDim, tileRows = TKernel.TileRows, seqLen = Shape.SeqLen;
            int head = 0;
            while (itemsBefore[head + 1] <= item)
            {
                head++;
            }

            int step = strided ? Pattern.Stride : Pattern.DilationOf(head);
            int local = item - itemsBefore[head];
            int blocksPerResidue = (itemsBefore[head + 1] - itemsBefore[head]) / step;
            int residue = local / blocksPerResidue;
            int block = local % blocksPerResidue;
            int streamLength = KeyPanels.StreamLength(seqLen, step, residue);
            int kvHead = Shape.KvHeadOf(head);
            float* panels = PanelsOf(Array.IndexOf(_steps, step, 0, _stepCount), kvHead) + KeyPanels.StreamOffset(seqLen, step, residue, headDim, TKernel.Lanes, TKernel.KeyTile);
            long kvOffset = KvOffset(head, headDim);
            bool usesStrided = _headUsesStridedBands[head] && HasStridedBands;

            // The window pass hands rows on to the strided pass; the last pass a row sees finishes it.
            bool handOn = !strided && usesStrided;
            bool continueState = strided && HasWindowBand;
            WorkerScratch scratch = WorkerScratch.ForThisThread(Pattern, TKernel.ScratchLength, tileRows, headDim, TKernel.KeyTile);

            // The stream's first query this call computes: 0 for a whole sequence, later for a prefill chunk.
            int firstComputed = Window.QueryFirst <= residue ? 0 : (Window.QueryFirst - residue + step - 1) / step;
            for (int tileIndex = block * _tilesPerItem; tileIndex < (block + 1) * _tilesPerItem; tileIndex++)
            {
                int firstQuery = firstComputed + tileIndex * tileRows;
                if (firstQuery >= streamLength)
                {
                    break;
                }

                int rows = Math.Min(tileRows, streamLength - firstQuery);
                Span<float> rowMax = scratch.RowMax.AsSpan(0, tileRows), rowSum = scratch.RowSum.AsSpan(0, tileRows);
                Span<float> accumulators = scratch.Accumulators.AsSpan(0, tileRows * headDim);
                rowMax.Fill(float.NegativeInfinity);
                rowSum.Clear();
                accumulators.Clear();
                for (int t = 0; continueState && t < rows; t++)
                {
                    LoadState(head, residue + (firstQuery + t) * step, ref rowMax[t], ref rowSum[t], accumulators.Slice(t * headDim, headDim));
                }

                var tile = new BandTile
                {
                    Query = ref *(Query + RowOffset(head, residue + firstQuery * step, headDim)),
                    QueryStride = step * headDim,
                    Rows = rows,
                    KeyPanels = ref *panels,
                    Values = ref *(Value + kvOffset + (long)residue * headDim),
                    ValueStride = step * headDim,
                    FirstQuery = firstQuery,
                    StreamLength = streamLength,
                    RowMax = rowMax,
                    RowSum = rowSum,
                    Accumulators = accumulators,
                    Probabilities = scratch.Probabilities.AsSpan(0, tileRows * TKernel.KeyTile),
                };
                if (!strided)
                {
                    TKernel.AccumulateBandTile(ref tile);
                }
                else
                {
                    TKernel.AccumulateStridedBeforeTile(ref tile);
                    if (_stridedAfterWindow)
                    {
                        TKernel.AccumulateStridedAfterTile(ref tile);
                    }
                }

                for (int t = 0; t < rows; t++)
                {
                    int position = residue + (firstQuery + t) * step;
                    Span<float> accumulator = accumulators.Slice(t * headDim, headDim);
                    if (handOn)
                    {
                        StoreState(head, position, rowMax[t], rowSum[t], accumulator);
                        continue;
                    }

                    long rowOffset = RowOffset(head, position, headDim);
                    if (_rowsNeedMore)
                    {
                        int count = KeySegmentsOf(position, head, scratch, out int firstGlobal, out bool isGlobal, out KeySegment[] segments);
                        if (isGlobal)
                        {
                            // A global row sees every key: computed whole, the band passes discarded.
                            ComputeWholeRow<TKernel>(ref *(Query + rowOffset), ref *(Key + kvOffset), ref *(Value + kvOffset), Output + rowOffset, segments.AsSpan(0, count), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), accumulator);
                            continue;
                        }

                        // Segments the tile passes did not cover: with strided bands, only the global columns;
                        // otherwise everything after the window's segment.
                        int first = usesStrided ? firstGlobal : 1;
                        TKernel.AccumulateRow(ref *(Query + rowOffset), ref *(Key + kvOffset), ref *(Value + kvOffset), segments.AsSpan(first, count - first), Scale, scratch.RowScratch.AsSpan(0, TKernel.ScratchLength), ref rowMax[t], ref rowSum[t], accumulator);
                    }

                    WriteNormalised(accumulator, rowSum[t], Output + rowOffset);
                }
            }
        }

        private void StoreState(int head, int position, float max, float sum, ReadOnlySpan<float> accumulator)
        {
            int headDim = TKernel.HeadDim;
            Span<float> state = _state.AsSpan((int)(((long)head * Window.QueryRows + position - Window.QueryFirst) * (headDim + 2)), headDim + 2);
            state[0] = max;
            state[1] = sum;
            accumulator.CopyTo(state.Slice(2));
        }

        private void LoadState(int head, int position, ref float max, ref float sum, Span<float> accumulator)
        {
            int headDim = TKernel.HeadDim;
            ReadOnlySpan<float> state = _state.AsSpan((int)(((long)head * Window.QueryRows + position - Window.QueryFirst) * (headDim + 2)), headDim + 2);
            max = state[0];
            sum = state[1];
            state.Slice(2).CopyTo(accumulator);
        }

        private static void Grow<T>(ref T[] array, int length)
        {
            if (array.Length < length)
            {
                array = new T[length];
            }
        }
    }

    /// <summary>Per-thread buffers, grown on demand and reused, so steady-state calls allocate nothing.</summary>
    internal sealed class WorkerScratch
    {
        [ThreadStatic]
        private static WorkerScratch? t_instance;

        public KeySegment[] Segments = Array.Empty<KeySegment>();
        public KeySegment[] MappedSegments = Array.Empty<KeySegment>();
        public KeySegment[] ClippedSegments = Array.Empty<KeySegment>();
        public float[] RowScratch = Array.Empty<float>();
        public float[] RowMax = Array.Empty<float>();
        public float[] RowSum = Array.Empty<float>();
        public float[] Accumulators = Array.Empty<float>();
        public float[] Probabilities = Array.Empty<float>();

        /// <summary>
        /// This thread's buffers, large enough for <paramref name="pattern"/>'s key segments (as positions, and mapped to
        /// slots or clipped to a block of them by <see cref="CpuDecode"/>) and for the given tile.
        /// </summary>
        public static WorkerScratch ForThisThread(AttentionPattern pattern, int rowScratch, int tileRows, int headDim, int keyTile)
        {
            WorkerScratch scratch = t_instance ??= new WorkerScratch();
            if (scratch.Segments.Length < pattern.MaxSegmentsPerQuery) scratch.Segments = new KeySegment[pattern.MaxSegmentsPerQuery];
            if (scratch.MappedSegments.Length < Decode.SlotMap.MaxSlotSegments(pattern))
            {
                scratch.MappedSegments = new KeySegment[Decode.SlotMap.MaxSlotSegments(pattern)];
                scratch.ClippedSegments = new KeySegment[Decode.SlotMap.MaxSlotSegments(pattern)];
            }

            if (scratch.RowScratch.Length < rowScratch) scratch.RowScratch = new float[rowScratch];
            if (scratch.RowMax.Length < tileRows)
            {
                scratch.RowMax = new float[tileRows];
                scratch.RowSum = new float[tileRows];
            }

            if (scratch.Accumulators.Length < tileRows * headDim) scratch.Accumulators = new float[tileRows * headDim];
            if (scratch.Probabilities.Length < tileRows * keyTile) scratch.Probabilities = new float[tileRows * keyTile];
            return scratch;
        }
    }
}
