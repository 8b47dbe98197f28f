using System;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>Frames gathered before a flush + notify + release round (compare mmu_gather).</summary>
    private const int GatherBatch = 64;

    /// <summary>
    /// Unmaps <c>[start, end)</c>. In rounds of up to <see cref="GatherBatch"/> tracked frames:
    /// clear the entries (under the page-table lock), flush the primary TLB once for the round,
    /// call the notifiers once for the round, and only then drop the frames' references
    /// (invariant 1). Huge leaves that the range covers partly are split first. Returns
    /// OutOfMemory when a split found no frame (everything before that point is unmapped and
    /// notified; nothing after it was touched). The range is validated first
    /// (<see cref="ValidateRange"/>).
    /// </summary>
    public MapStatus Unmap(VirtAddr start, VirtAddr end)
    {
        ValidateRange(start, end);
        return UnmapValidated(start, end);
    }

    private MapStatus UnmapValidated(VirtAddr start, VirtAddr end)
    {
        Pfn* gathered = stackalloc Pfn[GatherBatch];
        int* swapSlots = stackalloc int[GatherBatch];
        SwapMap<TPlatform>? swap = _mm.Swap;
        VirtAddr cursor = start;
        while (cursor < end)
        {
            int count = 0;
            int swapCount = 0;
            bool cleared = false;
            bool outOfMemory = false;
            bool busy = false;
            bool rmapMismatch = false;
            VirtAddr stop = end;
            _ptLock.Enter(_platform);
            PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, cursor, end);
            while (w.MoveNext())
            {
                PteSlot s = w.Current;
                if (!s.Value.IsPresent)
                {
                    if (!s.Value.IsSwap)
                        continue;
                    // A swap entry: clear it (plain store: not present, never written by the CPU)
                    // and give its slot use back after the lock.
                    PteOps.Write(s.Pointer, PageTableEntry.Empty);
                    swapSlots[swapCount++] = s.Value.SwapSlot;
                    // Notify for it too: the swap-out that installed this entry flushes and calls
                    // the notifiers only after it dropped _ptLock, so a secondary may still map the
                    // old frame; an unmap must not return while one does (invariant 1).
                    cleared = true;
                    if (swapCount == GatherBatch)
                    {
                        stop = s.End;
                        break;
                    }
                    continue;
                }
                if (s.Level > 1 && (s.Address < start || s.End > end))
                {
                    VirtAddr at = s.Address < start ? start : s.Address;
                    MapStatus split = SplitLocked(at, out VirtAddr _, out ulong _);
                    if (split != MapStatus.Ok)
                    {
                        // Nothing may throw under _ptLock: stop here and finish the round. A
                        // tracked 2 MiB page held for a moment (Busy) is split in the next round.
                        outOfMemory = split != MapStatus.Busy;
                        busy = split == MapStatus.Busy;
                        stop = at;
                        break;
                    }
                    cleared = true; // the split itself needs the flush below
                    w.Restart(at);
                    continue;
                }
                // Atomic: the CPU may set D in a present leaf until the entry is gone. Full barrier
                // (see PteOps.Exchange) before the flush and the notifier-list read below.
                PageTableEntry old = PteOps.Exchange(s.Pointer, PageTableEntry.Empty);
                cleared = true;
                if (old.IsSpecial || !old.IsPresent)
                    continue;
                // A 4 KiB page, or a whole tracked 2 MiB page (its head holds the reference, the
                // reverse-map entry and the LRU place for all 512 frames; freed as one block).
                Pfn frame = old.LeafAddress(s.Level).Pfn;
                if (old.IsDirty)
                    _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
                if (!_mm.Rmap.Remove(frame, this, s.Address))
                {
                    // A bug; reported after the lock is dropped and the round is finished.
                    rmapMismatch = true;
                    stop = s.End;
                    break;
                }
                gathered[count++] = frame;
                if (count == GatherBatch)
                {
                    stop = s.End;
                    break;
                }
            }
            _ptLock.Exit(_platform);
            if (swap != null)
                ReleaseSwap(swap, swapSlots, swapCount, gathered, count);
            if (cleared && cursor < stop)
                FinishTeardown(cursor, stop, MmuNotifierEvent.Unmap);
            for (int i = 0; i < count; i++)
                _mm.Frames.PutRef(gathered[i]);
            if (count > 0)
                _platform.Checkpoint(MmCheckpoint.ReferenceDropped);
            if (rmapMismatch)
                throw new InvalidOperationException("Unmap: mapping missing from the reverse map");
            if (outOfMemory)
                return MapStatus.OutOfMemory;
            if (busy)
                _platform.SpinPause();
            cursor = stop;
        }
        return MapStatus.Ok;
    }

    /// <summary>
    /// After an unmap round cleared entries: the swap slots of its swap entries lose a use (slot,
    /// copy and cache frame freed when nothing else needs them), and a swap-cache frame whose
    /// mapping went (its reference still held by the round) leaves the cache if no swap entry
    /// names its slot. No mm lock held.
    /// </summary>
    private void ReleaseSwap(SwapMap<TPlatform> swap, int* slots, int slotCount, Pfn* frames, int frameCount)
    {
        for (int i = 0; i < slotCount; i++)
            swap.PutUse(slots[i]);
        for (int i = 0; i < frameCount; i++)
            if ((_mm.Frames.FlagsOf(frames[i]) & FrameFlags.SwapCache) != 0)
                swap.ReleaseIfUnused(frames[i]);
    }

    /// <summary>Flush, then notify: the middle of every teardown (entries already cleared, references not yet dropped).</summary>
    private void FinishTeardown(VirtAddr start, VirtAddr end, MmuNotifierEvent reason)
    {
        _platform.Checkpoint(MmCheckpoint.PrimaryEntryCleared);
        FlushRange(start, end);
        _platform.Checkpoint(MmCheckpoint.PrimaryTlbFlushed);
        // Inline check; ordered after the entry clear by its Interlocked (full barrier), which
        // pairs with MmuNotifierList.Drain for a concurrent registration.
        if (Notifiers.HasNotifiers)
            Notifiers.Invalidate(new MmuNotifierRange(this, start, end, reason, true));
    }

    /// <summary>
    /// Reclaim side of <see cref="MemoryManager{TPlatform}.TryToUnmap"/>: removes the one mapping
    /// (this, <paramref name="address"/>) of <paramref name="frame"/>: clear, flush, notify, release.
    /// False if the entry no longer maps the frame, or (<paramref name="sparingAnonymous"/>) the
    /// frame is anonymous.
    /// </summary>
    internal bool UnmapOneForReclaim(Pfn frame, VirtAddr address, bool sparingAnonymous)
    {
        _ptLock.Enter(_platform);
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        // Anonymous is set under this lock before the entry that maps the frame is written
        // (InstallAnonymous), so a mapped anonymous frame shows it here.
        if (s.Level != 1 || !s.Value.IsPresent || s.Value.IsSpecial || s.Value.LeafAddress(1).Pfn != frame
            || (sparingAnonymous && (_mm.Frames.FlagsOf(frame) & FrameFlags.Anonymous) != 0))
        {
            _ptLock.Exit(_platform);
            return false;
        }
        // 1. Clear the primary entry (atomic: the CPU may set D until it is gone).
        PageTableEntry old = PteOps.Exchange(s.Pointer, PageTableEntry.Empty);
        if (old.IsDirty)
            _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
        bool listed = _mm.Rmap.Remove(frame, this, address);
        _ptLock.Exit(_platform);
        if (!listed)
            throw new InvalidOperationException("TryToUnmap: mapping missing from the reverse map");
        // 2. Flush the primary TLB, 3. call the notifiers.
        FinishTeardown(address, address + PageSizes.Size4K, MmuNotifierEvent.Clear);
        // 4. Only then drop the mapping's reference.
        _mm.Frames.PutRef(frame);
        _platform.Checkpoint(MmCheckpoint.ReferenceDropped);
        return true;
    }
}
