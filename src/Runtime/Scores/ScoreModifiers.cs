using System;

namespace SparseAttention;

/// <summary>
/// What a declaration does to each score between q·k and the softmax, in this order (docs/design.md §2.4):
/// <code>
/// s = scale · q·k → cap · tanh(s / cap) (Softcap) → s - slope_h · |i - j| (ALiBi) → ScoreMod(s, i, j, h) → softmax (+ sink)
/// </code>
/// Generated kernels expose theirs as <c>Scores</c>; <see cref="ReferenceAttention"/> applies it literally. A compiled-in
/// mask is part of the pattern (<see cref="AttentionPattern.Mask"/>), since it decides what a query sees.
/// </summary>
public sealed record ScoreModifiers
{
    private readonly float? _softcap;

    /// <summary>No modifier: plain softmax(scale · QKᵀ)V.</summary>
    public static ScoreModifiers None { get; } = new();

    /// <summary>The softcap: scores become cap · tanh(score / cap). Null for none; otherwise a finite float greater than 0.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is NaN, infinite, 0 or negative.</exception>
    public float? Softcap
    {
        get => _softcap;
        init
        {
            if (value is float cap && !(cap > 0f && float.IsFinite(cap)))
            {
                throw new ArgumentOutOfRangeException(nameof(Softcap), cap, "Softcap must be a finite number greater than 0 (Gemma 2 uses 50).");
            }

            _softcap = value;
        }
    }

    /// <summary>Whether ALiBi's bias -slope_h · |i - j| is added (slopes from <see cref="AlibiSlopes"/> or the call's options).</summary>
    public bool Alibi { get; init; }

    /// <summary>A user score modifier f(score, query, key, head) in natural units (FlexAttention's score_mod), or null.</summary>
    public Func<float, int, int, int, float>? ScoreMod { get; init; }

    /// <summary>Whether each query head has a learned sink logit that joins the softmax's denominator.</summary>
    public bool LearnedSinks { get; init; }

    /// <summary>
    /// Applies softcap, ALiBi and the score mod to one score (natural units), as the reference does; the kernels do the
    /// same in base 2.
    /// </summary>
    public double Apply(double score, int query, int key, int head, double alibiSlope)
    {
        if (_softcap is float cap)
        {
            score = cap * Math.Tanh(score / cap);
        }

        if (Alibi)
        {
            score -= alibiSlope * Math.Abs((long)query - key);
        }

        if (ScoreMod is { } mod)
        {
            score = mod((float)score, query, key, head);
        }

        return score;
    }
}
