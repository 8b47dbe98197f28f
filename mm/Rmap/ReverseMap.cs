namespace Tandem.Mm;

/// <summary>
/// The reverse map: for each tracked frame, the list of (address space, virtual address) pairs
/// whose primary 4 KiB entry maps it. Entries live in fixed, index-linked pools allocated once (no
/// allocation per mapping); a frame's list starts at <see cref="FrameRecord.RmapHead"/>.
/// </summary>
/// <remarks>
/// Everything here, and <see cref="FrameRecord.MapCount"/>/<see cref="FrameRecord.RmapHead"/>, is
/// protected by one lock, taken inside the page-table lock of the address space whose entry changes
/// (lock order: page-table lock, then rmap lock). Readers that must then take a page-table lock
/// copy one entry out and drop the rmap lock first.
/// </remarks>
public sealed class ReverseMap<TPlatform> where TPlatform : struct, IMmPlatform
{
    private readonly TPlatform _platform;
    private readonly FrameDatabase<TPlatform> _frames;
    private readonly AddressSpace<TPlatform>?[] _space;
    private readonly ulong[] _address;
    private readonly int[] _next;
    private readonly ulong[] _stamp;
    private ulong _lastStamp;
    private int _freeHead;
    private int _used;
    private SpinLock _lock;

    /// <summary>The LRU a frame leaves when its last mapping is removed (set once by the memory manager).</summary>
    internal LruGenerations<TPlatform>? Lru;

    /// <summary>Creates a pool of <paramref name="capacity"/> entries.</summary>
    public ReverseMap(TPlatform platform, FrameDatabase<TPlatform> frames, int capacity)
    {
        _platform = platform;
        _frames = frames;
        _space = new AddressSpace<TPlatform>?[capacity];
        _address = new ulong[capacity];
        _next = new int[capacity];
        _stamp = new ulong[capacity];
        for (int i = 0; i < capacity; i++)
            _next[i] = i + 1 < capacity ? i + 1 : -1;
        _freeHead = capacity > 0 ? 0 : -1;
    }

    /// <summary>Entries in use (for tests).</summary>
    public int Used { get { return System.Threading.Volatile.Read(ref _used); } }

    /// <summary>Records that <paramref name="space"/> maps <paramref name="frame"/> at <paramref name="address"/>.
    /// Caller holds the page-table lock of <paramref name="space"/>. False if the pool is exhausted.</summary>
    public bool Add(Pfn frame, AddressSpace<TPlatform> space, VirtAddr address)
    {
        _lock.Enter(_platform);
        int e = _freeHead;
        if (e < 0)
        {
            _lock.Exit(_platform);
            return false;
        }
        _freeHead = _next[e];
        ref FrameRecord r = ref _frames.Record(frame);
        _space[e] = space;
        _address[e] = address.Value;
        // Stamps grow with every insertion and a list is kept newest first (entries are only
        // ever added at the head), so a cursor can find its place again by stamp.
        _stamp[e] = ++_lastStamp;
        _next[e] = r.RmapHead;
        r.RmapHead = e;
        r.MapCount++;
        _used++;
        _lock.Exit(_platform);
        return true;
    }

    /// <summary>Removes the entry (space, address) of <paramref name="frame"/>. Caller holds the
    /// page-table lock of <paramref name="space"/>. False if there was none.</summary>
    public bool Remove(Pfn frame, AddressSpace<TPlatform> space, VirtAddr address)
    {
        _lock.Enter(_platform);
        ref FrameRecord r = ref _frames.Record(frame);
        int prev = -1;
        int e = r.RmapHead;
        while (e >= 0 && !(_space[e] == space && _address[e] == address.Value))
        {
            prev = e;
            e = _next[e];
        }
        if (e < 0)
        {
            _lock.Exit(_platform);
            return false;
        }
        if (prev < 0)
            r.RmapHead = _next[e];
        else
            _next[prev] = _next[e];
        r.MapCount--;
        int left = r.MapCount;
        _space[e] = null;
        _stamp[e] = 0;
        _next[e] = _freeHead;
        _freeHead = e;
        _used--;
        _lock.Exit(_platform);
        // The last mapping went: the frame leaves the LRU (after the rmap lock is dropped: the two
        // locks are never held together; the caller's page-table lock is still held).
        if (left == 0 && Lru != null)
            Lru.Remove(frame);
        return true;
    }

    /// <summary>
    /// Copies out the next mapping of <paramref name="frame"/> after <paramref name="cursor"/>
    /// (start with <c>default</c>); false past the end. Each call takes the lock once and moves on
    /// from where the last one stopped, so a whole walk is O(n) while the list changes under it:
    /// a mapping present for the whole walk is visited exactly once; one added during the walk
    /// may be missed (it is newer than the walk).
    /// </summary>
    public bool TryGetNext(Pfn frame, ref RmapCursor cursor, out AddressSpace<TPlatform>? space, out VirtAddr address)
    {
        _lock.Enter(_platform);
        int e;
        if (cursor.Stamp == 0)
            e = _frames.Record(frame).RmapHead;
        else if (_stamp[cursor.Entry] == cursor.Stamp)
            e = _next[cursor.Entry];    // still listed: its successor is our next
        else
        {
            // Our entry was removed meanwhile: skip everything at least as new as it (the list
            // is sorted by stamp, newest first).
            e = _frames.Record(frame).RmapHead;
            while (e >= 0 && _stamp[e] >= cursor.Stamp)
                e = _next[e];
        }
        if (e < 0)
        {
            _lock.Exit(_platform);
            space = null;
            address = default;
            return false;
        }
        cursor = new RmapCursor(e, _stamp[e]);
        space = _space[e];
        address = new VirtAddr(_address[e]);
        _lock.Exit(_platform);
        return true;
    }

    /// <summary>True when (space, address) is listed for <paramref name="frame"/>.</summary>
    public bool Contains(Pfn frame, AddressSpace<TPlatform> space, VirtAddr address)
    {
        _lock.Enter(_platform);
        int e = _frames.Record(frame).RmapHead;
        while (e >= 0 && !(_space[e] == space && _address[e] == address.Value))
            e = _next[e];
        _lock.Exit(_platform);
        return e >= 0;
    }
}

/// <summary>A position in one frame's reverse-map list (see <see cref="ReverseMap{TPlatform}.TryGetNext"/>).</summary>
public readonly struct RmapCursor
{
    /// <summary>The entry last returned.</summary>
    public readonly int Entry;
    /// <summary>Its insertion stamp (0: before the first entry).</summary>
    public readonly ulong Stamp;

    /// <summary>Creates a cursor.</summary>
    public RmapCursor(int entry, ulong stamp)
    {
        Entry = entry;
        Stamp = stamp;
    }
}
