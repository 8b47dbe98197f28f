namespace Tandem.Mm;

public sealed partial class MemoryManager<TPlatform>
{
    /// <summary>
    /// Removes every primary mapping of <paramref name="frame"/> (compare Linux's try_to_unmap).
    /// For each mapping, in this order (invariant 1): clear the primary entry, flush the primary
    /// TLB, call the notifiers, and only then drop the mapping's reference. Returns true when no
    /// mapping is left.
    /// </summary>
    /// <remarks>
    /// Rules for using this: the frame must be tracked (not a fixed mapping). The caller need not
    /// hold a reference: one is taken for the duration, so the record cannot be recycled under us.
    /// </remarks>
    public bool TryToUnmap(Pfn frame)
    {
        return TryToUnmapCore(frame, false);
    }

    /// <summary>
    /// <see cref="TryToUnmap(Pfn)"/>; with <paramref name="sparingAnonymous"/>, a mapping whose frame
    /// is anonymous by the time its entry is cleared (checked under that page-table lock) is kept:
    /// for a caller that decided to drop the frame's contents from a flags snapshot taken before
    /// it held anything (the frame may have been a fresh frame of a demand fault, mapped since).
    /// </summary>
    private bool TryToUnmapCore(Pfn frame, bool sparingAnonymous)
    {
        if (!Frames.TryGetRef(frame))
            return true;
        RmapCursor cursor = default;
        while (Rmap.TryGetNext(frame, ref cursor, out AddressSpace<TPlatform>? space, out VirtAddr address))
        {
            Platform.Checkpoint(MmCheckpoint.RmapEntryCopied);
            // The user reference keeps the space's page tables while we walk them. None left:
            // the space is being torn down, and its teardown removes this mapping itself.
            if (!space!.TryGetUser())
                continue;
            // False: the entry changed under us (a concurrent unmap removed it).
            space.UnmapOneForReclaim(frame, address, sparingAnonymous);
            space.PutUser();
        }
        bool unmapped = Frames.MapCountOf(frame) == 0;
        // A swap-cache frame that lost its last mapping and that no swap entry names goes too.
        if (unmapped && Swap != null && (Frames.FlagsOf(frame) & FrameFlags.SwapCache) != 0)
            Swap.ReleaseIfUnused(frame);
        Frames.PutRef(frame);
        return unmapped;
    }

    /// <summary>
    /// Aging of one frame: OR of the primary accessed bits of all its mappings (tested and cleared)
    /// and the secondary MMUs' answers. <paramref name="exact"/> false: the fast-only notifier call
    /// (aging walk, look-around: never waits on a lock); a mapping whose fast answer is incomplete
    /// (a notifier without lockless aging was not asked) counts as young. True: the exact
    /// ClearFlushYoung (eviction). A young frame moves to the youngest generation (if it is on an
    /// LRU list; eviction puts back the frame it isolated itself).
    /// </summary>
    public bool AgeFrame(Pfn frame, bool exact)
    {
        if (!Frames.TryGetRef(frame))
            return false;
        bool young = false;
        RmapCursor cursor = default;
        while (Rmap.TryGetNext(frame, ref cursor, out AddressSpace<TPlatform>? space, out VirtAddr address))
        {
            Platform.Checkpoint(MmCheckpoint.RmapEntryCopied);
            if (!space!.TryGetUser())
                continue;
            young |= space.TestClearYoung(frame, address, exact);
            space.PutUser();
        }
        if (young)
            Lru.Promote(frame);
        Frames.PutRef(frame);
        return young;
    }

    /// <summary>
    /// Eviction: the exact check first (every MMU, slow notifiers allowed); a frame that any MMU saw
    /// young is kept. Otherwise, with a swap device attached, an anonymous frame is swapped out
    /// (<see cref="TrySwapOut(Pfn)"/>; true only when it left memory); without one it is kept
    /// (unless <see cref="DropAnonymousWithoutSwap"/>); any other frame has every mapping removed
    /// with <see cref="TryToUnmap"/>. Returns true when the frame was unmapped
    /// everywhere (its memory is freed when the last reference goes).
    /// </summary>
    public bool TryReclaim(Pfn frame)
    {
        // The merge scanner's shared zero frame (Merged, not anonymous) is never freed (the
        // scanner keeps a reference): unmapping its mappings would free nothing, only cost
        // refaults, and open the window of a refault racing the unmap's notifiers.
        if ((Frames.FlagsOf(frame) & (FrameFlags.Merged | FrameFlags.Anonymous)) == FrameFlags.Merged)
            return false;
        if (AgeFrame(frame, true))
            return false;
        // With a swap device an anonymous page is swapped out, never dropped (mm/Swap). The flags
        // are a snapshot: a frame that a demand fault had allocated but not yet installed looks
        // like no anonymous page, and may be mapped (and written) before TryToUnmap walks its
        // mappings; so the drop spares every mapping that is anonymous when it is cleared.
        bool anonymous = (Frames.FlagsOf(frame) & (FrameFlags.Anonymous | FrameFlags.SwapCache)) != 0;
        if (Swap != null && anonymous)
            return TrySwapOut(frame) == SwapOutResult.Evicted;
        // Without swap an anonymous page has nowhere to keep its contents: it stays, unless the
        // bed allows dropping (DropAnonymousWithoutSwap).
        if (anonymous && !DropAnonymousWithoutSwap)
            return false;
        return TryToUnmapCore(frame, Swap != null || !DropAnonymousWithoutSwap);
    }
}
