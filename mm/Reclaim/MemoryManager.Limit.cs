using System.Threading;

namespace Tandem.Mm;

public sealed partial class MemoryManager<TPlatform>
{
    private int _residentLimit;
    private long _limitReclaims;

    /// <summary>
    /// A soft limit on resident anonymous pages (the guests' RAM, counted on the LRU lists), 0 for
    /// none (the kernel's <c>mem.limit=</c>). A fault that finds the limit reached reclaims first
    /// (direct reclaim, bounded); it is never refused for the limit alone (only an empty allocator
    /// refuses it), so a guest is never stopped by it: when nothing can be evicted (a full swap
    /// device, every page young) the limit is overshot and <see cref="Headroom"/> goes negative,
    /// which keeps the reclaimer working.
    /// </summary>
    public int ResidentLimit
    {
        get { return Volatile.Read(ref _residentLimit); }
        set { Volatile.Write(ref _residentLimit, value); }
    }

    /// <summary>Frames a fault may still take: the allocator's free frames, or less when the resident limit is nearer (negative when over it).</summary>
    public int Headroom
    {
        get
        {
            int free = Frames.BuddyFreeFrames;
            int limit = ResidentLimit;
            if (limit == 0)
                return free;
            int room = limit - Lru.Listed;
            return room < free ? room : free;
        }
    }

    /// <summary>Direct reclaims run because a fault found the resident limit reached.</summary>
    public long LimitReclaims { get { return Volatile.Read(ref _limitReclaims); } }

    /// <summary>Before a fault takes a frame for anonymous memory: at or over the resident limit, reclaim first (no lock held).</summary>
    internal void ReclaimIfOverLimit()
    {
        int limit = ResidentLimit;
        if (limit == 0 || Lru.Listed < limit)
            return;
        // A full swap device: eviction could only drop clean copies; not worth an aging pass on
        // every fault (the reclaimer thread still takes what it can).
        SwapMap<TPlatform>? swap = Swap;
        if (swap != null && swap.DeviceFull)
            return;
        Interlocked.Increment(ref _limitReclaims);
        DirectReclaim();
    }
}
