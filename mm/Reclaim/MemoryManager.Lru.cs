using System.Threading;

namespace Tandem.Mm;

public sealed partial class MemoryManager<TPlatform>
{
    /// <summary>Pages one direct-reclaim call tries to evict (a faulting thread that found no free frame).</summary>
    public const int DirectReclaimBatch = 32;

    private AddressSpace<TPlatform>?[] _spaces = new AddressSpace<TPlatform>?[0];
    private SpinLock _spacesLock;
    private int _aging;

    /// <summary>
    /// The live address spaces (a snapshot, replaced as a whole on every change; readers take no
    /// lock). A walker takes a user reference (<c>TryGetUser</c>) before touching a space's tables
    /// and skips it when that fails.
    /// </summary>
    public AddressSpace<TPlatform>?[] Spaces { get { return Volatile.Read(ref _spaces); } }

    private void RegisterSpace(AddressSpace<TPlatform> space)
    {
        _spacesLock.Enter(Platform);
        AddressSpace<TPlatform>?[] old = _spaces;
        int live = 0;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i]!.Users > 0)
                live++;
        }
        AddressSpace<TPlatform>?[] next = new AddressSpace<TPlatform>?[live + 1];
        int j = 0;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i]!.Users > 0)
                next[j++] = old[i];
        }
        next[j] = space;
        // Release: the array is filled before it is published; pairs with the read in Spaces.
        Volatile.Write(ref _spaces, next);
        _spacesLock.Exit(Platform);
        Platform.DeferFree(old);
    }

    /// <summary>Called by the teardown of <paramref name="space"/>: it leaves the registry.</summary>
    internal void UnregisterSpace(AddressSpace<TPlatform> space)
    {
        _spacesLock.Enter(Platform);
        AddressSpace<TPlatform>?[] old = _spaces;
        int at = -1;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i] == space)
                at = i;
        }
        if (at >= 0)
        {
            AddressSpace<TPlatform>?[] next = new AddressSpace<TPlatform>?[old.Length - 1];
            int j = 0;
            for (int i = 0; i < old.Length; i++)
            {
                if (i != at)
                    next[j++] = old[i];
            }
            // Release; pairs with the read in Spaces.
            Volatile.Write(ref _spaces, next);
        }
        _spacesLock.Exit(Platform);
        if (at >= 0)
            Platform.DeferFree(old);
    }

    /// <summary>
    /// One aging pass (MGLRU's aging): if the window has room for a new generation, walks every
    /// live address space (user reference held) over its anonymous regions, promoting young pages
    /// to the youngest generation (primary accessed bits and one fast-only notifier call per
    /// last-level table: no MMU lock is ever waited on), then creates generation <c>MaxSeq + 1</c>.
    /// False when another pass is running or the window is full (eviction must empty the oldest
    /// generation first).
    /// </summary>
    public bool AgingPass()
    {
        // One pass at a time; a second caller returns at once (it never waits).
        if (Interlocked.CompareExchange(ref _aging, 1, 0) != 0)
            return false;
        bool done = false;
        if (Lru.HasRoom)
        {
            int maxSeq = Lru.MaxSeq;
            AddressSpace<TPlatform>?[] spaces = Spaces;
            for (int i = 0; i < spaces.Length; i++)
            {
                AddressSpace<TPlatform> space = spaces[i]!;
                if (!space.TryGetUser())
                    continue;
                space.AgeForLru(maxSeq, Lru.FilteredWalk);
                space.PutUser();
            }
            done = Lru.TryIncMaxSeq() >= 0;
            if (done)
                LruStats.Add(ref Lru.Stats._agingPasses, 1);
        }
        // Release: the pass's writes before the next pass may start.
        Volatile.Write(ref _aging, 0);
        return done;
    }

    /// <summary>
    /// Eviction (MGLRU's eviction): takes up to <paramref name="pages"/> pages off the oldest
    /// generation. For each, the exact check first (<see cref="AgeFrame"/> with exact: every MMU,
    /// ClearFlushYoung, which may take a secondary MMU's lock); a page that any MMU saw young stays,
    /// moves to the youngest generation, and its neighbours get a look-around. Only an old page is
    /// unmapped, with <see cref="TryToUnmap"/>. Returns the pages evicted; stops early when only
    /// the two youngest generations are left (an aging pass is needed) or after a bounded number
    /// of young pages.
    /// </summary>
    public int Evict(int pages)
    {
        int evicted = 0;
        int budget = pages * 4 + 16;
        while (evicted < pages && budget-- > 0)
        {
            if (!Lru.TryIsolateOldest(out Pfn frame, out int seq))
                break;
            LruStats.Add(ref Lru.Stats._evictionScans, 1);
            if (AgeFrame(frame, true))
            {
                // Young in some MMU (a failed compare-exchange counts as young): keep it.
                LruStats.Add(ref Lru.Stats._evictionsKeptYoung, 1);
                Lru.Putback(frame, Lru.MaxSeq);
                if (Lru.LookAround)
                    LookAroundFrame(frame);
            }
            else
            {
                AddressSpace<TPlatform>? space = FirstMapping(frame, out VirtAddr address);
                if ((Frames.FlagsOf(frame) & FrameFlags.Huge) != 0 && !SplitForEviction(frame, space, address, seq))
                {
                    // Still one 2 MiB page (unmapped meanwhile, or held): it goes back as it was.
                    Lru.Putback(frame, seq);
                    Frames.PutRef(frame);
                    continue;
                }
                if (space != null)
                    Lru.RecordEviction(space.Id, address, seq);
                if (Frames.MapCountOf(frame) > 0 && UnmapForEviction(frame))
                {
                    evicted++;
                    LruStats.Add(ref Lru.Stats._evictions, 1);
                    if (space != null)
                        LruStats.Add(ref space.Lru.Stats._evictions, 1);
                }
                else
                {
                    if (space != null)
                        Lru.ForgetEviction(space.Id, address);
                    Lru.Putback(frame, seq);
                }
            }
            Frames.PutRef(frame);
        }
        return evicted;
    }

    /// <summary>
    /// An old tracked 2 MiB page is split before any of it leaves memory (through the notifiers:
    /// a secondary's 2 MiB leaf over it goes, and faults back at 4 KiB). Its 512 pages then stay
    /// on the generation it was taken from, to be evicted one by one, this one first. The eviction
    /// holds the isolation's reference on the head. False when it could not be split.
    /// </summary>
    private bool SplitForEviction(Pfn head, AddressSpace<TPlatform>? space, VirtAddr address, int seq)
    {
        if (space == null || !space.TryGetUser())
            return false;
        MapStatus status = space.SplitHuge(address, head, 1, seq);
        space.PutUser();
        if (status != MapStatus.Ok)
            return false;
        LruStats.Add(ref Lru.Stats._hugeSplits, 1);
        LruStats.Add(ref space.Lru.Stats._hugeSplits, 1);
        return true;
    }

    /// <summary>
    /// An old page leaves memory: swapped out when a swap device is attached and the page is
    /// anonymous (its contents kept, mm/Swap); without swap an anonymous page stays (unless
    /// <see cref="DropAnonymousWithoutSwap"/>); any other page is unmapped everywhere. Eviction
    /// holds one reference of its own (the isolation's).
    /// </summary>
    private bool UnmapForEviction(Pfn frame)
    {
        bool anonymous = (Frames.FlagsOf(frame) & (FrameFlags.Anonymous | FrameFlags.SwapCache)) != 0;
        if (Swap != null && anonymous)
            return TrySwapOut(frame, 1) == SwapOutResult.Evicted;
        if (anonymous && !DropAnonymousWithoutSwap)
            return false;                           // nowhere to keep its contents: it stays
        return TryToUnmapDropping(frame);
    }

    /// <summary>
    /// No swap device, or not anonymous: every mapping goes. A frame that became anonymous since
    /// the flags snapshot (a demand fault's fresh frame) is spared unless dropping is allowed.
    /// </summary>
    private bool TryToUnmapDropping(Pfn frame)
    {
        return TryToUnmapCore(frame, !DropAnonymousWithoutSwap);
    }

    /// <summary>
    /// Direct reclaim: a faulting thread found no free frame. Bounded: at most
    /// <see cref="LruGenerations{TPlatform}.MaxGenerations"/> rounds of an eviction round followed,
    /// when it evicted nothing, by an aging pass (eviction needs three generations; a pass that
    /// another thread is running is not waited for). Called with no mm lock held. True if some
    /// page was evicted (the caller retries its allocation once).
    /// </summary>
    public bool DirectReclaim()
    {
        for (int round = 0; round < LruGenerations<TPlatform>.MaxGenerations; round++)
        {
            if (Evict(DirectReclaimBatch) > 0)
                return true;
            AgingPass();
        }
        return false;
    }

    private AddressSpace<TPlatform>? FirstMapping(Pfn frame, out VirtAddr address)
    {
        RmapCursor cursor = default;
        if (Rmap.TryGetNext(frame, ref cursor, out AddressSpace<TPlatform>? space, out address))
            return space;
        address = default;
        return null;
    }

    private void LookAroundFrame(Pfn frame)
    {
        AddressSpace<TPlatform>? space = FirstMapping(frame, out VirtAddr address);
        if (space == null || !space.TryGetUser())
            return;
        space.LookAround(address);
        space.PutUser();
    }
}
