namespace Tandem.Mm;

public sealed partial class FrameDatabase<TPlatform>
{
    // Buddy state; everything below is protected by _zoneLock.
    private SpinLock _zoneLock;
    private readonly int[] _freeHead;
    private readonly int[] _freeBlocks;
    private int _freeFrames;

    /// <summary>Frames currently free in the buddy lists (not counting per-CPU caches).</summary>
    public int BuddyFreeFrames { get { return System.Threading.Volatile.Read(ref _freeFrames); } }

    /// <summary>Free blocks of <paramref name="order"/> (racy snapshot, for tests).</summary>
    public int FreeBlocks(int order) { return System.Threading.Volatile.Read(ref _freeBlocks[order]); }

    private void SeedBuddy(int first, int count)
    {
        int i = first;
        while (i < count)
        {
            int order = MaxOrder;
            while (order > 0 && ((i & ((1 << order) - 1)) != 0 || i + (1 << order) > count))
                order--;
            PushFree(i, order);
            _freeFrames += 1 << order;
            i += 1 << order;
        }
    }

    /// <summary>Allocates 2^<paramref name="order"/> contiguous frames straight from the buddy lists
    /// (order 0 normally goes through <see cref="AllocateFrame"/>). The head's count is 1.</summary>
    public bool TryAllocate(int order, out Pfn frame)
    {
        _zoneLock.Enter(_platform);
        int index = TakeBlockLocked(order);
        _zoneLock.Exit(_platform);
        if (index < 0)
        {
            frame = default;
            return false;
        }
        frame = new Pfn((ulong)index);
        PrepareNew(index);
        return true;
    }

    /// <summary>Returns 2^<paramref name="order"/> frames starting at <paramref name="frame"/> to the buddy lists.</summary>
    public void Free(Pfn frame, int order)
    {
        if (order == 0)
        {
            FreeFrame(frame);
            return;
        }
        FreeToBuddy((int)frame.Value, order);
    }

    private void FreeToBuddy(int index, int order)
    {
        _zoneLock.Enter(_platform);
        FreeBlockLocked(index, order);
        _zoneLock.Exit(_platform);
    }

    private void PrepareNew(int index)
    {
        ref FrameRecord r = ref _frames[index];
        r.Flags = 0;
        r.MapCount = 0;
        r.RmapHead = -1;
        r.LruGeneration = 0;
        // Publishes the fresh record before any mapping makes the frame reachable (the mapping
        // is installed later with a release store).
        System.Threading.Volatile.Write(ref r.RefCount, 1);
    }

    private int TakeBlockLocked(int order)
    {
        int o = order;
        while (o <= MaxOrder && _freeHead[o] < 0)
            o++;
        if (o > MaxOrder)
            return -1;
        int index = _freeHead[o];
        Unlink(index, o);
        while (o > order)
        {
            o--;
            PushFree(index + (1 << o), o);
        }
        _freeFrames -= 1 << order;
        return index;
    }

    private void FreeBlockLocked(int index, int order)
    {
        _freeFrames += 1 << order;
        while (order < MaxOrder)
        {
            int buddy = index ^ (1 << order);
            if (buddy >= _frames.Length)
                break;
            ref FrameRecord b = ref _frames[buddy];
            if ((b.Flags & (int)FrameFlags.Free) == 0 || b.Order != order)
                break;
            Unlink(buddy, order);
            if (buddy < index)
                index = buddy;
            order++;
        }
        PushFree(index, order);
    }

    private void PushFree(int index, int order)
    {
        ref FrameRecord r = ref _frames[index];
        r.Flags = (int)FrameFlags.Free;
        r.Order = order;
        r.PrevFree = -1;
        r.NextFree = _freeHead[order];
        if (r.NextFree >= 0)
            _frames[r.NextFree].PrevFree = index;
        _freeHead[order] = index;
        _freeBlocks[order]++;
    }

    private void Unlink(int index, int order)
    {
        ref FrameRecord r = ref _frames[index];
        if (r.PrevFree >= 0)
            _frames[r.PrevFree].NextFree = r.NextFree;
        else
            _freeHead[order] = r.NextFree;
        if (r.NextFree >= 0)
            _frames[r.NextFree].PrevFree = r.PrevFree;
        r.NextFree = -1;
        r.PrevFree = -1;
        r.Flags = 0;
        _freeBlocks[order]--;
    }
}
