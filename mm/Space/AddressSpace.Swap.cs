using System;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// Swap-out side of <see cref="MemoryManager{TPlatform}.TrySwapOut(Pfn)"/>: replaces the one mapping
    /// (this, <paramref name="address"/>) of <paramref name="frame"/> by a swap entry for
    /// <paramref name="slot"/> (keeping the entry's rights), then flush, notify, release
    /// (invariant 1). False if the entry no longer maps the frame.
    /// </summary>
    internal bool UnmapOneForSwap(Pfn frame, VirtAddr address, int slot)
    {
        SwapMap<TPlatform> swap = _mm.Swap!;
        _ptLock.Enter(_platform);
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        if (s.Level != 1 || !s.Value.IsPresent || s.Value.IsSpecial || s.Value.LeafAddress(1).Pfn != frame)
        {
            _ptLock.Exit(_platform);
            return false;
        }
        // 1. Replace the entry by the swap entry (atomic: the CPU may set D until it is gone; the
        // rights are only changed under _ptLock, so those of the walk's read are current).
        PageTableEntry old = PteOps.Exchange(s.Pointer, PageTableEntry.ForSwap(slot, s.Value));
        if (old.IsDirty)
            _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
        bool listed = _mm.Rmap.Remove(frame, this, address);
        // The entry names the slot from now on (swap-map lock nests inside _ptLock).
        swap.AddUseLocked(slot);
        _ptLock.Exit(_platform);
        if (!listed)
            throw new InvalidOperationException("TrySwapOut: mapping missing from the reverse map");
        // 2. Flush the primary TLB, 3. call the notifiers (a secondary's zap carries its D bit).
        FinishTeardown(address, address + PageSizes.Size4K, MmuNotifierEvent.Clear);
        // 4. Only then drop the mapping's reference (the swap-out and the cache still hold theirs).
        _mm.Frames.PutRef(frame);
        _platform.Checkpoint(MmCheckpoint.ReferenceDropped);
        return true;
    }

    /// <summary>
    /// Swap-in (compare Linux's do_swap_page): a fault on the swap entry <paramref name="entry"/> at
    /// <paramref name="page"/>. Finds the frame in the swap cache (a reference taken) or loads the
    /// copy into a fresh frame that enters the cache first (concurrent faulters on the slot wait
    /// for that one load and use its frame); then installs it under the page-table lock only if
    /// the entry still holds the same swap entry. The new entry has the rights the swap entry kept
    /// and D clear; the frame keeps its slot and copy (a clean page costs no write at its next
    /// eviction). Exists: the entry changed (the caller probes again). SwapError: the device could
    /// not return the copy (nothing mapped, the slot kept).
    /// </summary>
    private FaultStatus FaultSwapIn(VirtAddr page, PageTableEntry entry)
    {
        SwapMap<TPlatform>? swap = _mm.Swap;
        if (swap == null)
            throw new InvalidOperationException("AddressSpace: a swap entry but no swap device is attached");
        int slot = entry.SwapSlot;
        Pfn spare = default;
        bool haveSpare = false;
        Pfn frame;
        int busyRounds = 0;
        while (true)
        {
            // Read before the look: a release after it changes the count, so the wait below
            // cannot miss it.
            int released = System.Threading.Volatile.Read(ref swap.SlotsReleased);
            _ptLock.Enter(_platform);
            if (_dead != 0)
            {
                _ptLock.Exit(_platform);
                if (haveSpare)
                    _mm.Frames.PutRef(spare);
                return FaultStatus.Dead;
            }
            // Re-read under _ptLock: while the entry holds the swap entry, the slot is live (its
            // use count includes this entry).
            if (!HoldsEntryLocked(page, entry, out _))
            {
                _ptLock.Exit(_platform);
                if (haveSpare)
                    _mm.Frames.PutRef(spare);
                return FaultStatus.Exists;
            }
            SwapMap<TPlatform>.Lookup found = swap.LookupLocked(slot, spare, haveSpare, out frame, out ulong handle);
            _ptLock.Exit(_platform);
            if (found == SwapMap<TPlatform>.Lookup.NeedFrame)
            {
                // At the resident limit, or no frame: reclaim first (no lock held), as a
                // demand-zero fault does.
                _mm.ReclaimIfOverLimit();
                if (!_mm.Frames.AllocateFrame(out spare) && !(_mm.DirectReclaim() && _mm.Frames.AllocateFrame(out spare)))
                    return FaultStatus.OutOfMemory;
                haveSpare = true;
                continue;
            }
            if (found == SwapMap<TPlatform>.Lookup.Busy)
            {
                // Another faulter is loading this slot, or a swap-out owns it: wait for it. A short
                // spin first (the owner runs on another CPU, a device call away); then sleep until
                // a slot is released, because the owner may be a thread preempted on this very CPU
                // (a vCPU spinning here with interrupts off would never let it finish).
                if (++busyRounds < 64)
                    _platform.SpinPause();
                else
                    _platform.WaitForChange(ref swap.SlotsReleased, released);
                continue;
            }
            if (found == SwapMap<TPlatform>.Lookup.Load)
            {
                // The spare is the cache frame now; our allocation reference stays ours. No mm
                // lock is held across the device call.
                haveSpare = false;
                bool loaded = swap.Device.TryLoad(handle, _platform.PhysToVirt(frame.Address));
                swap.EndLoad(slot, frame, loaded);
                if (!loaded)
                {
                    _mm.Frames.PutRef(frame);
                    return FaultStatus.SwapError;
                }
            }
            else if (haveSpare)
            {
                _mm.Frames.PutRef(spare);
                haveSpare = false;
            }
            break;
        }
        // Install: our reference becomes the mapping's.
        FaultStatus result = FaultStatus.Ok;
        _ptLock.Enter(_platform);
        if (_dead != 0)
            result = FaultStatus.Dead;
        else if (!HoldsEntryLocked(page, entry, out ulong* slotPtr))
            result = FaultStatus.Exists;
        else if (!_mm.Rmap.Add(frame, this, page))
            result = FaultStatus.OutOfMemory;
        else
        {
            // Release store (the old entry is not present: the CPU cannot be setting A/D in it, and
            // x86 caches no non-present entries, so no flush): the loaded contents and the rmap
            // entry are visible before the entry; pairs with PteOps.Read and the CPU's walk.
            PteOps.Write(slotPtr, entry.SwapRestored(frame.Address));
            swap.DropUseForInstallLocked(slot);
            // Back in memory: the page enters the youngest generation (a refault if the LRU
            // remembers its eviction), so it can be aged and evicted again.
            _mm.Lru.Add(frame, this, page);
        }
        _ptLock.Exit(_platform);
        if (result != FaultStatus.Ok)
        {
            // The entry changed meanwhile (unmapped, or another faulter installed it): give the
            // cache frame up if nothing needs it any more, then our reference.
            swap.ReleaseIfUnused(frame);
            _mm.Frames.PutRef(frame);
            return result;
        }
        _platform.Checkpoint(MmCheckpoint.PrimaryEntryInstalled);
        return FaultStatus.Ok;
    }

    /// <summary>True when the 4 KiB entry of <paramref name="page"/> still holds <paramref name="entry"/>. Caller holds <c>_ptLock</c>.</summary>
    private bool HoldsEntryLocked(VirtAddr page, PageTableEntry entry, out ulong* pointer)
    {
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, page, page + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        pointer = s.Pointer;
        return s.Level == 1 && s.Value.Raw == entry.Raw;
    }

    /// <summary>The swap entry at <paramref name="address"/>, if the page is swapped out (for tests and inspectors; lockless read).</summary>
    public bool TryGetSwapEntry(VirtAddr address, out PageTableEntry entry)
    {
        Translate(address.AlignDown(PageSizes.Size4K), out entry, out int level);
        return level == 1 && entry.IsSwap;
    }
}
