namespace Tandem.Mm;

/// <summary>The OR of the fast-only aging answers (compare <c>MMU_NOTIFY_WAS_FAST</c>).</summary>
public readonly struct FastAgeResult
{
    /// <summary>Some MMU that was asked saw an accessed bit in the range.</summary>
    public readonly bool Young;
    /// <summary>
    /// False when at least one registered notifier is not lockless and so was not asked: the answer
    /// is then incomplete and eviction must use the exact (slow) calls.
    /// </summary>
    public readonly bool Complete;

    /// <summary>Creates a result.</summary>
    public FastAgeResult(bool young, bool complete)
    {
        Young = young;
        Complete = complete;
    }
}
