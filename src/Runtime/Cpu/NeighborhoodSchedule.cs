using System;

namespace SparseAttention.Cpu;

/// <summary>
/// How the tile kernel runs a neighbourhood (issue 18), per call: the grid's lines (tokens that differ only in the last
/// axis's coordinate) in blocks of neighbouring lines, the residue classes of the last axis's dilation, and chunks of each
/// class's queries along a line.
/// </summary>
/// <remarks>
/// <para>
/// A window's band does not describe a neighbourhood on the flat sequence: a query's keys in one line are a run of k that
/// shifts at the line's borders, and the runs of different lines are a line apart. What does hold is that every query of
/// a line sees the same key lines (M of them: the product of the leading axes' key counts), and that along the line the
/// queries of one residue class see columns s(x') .. s(x') + count - 1 of their class, with s(x') = x' - c in the interior.
/// </para>
/// <para>
/// So a work item (one line, one class, a chunk of its queries) gathers the keys of its key lines column by column, M keys
/// per column: stream key j·M + m is column j of key line m. In that order each query's keys are one run of count·M
/// stream keys, and the next query's run starts M keys later: a band with query step M
/// (<see cref="BandTile.QueryStep"/>), Left = c·M, Right = (count - c)·M - 1, which the tile kernel runs as it runs a
/// window. Rows at a border (the run stops shifting) all see the same columns: a rectangle. A 1-D neighbourhood has one
/// key line, its own, so its stream is the residue stream the pack phase already made, and nothing is gathered.
/// </para>
/// <para>
/// Key lines are kept by slot (<c>NeighborhoodComponent.WriteKeyLines</c>): the next line of a block (the next index of
/// the fastest leading axis's residue class) sees the same key lines in the same slots but the one that slid in, so an
/// item gathers M lines for its first query line and about one for each after it. Gathering all M per query line cost as
/// much as the tiles themselves at 128 x 128 with 13 x 13 (each key row copied and packed about 15 times per head).
/// </para>
/// </remarks>
internal sealed class NeighborhoodSchedule
{
    /// <summary>
    /// Keys an item gathers at most (about): its chunk of queries is cut to keep the gathered panels and values near
    /// 1 MiB at HeadDim 64, so they stay in L2 while its tiles read them.
    /// </summary>
    private const int GatherKeys = 1024;

    /// <summary>
    /// Query lines per work item: enough to gather each key line about once, few enough to give every core items. An item
    /// gathers all its first line's key lines and one more per line after it, so 32 lines gather 1.4 key lines per line
    /// where 16 gathered 1.75 (13 x 13): 0.95-0.97x the time at Vector512, 0.97-1.04x at Vector256, 0.99x at Vector128.
    /// </summary>
    internal const int LinesPerBlock = 32;

    private NeighborhoodComponent? _component;
    private (int SeqLen, int TileRows, int MaxRows) _plannedFor;

    /// <summary>The component the schedule was planned for.</summary>
    public NeighborhoodComponent Component => _component!;

    /// <summary>Lines of the grid (tokens / LineLength).</summary>
    public int Lines { get; private set; }

    /// <summary>The last axis's length: tokens per line.</summary>
    public int LineLength { get; private set; }

    /// <summary>The last axis's kernel size, dilation and causality.</summary>
    public int Kernel { get; private set; }

    public int Dilation { get; private set; }

    public bool Causal { get; private set; }

    /// <summary>Whether items gather their key lines (more than one axis); a 1-D neighbourhood reads its residue streams.</summary>
    public bool Gathers { get; private set; }

    /// <summary>The most key lines a line sees (the leading axes' kernel sizes multiplied).</summary>
    public int MaxKeyLines { get; private set; }

    /// <summary>Queries of one class along a line per work item.</summary>
    public int ChunkRows { get; private set; }

    /// <summary>Chunks per class (of the longest class).</summary>
    public int ChunksPerClass { get; private set; }

    /// <summary>The fastest leading axis's length and dilation (1 and 1 in 1-D): lines of one of its residue classes form a block.</summary>
    public int LeadLength { get; private set; }

    public int LeadDilation { get; private set; }

    /// <summary>Blocks of lines per (slower leading coordinates, lead residue class).</summary>
    public int BlocksPerGroup { get; private set; }

    /// <summary>Groups of lines: the slower leading axes' coordinates times the lead axis's residue classes.</summary>
    public int Groups => Lines / LeadLength * LeadDilation;

    /// <summary>Work items per head: line blocks x classes x chunks.</summary>
    public int ItemsPerHead => Groups * BlocksPerGroup * Dilation * ChunksPerClass;

    /// <summary>Plans <paramref name="component"/> for a call of <paramref name="seqLen"/> tokens and a kernel of <paramref name="tileRows"/> rows.</summary>
    public void Prepare(NeighborhoodComponent component, int seqLen, int tileRows, int maxRows)
    {
        if (ReferenceEquals(component, _component) && _plannedFor == (seqLen, tileRows, maxRows))
        {
            return;
        }

        Span<int> grid = stackalloc int[NeighborhoodComponent.MaxAxes];
        int axes = component.WriteGrid(seqLen, grid), last = axes - 1;
        LineLength = grid[last];
        Lines = seqLen / LineLength;
        Kernel = component.KernelSize[last];
        Dilation = component.Dilation[last];
        Causal = component.CausalAxes[last];
        Gathers = axes > 1;
        MaxKeyLines = component.MaxSegments;
        LeadLength = Gathers ? grid[last - 1] : 1;
        LeadDilation = Gathers ? component.Dilation[last - 1] : 1;
        int linesPerClass = (LeadLength + LeadDilation - 1) / LeadDilation;
        BlocksPerGroup = (linesPerClass + LinesPerBlock - 1) / LinesPerBlock;
        int rows = maxRows;
        if (Gathers)
        {
            // Columns = rows + kernel - 1 at most, each of MaxKeyLines keys.
            rows = Math.Min(maxRows, GatherKeys / MaxKeyLines - (Kernel - 1));
        }

        ChunkRows = Math.Max(tileRows, rows / tileRows * tileRows);
        int longestClass = ClassLength(0);
        ChunksPerClass = Math.Max(1, (longestClass + ChunkRows - 1) / ChunkRows);
        _component = component;
        _plannedFor = (seqLen, tileRows, maxRows);
    }

    /// <summary>Positions of residue class <paramref name="residue"/> along a line.</summary>
    public int ClassLength(int residue) => residue >= LineLength ? 0 : (LineLength - residue + Dilation - 1) / Dilation;

    /// <summary>
    /// A head's work item <paramref name="local"/>: its lines (<paramref name="lineCount"/> from
    /// <paramref name="firstLine"/>, <paramref name="lineStep"/> apart), its residue class of the last axis and its chunk of
    /// that class's queries. Neighbouring items share key lines, so they are numbered chunk fastest, then class, then block.
    /// </summary>
    public void ItemOf(int local, out int firstLine, out int lineStep, out int lineCount, out int residue, out int chunk)
    {
        chunk = local % ChunksPerClass;
        local /= ChunksPerClass;
        residue = local % Dilation;
        local /= Dilation;
        int block = local % BlocksPerGroup;
        int group = local / BlocksPerGroup;
        int leadResidue = group % LeadDilation, outer = group / LeadDilation;
        int first = block * LinesPerBlock;
        int classLines = leadResidue >= LeadLength ? 0 : (LeadLength - leadResidue + LeadDilation - 1) / LeadDilation;
        lineCount = Math.Max(0, Math.Min(LinesPerBlock, classLines - first));
        firstLine = outer * LeadLength + leadResidue + LeadDilation * first;
        lineStep = LeadDilation;
    }

    /// <summary>The columns (class indices) query <paramref name="index"/> of class <paramref name="residue"/> sees along its line.</summary>
    public void ColumnsOf(int residue, int index, out int start, out int count)
    {
        NeighborhoodComponent.AxisKeys(residue + Dilation * index, LineLength, Kernel, Dilation, Causal, out int first, out count);
        start = (first - residue) / Dilation;
    }

    /// <summary>
    /// The next tile from query <paramref name="index"/> (at most <paramref name="tileRows"/> rows, none past
    /// <paramref name="lastIndex"/>) over a stream whose key j·<paramref name="keyLines"/> + m is column
    /// <paramref name="origin"/> + j of key line m, and how the tile kernel is to see it: a band (the interior rule, cut
    /// to the stream) when its rows' keys follow it, else a rectangle of the keys its rows all see. Every row's keys are
    /// compared with its own columns, so a tile is only formed where the form is exact. Returns the tile's rows.
    /// </summary>
    public int NextTile(int residue, int index, int lastIndex, int origin, int keyLines, int streamLength, int tileRows, out long left, out long right, out int keyFirst, out int keyLast)
    {
        long bandLeft = (long)(Causal ? Kernel - 1 : Kernel / 2) * keyLines;
        long bandRight = (long)(Causal ? 1 : Kernel - Kernel / 2) * keyLines - 1;
        StreamRange(residue, index, origin, keyLines, out long first0, out long last0);
        bool band = FitsBand(index, first0, last0);
        int rows = 1;
        while (rows < tileRows && index + rows <= lastIndex)
        {
            StreamRange(residue, index + rows, origin, keyLines, out long first, out long last);
            if (band ? !FitsBand(index + rows, first, last) : first != first0 || last != last0)
            {
                break;
            }

            rows++;
        }

        if (band)
        {
            (left, right, keyFirst, keyLast) = (bandLeft, bandRight, 0, streamLength - 1);
        }
        else
        {
            (left, right, keyFirst, keyLast) = (int.MaxValue, int.MaxValue, (int)first0, (int)last0);
        }

        return rows;

        bool FitsBand(int at, long first, long last)
        {
            long query = (long)(at - origin) * keyLines;
            return first == Math.Max(0, query - bandLeft) && last == Math.Min(streamLength - 1, query + bandRight);
        }
    }

    /// <summary>The stream keys query <paramref name="index"/> sees: its columns' key lines, from column <paramref name="origin"/> on.</summary>
    private void StreamRange(int residue, int index, int origin, int keyLines, out long first, out long last)
    {
        ColumnsOf(residue, index, out int start, out int count);
        first = (long)(start - origin) * keyLines;
        last = (long)(start - origin + count) * keyLines - 1;
    }
}
