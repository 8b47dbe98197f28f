namespace Tandem.Mm;

/// <summary>
/// A CPU's stack of free order-0 frames (compare Linux's per-cpu pageset). Its lock is taken only
/// by its own CPU, except when frames are drained, so it is almost never contended; it is there so
/// the cache stays correct even if a context migrates between reading the CPU index and using it.
/// </summary>
public sealed class PerCpuFrameCache
{
    /// <summary>Frames moved from/to the buddy lists at once.</summary>
    public const int Batch = 16;
    /// <summary>Above this many cached frames, a batch goes back to the buddy lists.</summary>
    public const int High = 64;

    /// <summary>Protects <see cref="Frames"/> and <see cref="Count"/>.</summary>
    public SpinLock Lock;
    /// <summary>Cached frame indexes.</summary>
    public readonly int[] Frames = new int[High + Batch];
    /// <summary>Number of cached frames.</summary>
    public int Count;
}
