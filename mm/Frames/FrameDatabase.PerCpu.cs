using System.Threading;

namespace Tandem.Mm;

public sealed partial class FrameDatabase<TPlatform>
{
    private readonly PerCpuFrameCache[] _perCpu;

    /// <summary>Free frames parked in the per-CPU caches (a racy sum: exact only when nobody allocates or frees).</summary>
    public int CachedFrames
    {
        get
        {
            int n = 0;
            for (int i = 0; i < _perCpu.Length; i++)
                n += Volatile.Read(ref _perCpu[i].Count);
            return n;
        }
    }

    /// <summary>Allocates one frame, from the current CPU's cache when possible. Count starts at 1.
    /// The contents are not cleared.</summary>
    public bool AllocateFrame(out Pfn frame)
    {
        PerCpuFrameCache cache = _perCpu[_platform.CurrentCpu];
        cache.Lock.Enter(_platform);
        if (cache.Count == 0)
        {
            // Refill under the zone lock (lock order: per-CPU cache, then zone).
            _zoneLock.Enter(_platform);
            while (cache.Count < PerCpuFrameCache.Batch)
            {
                int got = TakeBlockLocked(0);
                if (got < 0)
                    break;
                cache.Frames[cache.Count++] = got;
            }
            _zoneLock.Exit(_platform);
        }
        if (cache.Count == 0)
        {
            cache.Lock.Exit(_platform);
            frame = default;
            return false;
        }
        int index = cache.Frames[--cache.Count];
        cache.Lock.Exit(_platform);
        PrepareNew(index);
        frame = new Pfn((ulong)index);
        return true;
    }

    /// <summary>Frees one frame into the current CPU's cache (draining a batch when it is full).</summary>
    public void FreeFrame(Pfn frame)
    {
        PerCpuFrameCache cache = _perCpu[_platform.CurrentCpu];
        cache.Lock.Enter(_platform);
        cache.Frames[cache.Count++] = (int)frame.Value;
        if (cache.Count > PerCpuFrameCache.High)
        {
            _zoneLock.Enter(_platform);
            for (int i = 0; i < PerCpuFrameCache.Batch; i++)
                FreeBlockLocked(cache.Frames[--cache.Count], 0);
            _zoneLock.Exit(_platform);
        }
        cache.Lock.Exit(_platform);
    }

    /// <summary>Returns every per-CPU cached frame to the buddy lists (for accounting in tests).</summary>
    public void DrainCaches()
    {
        for (int c = 0; c < _perCpu.Length; c++)
        {
            PerCpuFrameCache cache = _perCpu[c];
            cache.Lock.Enter(_platform);
            _zoneLock.Enter(_platform);
            while (cache.Count > 0)
                FreeBlockLocked(cache.Frames[--cache.Count], 0);
            _zoneLock.Exit(_platform);
            cache.Lock.Exit(_platform);
        }
    }
}
