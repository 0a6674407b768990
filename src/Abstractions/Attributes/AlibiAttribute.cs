using System;

namespace SparseAttention
{
    /// <summary>
    /// Adds ALiBi's linear bias to every score (BLOOM, MPT): <c>score -= slope_h · |i - j|</c>, with the paper's slopes for
    /// the call's number of query heads unless <c>AttentionOptions.AlibiSlopes</c> gives them.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class AlibiAttribute : Attribute
    {
    }
}
