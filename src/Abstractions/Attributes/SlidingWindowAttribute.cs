using System;

namespace SparseAttention
{
    /// <summary>
    /// A local window around each query. Query <c>i</c> sees key <c>j = i + t*D</c> for every integer
    /// <c>t</c> with <c>-Left &lt;= t &lt;= Right</c>, where <c>D</c> is the dilation (1 unless
    /// <see cref="DilationAttribute"/> is present). This is FlashAttention's <c>window_size=(left, right)</c>.
    /// </summary>
    /// <remarks>
    /// <see cref="Size"/> is the causal shorthand: <c>Size = W</c> means <c>Left = W - 1, Right = 0</c>,
    /// i.e. W keys including the query itself (llama.cpp's <c>n_swa</c>). Set either Size, or Left/Right.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class SlidingWindowAttribute : Attribute
    {
        /// <summary>How many window steps back from the query are visible.</summary>
        public int Left { get; set; }

        /// <summary>How many window steps forward from the query are visible (never, under Causal).</summary>
        public int Right { get; set; }

        /// <summary>Window of <c>Size</c> keys ending at the query itself: <c>Left = Size - 1, Right = 0</c>.</summary>
        public int Size { get; set; }
    }
}
