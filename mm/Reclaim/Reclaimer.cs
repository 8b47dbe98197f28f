namespace Tandem.Mm;

/// <summary>
/// The background reclaimer (compare kswapd with MGLRU): a kernel thread or a host test thread
/// calls <see cref="RunOnce"/> in a loop. Nothing happens while the free frames are at or above
/// <see cref="LowWatermark"/>; below it, eviction (and aging whenever eviction needs a new
/// generation) runs until <see cref="HighWatermark"/> free frames are reached or no progress is
/// possible.
/// </summary>
/// <remarks>
/// Free frames are the buddy allocator's (<see cref="FrameDatabase{TPlatform}.BuddyFreeFrames"/>):
/// frames cached per CPU (at most <see cref="PerCpuFrameCache.High"/> each) are not counted, so
/// the watermarks are approximate by that much. Call with no mm lock held.
/// </remarks>
public sealed class Reclaimer<TPlatform> where TPlatform : struct, IMmPlatform
{
    /// <summary>Pages evicted per eviction round.</summary>
    public const int Batch = 32;
    /// <summary>Rounds in a row without an eviction after which <see cref="RunOnce"/> gives up.</summary>
    public const int MaxIdleRounds = 8;

    private readonly MemoryManager<TPlatform> _mm;

    /// <summary>Below this many free frames, <see cref="RunOnce"/> reclaims.</summary>
    public int LowWatermark;
    /// <summary><see cref="RunOnce"/> reclaims until this many frames are free.</summary>
    public int HighWatermark;

    /// <summary>Creates a reclaimer with the given watermarks (frames; high ≥ low).</summary>
    public Reclaimer(MemoryManager<TPlatform> mm, int lowWatermark, int highWatermark)
    {
        if (highWatermark < lowWatermark)
            throw new System.ArgumentException("Reclaimer: the high watermark is below the low one");
        _mm = mm;
        LowWatermark = lowWatermark;
        HighWatermark = highWatermark;
    }

    /// <summary>Free frames as the watermarks count them: the allocator's, or the room left under the resident limit when that is less (<see cref="MemoryManager{TPlatform}.Headroom"/>).</summary>
    public int FreeFrames { get { return _mm.Headroom; } }

    /// <summary>
    /// One reclaim run: 0 at once if at least <see cref="LowWatermark"/> frames are free; otherwise
    /// evicts until <see cref="HighWatermark"/> are free, running an aging pass whenever eviction
    /// found nothing to take. Returns the pages evicted. Bounded: it stops after
    /// <see cref="MaxIdleRounds"/> rounds in a row that evicted nothing.
    /// </summary>
    public int RunOnce()
    {
        if (FreeFrames >= LowWatermark)
            return 0;
        int total = 0;
        int idle = 0;
        while (FreeFrames < HighWatermark && idle < MaxIdleRounds)
        {
            int want = HighWatermark - FreeFrames;
            int got = _mm.Evict(want < Batch ? want : Batch);
            total += got;
            if (got > 0)
            {
                idle = 0;
                continue;
            }
            idle++;
            // Nothing evictable in the oldest generations (or all of it was young): age.
            _mm.AgingPass();
        }
        return total;
    }
}
