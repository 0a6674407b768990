using System;

namespace SparseAttention
{
    /// <summary>
    /// A learned sink logit per query head joins each row's softmax denominator and carries no value (gpt-oss): the
    /// generated methods take <c>ReadOnlySpan&lt;float&gt; sinkLogits</c>, one logit per query head.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class LearnedSinksAttribute : Attribute
    {
    }
}
