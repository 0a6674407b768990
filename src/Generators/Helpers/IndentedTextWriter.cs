using System;
using System.Text;

namespace SparseAttention.Generators.Helpers;

/// <summary>
/// Writes C# source line by line with four-space indentation; <see cref="Block"/> opens a brace block that
/// closes when disposed. Output is plain text, so the generated code reads like hand-written code.
/// </summary>
internal sealed class IndentedTextWriter
{
    private readonly StringBuilder _text = new();
    private int _depth;

    public void Line(string line = "")
    {
        if (line.Length > 0)
        {
            _text.Append(' ', _depth * 4);
        }

        _text.Append(line).Append('\n');
    }

    public BlockScope Block(string? header = null, string closing = "}")
    {
        if (header != null)
        {
            Line(header);
        }

        Line("{");
        _depth++;
        return new BlockScope(this, closing);
    }

    public override string ToString() => _text.ToString();

    internal readonly struct BlockScope : IDisposable
    {
        private readonly IndentedTextWriter _writer;
        private readonly string _closing;

        public BlockScope(IndentedTextWriter writer, string closing)
        {
            _writer = writer;
            _closing = closing;
        }

        public void Dispose()
        {
            _writer._depth--;
            _writer.Line(_closing);
        }
    }
}
