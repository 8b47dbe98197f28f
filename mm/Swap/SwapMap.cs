using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The swap map and the swap cache (compare Linux's <c>swap_info_struct.swap_map</c> and the swap
/// cache): one record per swap slot in fixed arrays allocated once (index = slot), plus, per frame,
/// the slot whose cache entry the frame is. Owned by the memory manager
/// (<see cref="MemoryManager{TPlatform}.AttachSwap"/>); the device only stores page images.
/// </summary>
/// <remarks>
/// <para>Per slot: the device handle of its copy (0: none yet), the swap-cache frame (-1: none, the
/// cache then holds one frame reference), the number of page-table swap entries that name the slot
/// (<c>uses</c>), and a state: idle, <c>WriteBack</c> (a swap-out owns the slot between
/// <c>add_to_swap</c> and the removal from the cache) or <c>Loading</c> (a swap-in is reading the
/// copy into the cache frame: its contents are not valid yet). A slot lives while uses &gt; 0, or
/// it is busy, or its cache frame is mapped; otherwise it is freed with its copy and cache frame
/// (<see cref="FreeIfUnusedLocked"/>).</para>
/// <para>Everything here is protected by <c>_lock</c>, a leaf lock that may be taken inside an
/// address space's page-table lock (never the reverse) and is never held together with the
/// reverse-map lock or the frame allocator's locks. The device is never called and no frame
/// reference is dropped while it is held: those happen after it (docs/locking.md).</para>
/// </remarks>
public sealed unsafe class SwapMap<TPlatform> where TPlatform : struct, IMmPlatform
{
    private const int StateIdle = 0;
    private const int StateWriteBack = 1;
    private const int StateLoading = 2;

    private readonly TPlatform _platform;
    private readonly FrameDatabase<TPlatform> _frames;
    private readonly ulong[] _handle;
    private readonly int[] _cache;
    private readonly int[] _uses;
    private readonly int[] _state;
    private readonly int[] _nextFree;
    private readonly bool[] _free;
    private readonly int[] _slotOfFrame;
    private int _freeHead;
    private SpinLock _lock;

    private int _slotsInUse;
    private long _swapOuts;
    private long _swapIns;
    private long _cacheHits;
    private long _cleanEvictions;
    private long _deviceFull;
    private long _refused;
    private long _loadFailures;

    /// <summary>The backend.</summary>
    public readonly ISwapDevice Device;

    /// <summary>Creates a map of <paramref name="slots"/> slots over <paramref name="device"/>.</summary>
    public SwapMap(TPlatform platform, FrameDatabase<TPlatform> frames, ISwapDevice device, int slots)
    {
        if (slots <= 0 || (ulong)slots > (PageTableEntry.SwapSlotMask >> 12))
            throw new System.ArgumentOutOfRangeException("slots", "swap slot count must be positive and fit the swap-entry encoding");
        _platform = platform;
        _frames = frames;
        Device = device;
        _handle = new ulong[slots];
        _cache = new int[slots];
        _uses = new int[slots];
        _state = new int[slots];
        _nextFree = new int[slots];
        _free = new bool[slots];
        for (int i = 0; i < slots; i++)
        {
            _cache[i] = -1;
            _free[i] = true;
            _nextFree[i] = i + 1 < slots ? i + 1 : -1;
        }
        _freeHead = 0;
        _slotOfFrame = new int[frames.FrameCount];
        for (int i = 0; i < _slotOfFrame.Length; i++)
            _slotOfFrame[i] = -1;
    }

    /// <summary>
    /// Counts slots that a load or a swap-out gave back (state idle again): a fault that found its
    /// slot busy reads it before it looks and waits for it to change
    /// (<see cref="IMmPlatform.WaitForChange"/>), so that it sleeps rather than spins when the
    /// owner was preempted on the same CPU.
    /// </summary>
    internal int SlotsReleased;

    /// <summary>Number of slots.</summary>
    public int Capacity { get { return _handle.Length; } }
    /// <summary>Slots in use (a copy, a cache frame or swap entries refer to them).</summary>
    public int SlotsInUse { get { return Volatile.Read(ref _slotsInUse); } }
    /// <summary>Pages written to the device.</summary>
    public long SwapOuts { get { return Volatile.Read(ref _swapOuts); } }
    /// <summary>Pages read back from the device.</summary>
    public long SwapIns { get { return Volatile.Read(ref _swapIns); } }
    /// <summary>Faults on a swap entry that found the page in the swap cache (no device read).</summary>
    public long CacheHits { get { return Volatile.Read(ref _cacheHits); } }
    /// <summary>Evictions of a clean page that already had a copy: no device write.</summary>
    public long CleanEvictions { get { return Volatile.Read(ref _cleanEvictions); } }
    /// <summary>Evictions stopped because the device was full (the page stayed in the swap cache).</summary>
    public long DeviceFullRefusals { get { return Volatile.Read(ref _deviceFull); } }

    private int _full;

    /// <summary>
    /// The device refused a store and has not freed a copy since: a page with no copy yet would be
    /// refused too, so eviction leaves such pages alone (it stops instead of unmapping pages that
    /// would only fault straight back in from the swap cache). A device free clears it.
    /// </summary>
    public bool DeviceFull { get { return Volatile.Read(ref _full) != 0; } }
    /// <summary>Frames not swapped out because they are mapped more than once (or not anonymous).</summary>
    public long Refused { get { return Volatile.Read(ref _refused); } }
    /// <summary>Swap-ins that failed because the device could not return the copy.</summary>
    public long LoadFailures { get { return Volatile.Read(ref _loadFailures); } }

    /// <summary>The slot whose cache entry <paramref name="frame"/> is, or -1 (racy snapshot, for tests).</summary>
    public int SlotOf(Pfn frame)
    {
        _lock.Enter(_platform);
        int slot = _slotOfFrame[(int)frame.Value];
        _lock.Exit(_platform);
        return slot;
    }

    /// <summary>The device handle of <paramref name="slot"/> (racy snapshot, for tests).</summary>
    public ulong HandleOf(int slot)
    {
        _lock.Enter(_platform);
        ulong h = _handle[slot];
        _lock.Exit(_platform);
        return h;
    }

    /// <summary>Frames in the swap cache (for tests; O(slots)).</summary>
    public int CachedFrames
    {
        get
        {
            int n = 0;
            _lock.Enter(_platform);
            for (int i = 0; i < _cache.Length; i++)
                if (_cache[i] >= 0)
                    n++;
            _lock.Exit(_platform);
            return n;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Swap-out side
    // ------------------------------------------------------------------------------------------

    /// <summary>
    /// add_to_swap: makes <paramref name="frame"/> a swap-cache page owned by this swap-out (state
    /// WriteBack) and returns its slot. A frame that already has a slot (it came back from swap and
    /// was not written, or an earlier eviction stopped) keeps it. -1 when the frame is busy
    /// (another swap-out or a load owns it), when no slot is free, or when it is not an anonymous
    /// page that is mapped (<paramref name="refused"/> then true). A frame mapped several times (a
    /// merged one) is taken: each mapping becomes a swap entry of the one slot. Caller holds a
    /// frame reference.
    /// </summary>
    internal int BeginSwapOut(Pfn frame, out bool refused)
    {
        refused = false;
        int f = (int)frame.Value;
        _lock.Enter(_platform);
        int slot = _slotOfFrame[f];
        if (slot >= 0)
        {
            if (_state[slot] != StateIdle)
            {
                _lock.Exit(_platform);
                return -1;
            }
            _state[slot] = StateWriteBack;
            _lock.Exit(_platform);
            return slot;
        }
        if ((_frames.FlagsOf(frame) & FrameFlags.Anonymous) == 0 || _frames.MapCountOf(frame) == 0)
        {
            _lock.Exit(_platform);
            refused = true;
            Interlocked.Increment(ref _refused);
            return -1;
        }
        slot = _freeHead;
        if (slot < 0)
        {
            _lock.Exit(_platform);
            return -1;
        }
        _freeHead = _nextFree[slot];
        _free[slot] = false;
        _handle[slot] = 0;
        _uses[slot] = 0;
        _state[slot] = StateWriteBack;
        _cache[slot] = f;
        _slotOfFrame[f] = slot;
        _slotsInUse++;
        // The cache's own reference (the caller's keeps the frame live, so the count is > 0).
        _frames.GetRef(frame);
        _frames.SetFlags(frame, FrameFlags.SwapCache);
        _lock.Exit(_platform);
        return slot;
    }

    /// <summary>A swap entry naming <paramref name="slot"/> was written into a page table. Caller holds that page-table lock.</summary>
    internal void AddUseLocked(int slot)
    {
        _lock.Enter(_platform);
        _uses[slot]++;
        _lock.Exit(_platform);
    }

    /// <summary>The device handle of the slot's current copy (0: none). Caller owns the slot (WriteBack).</summary>
    internal ulong CurrentHandle(int slot)
    {
        _lock.Enter(_platform);
        ulong h = _handle[slot];
        _lock.Exit(_platform);
        return h;
    }

    /// <summary>
    /// True when the swap-cache frame <paramref name="frame"/> may be reached by more than the
    /// mapping a write fault is about to upgrade: a swap entry still names its slot (a later
    /// swap-in maps the same frame), or it is mapped more than once. Such a frame must be copied
    /// on write, never made writable in place. The caller holds the page-table lock of the
    /// mapping (the swap-map lock nests inside it); that mapping counts once.
    /// </summary>
    internal bool IsSharedLocked(Pfn frame)
    {
        _lock.Enter(_platform);
        int slot = _slotOfFrame[(int)frame.Value];
        // The uses first, then the map count: a swap-in elsewhere adds its rmap entry (MapCount)
        // before it drops its use, both under its own page-table lock, so a use we see gone was
        // already counted in MapCount when we read it after.
        bool shared = slot >= 0 && _uses[slot] > 0;
        _lock.Exit(_platform);
        return shared || _frames.MapCountOf(frame) > 1;
    }

    /// <summary>Counts an eviction that needed no device write.</summary>
    internal void CountCleanEviction() { Interlocked.Increment(ref _cleanEvictions); }

    /// <summary>Counts a device-full refusal; true the first time (the caller reports it once).</summary>
    internal bool CountDeviceFull()
    {
        Volatile.Write(ref _full, 1);
        return Interlocked.Increment(ref _deviceFull) == 1;
    }

    /// <summary>Frees a device copy (no mm lock held): the device has room again.</summary>
    private void FreeCopy(ulong handle)
    {
        Device.Free(handle);
        Volatile.Write(ref _full, 0);
    }

    /// <summary>
    /// The end of a swap-out that owned <paramref name="slot"/> (the caller still holds its own
    /// frame reference). <paramref name="newHandle"/> != 0: a new copy was stored; the old one is
    /// freed. Then the frame leaves the swap cache only if nobody took it meanwhile: swap entries
    /// still name the slot, only the caller and the cache hold references, nothing maps it, and it
    /// was not written since the caller cleared its dirty flag; and only if the slot has a copy.
    /// Returns true when the frame left the cache (the caller then drops its own reference and the
    /// frame is freed).
    /// </summary>
    internal bool EndSwapOut(int slot, Pfn frame, ulong newHandle, int callerReferences = 0)
    {
        ulong oldHandle = 0;
        ulong freeHandle;
        int putFrame = -1;
        bool left = false;
        _lock.Enter(_platform);
        if (newHandle != 0)
        {
            oldHandle = _handle[slot];
            _handle[slot] = newHandle;
            Interlocked.Increment(ref _swapOuts);
        }
        _state[slot] = StateIdle;
        Interlocked.Increment(ref SlotsReleased);
        // Reference count first, then the flags: a mapping that wrote the frame and went away set
        // Dirty before its PutRef (full barrier), so a count that shows it gone shows its D too.
        if (_uses[slot] > 0 && _handle[slot] != 0
            && _frames.RefCountOf(frame) == 2 + callerReferences && _frames.MapCountOf(frame) == 0
            && (_frames.FlagsOf(frame) & FrameFlags.Dirty) == 0)
        {
            RemoveFromCacheLocked(slot, frame);
            putFrame = (int)frame.Value;
            left = true;
        }
        freeHandle = FreeIfUnusedLocked(slot, ref putFrame);
        _lock.Exit(_platform);
        // Outside the lock: the device and the frame allocator.
        if (oldHandle != 0)
            FreeCopy(oldHandle);
        if (freeHandle != 0)
            FreeCopy(freeHandle);
        if (putFrame >= 0)
        {
            left = true;
            _frames.PutRef(new Pfn((ulong)putFrame));
        }
        return left;
    }

    // ------------------------------------------------------------------------------------------
    // Swap-in side
    // ------------------------------------------------------------------------------------------

    /// <summary>What <see cref="LookupLocked"/> found.</summary>
    internal enum Lookup
    {
        /// <summary>The cache frame is valid; a reference was taken for the caller.</summary>
        Hit,
        /// <summary>The caller now loads the copy into its spare frame, which became the cache frame (state Loading).</summary>
        Load,
        /// <summary>Another thread is loading the slot: wait and retry.</summary>
        Busy,
        /// <summary>Not cached and the caller has no spare frame: allocate one and retry.</summary>
        NeedFrame,
    }

    /// <summary>
    /// The swap-in lookup for <paramref name="slot"/>, named by a swap entry that the caller just
    /// re-read under its page-table lock (so the slot is live). Hit: <paramref name="frame"/> is
    /// the cache frame with a reference for the caller. Load: <paramref name="spare"/> (a fresh
    /// frame with the caller's reference) is now the cache frame, the caller reads
    /// <paramref name="handle"/> into it and calls <see cref="EndLoad"/>.
    /// </summary>
    internal Lookup LookupLocked(int slot, Pfn spare, bool haveSpare, out Pfn frame, out ulong handle)
    {
        frame = default;
        handle = 0;
        _lock.Enter(_platform);
        int c = _cache[slot];
        if (c >= 0)
        {
            if (_state[slot] == StateLoading)
            {
                _lock.Exit(_platform);
                return Lookup.Busy;
            }
            frame = new Pfn((ulong)c);
            // The cache holds a reference, so the count is > 0; taken under _lock, which
            // EndSwapOut's reference check also holds.
            _frames.GetRef(frame);
            _lock.Exit(_platform);
            Interlocked.Increment(ref _cacheHits);
            return Lookup.Hit;
        }
        if (!haveSpare)
        {
            _lock.Exit(_platform);
            return Lookup.NeedFrame;
        }
        handle = _handle[slot];
        _state[slot] = StateLoading;
        _cache[slot] = (int)spare.Value;
        _slotOfFrame[(int)spare.Value] = slot;
        _frames.GetRef(spare);   // the cache's reference
        _frames.SetFlags(spare, FrameFlags.Anonymous | FrameFlags.SwapCache);
        _lock.Exit(_platform);
        frame = spare;
        return Lookup.Load;
    }

    /// <summary>
    /// The end of a load into the cache frame. Success: the frame becomes valid for other
    /// faulters. Failure: the frame leaves the cache (the caller then drops its own reference,
    /// which frees it); the slot and its copy stay for whoever asks again.
    /// </summary>
    internal void EndLoad(int slot, Pfn frame, bool loaded)
    {
        int putFrame = -1;
        _lock.Enter(_platform);
        _state[slot] = StateIdle;
        Interlocked.Increment(ref SlotsReleased);
        if (loaded)
            Interlocked.Increment(ref _swapIns);
        else
        {
            Interlocked.Increment(ref _loadFailures);
            RemoveFromCacheLocked(slot, frame);
            putFrame = (int)frame.Value;
        }
        ulong freeHandle = FreeIfUnusedLocked(slot, ref putFrame);
        _lock.Exit(_platform);
        if (freeHandle != 0)
            FreeCopy(freeHandle);
        if (putFrame >= 0)
            _frames.PutRef(new Pfn((ulong)putFrame));
    }

    /// <summary>A swap entry naming <paramref name="slot"/> was replaced by a present entry for its cache frame. Caller holds that page-table lock.</summary>
    internal void DropUseForInstallLocked(int slot)
    {
        _lock.Enter(_platform);
        _uses[slot]--;
        _lock.Exit(_platform);
    }

    // ------------------------------------------------------------------------------------------
    // Teardown side
    // ------------------------------------------------------------------------------------------

    /// <summary>
    /// A swap entry naming <paramref name="slot"/> was removed from a page table (unmap, teardown).
    /// Frees the slot, its copy and its cache frame when nothing else needs them. Call with no mm
    /// lock held.
    /// </summary>
    internal void PutUse(int slot)
    {
        int putFrame = -1;
        _lock.Enter(_platform);
        _uses[slot]--;
        if (_uses[slot] < 0)
        {
            _lock.Exit(_platform);
            throw new System.InvalidOperationException("SwapMap: swap-entry use count below zero");
        }
        ulong freeHandle = FreeIfUnusedLocked(slot, ref putFrame);
        _lock.Exit(_platform);
        if (freeHandle != 0)
            FreeCopy(freeHandle);
        if (putFrame >= 0)
            _frames.PutRef(new Pfn((ulong)putFrame));
    }

    /// <summary>
    /// A mapping of the swap-cache frame <paramref name="frame"/> went away (its reference not yet
    /// dropped by the caller, or the frame otherwise live): if no swap entry names its slot and
    /// nothing maps it, the slot, its copy and the cache's reference go. Call with no mm lock held.
    /// </summary>
    internal void ReleaseIfUnused(Pfn frame)
    {
        int putFrame = -1;
        _lock.Enter(_platform);
        int slot = _slotOfFrame[(int)frame.Value];
        ulong freeHandle = slot >= 0 ? FreeIfUnusedLocked(slot, ref putFrame) : 0;
        _lock.Exit(_platform);
        if (freeHandle != 0)
            FreeCopy(freeHandle);
        if (putFrame >= 0)
            _frames.PutRef(new Pfn((ulong)putFrame));
    }

    /// <summary>
    /// Frees <paramref name="slot"/> if no swap entry names it, no swap-out or load owns it, and its
    /// cache frame (if any) is not mapped: returns the handle to free and sets
    /// <paramref name="putFrame"/> to the cache frame whose reference to drop, both after the lock.
    /// A mapped cache frame keeps the slot (a clean page keeps its copy) until its last mapping goes.
    /// </summary>
    private ulong FreeIfUnusedLocked(int slot, ref int putFrame)
    {
        if (_free[slot] || _uses[slot] != 0 || _state[slot] != StateIdle)
            return 0;
        int c = _cache[slot];
        if (c >= 0)
        {
            Pfn f = new Pfn((ulong)c);
            // A new mapping of the frame needs a swap entry (uses > 0) or a reference we would see;
            // the install that consumed the last use added its rmap entry before (same thread,
            // before its release of _lock), so MapCount is current here.
            if (_frames.MapCountOf(f) != 0)
                return 0;
            RemoveFromCacheLocked(slot, f);
            putFrame = c;
        }
        ulong h = _handle[slot];
        _handle[slot] = 0;
        _nextFree[slot] = _freeHead;
        _freeHead = slot;
        _free[slot] = true;
        _slotsInUse--;
        return h;
    }

    /// <summary>Copies freed by <see cref="FreeCopiesOfMappedPages"/>.</summary>
    public long CopiesOfMappedPagesFreed { get { return Volatile.Read(ref _mappedCopiesFreed); } }

    private long _mappedCopiesFreed;
    private int _trimCursor;

    /// <summary>
    /// The device is full: frees up to <paramref name="max"/> copies that only save a write. Such a
    /// copy belongs to a page a swap-in brought back and kept in the swap cache, clean, that is
    /// mapped exactly once and that no swap entry names any more: its contents are in memory, so
    /// the copy goes and the page becomes a plain anonymous page again (its next eviction stores
    /// it anew). Linux does the same when swap runs full (<c>vm_swap_full</c>, then
    /// <c>folio_free_swap</c>). Pages owned by a swap-out or a load, merged frames and frames mapped
    /// more than once are left alone. Returns the copies freed. Call with no mm lock held.
    /// </summary>
    internal int FreeCopiesOfMappedPages(int max)
    {
        const int Batch = 32;
        if (max > Batch)
            max = Batch;
        ulong* handles = stackalloc ulong[Batch];
        int* frames = stackalloc int[Batch];
        int n = 0;
        _lock.Enter(_platform);
        int slots = _handle.Length;
        int slot = _trimCursor;
        for (int scanned = 0; scanned < slots && n < max; scanned++, slot = slot + 1 == slots ? 0 : slot + 1)
        {
            int c = _cache[slot];
            if (c < 0 || _state[slot] != StateIdle || _uses[slot] != 0 || _handle[slot] == 0)
                continue;
            Pfn f = new Pfn((ulong)c);
            // Mapped once, by the mapping that owns it alone: no other path reaches the slot (a new
            // mapping needs a swap entry, and none names it), and nothing else maps the frame.
            if (_frames.MapCountOf(f) != 1 || (_frames.FlagsOf(f) & FrameFlags.Merged) != 0)
                continue;
            RemoveFromCacheLocked(slot, f);
            handles[n] = _handle[slot];
            frames[n] = c;
            n++;
            _handle[slot] = 0;
            _nextFree[slot] = _freeHead;
            _freeHead = slot;
            _free[slot] = true;
            _slotsInUse--;
        }
        _trimCursor = slot;
        _lock.Exit(_platform);
        for (int i = 0; i < n; i++)
        {
            FreeCopy(handles[i]);
            _frames.PutRef(new Pfn((ulong)frames[i]));     // the cache's reference; the mapping's stays
        }
        Interlocked.Add(ref _mappedCopiesFreed, n);
        return n;
    }

    private void RemoveFromCacheLocked(int slot, Pfn frame)
    {
        _cache[slot] = -1;
        _slotOfFrame[(int)frame.Value] = -1;
        _frames.ClearFlags(frame, FrameFlags.SwapCache);
    }
}
