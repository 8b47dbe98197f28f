using System;

namespace Tandem.Mm;

/// <summary>
/// The address-space side of page merging (compare Linux's <c>write_protect_page</c>,
/// <c>replace_page</c> and the copy-on-write half of <c>do_wp_page</c>). The scanner that decides
/// what to merge is <see cref="MergeScanner{TPlatform}"/>; docs/reclaim.md, "Page merging", gives
/// the protocol and the invariant each step keeps.
/// </summary>
public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// True when a write to the 4 KiB leaf <paramref name="e"/> must copy its frame instead of
    /// making it writable in place: the frame is merged (shared) or in a merge/copy window.
    /// </summary>
    private bool MustCopyOnWrite(PageTableEntry e, int level)
    {
        if (level != 1 || !e.IsPresent || e.IsSpecial)
            return false;
        Pfn frame = e.LeafAddress(1).Pfn;
        if (frame.Value >= (ulong)_mm.Frames.FrameCount)
            return false;
        FrameFlags flags = _mm.Frames.FlagsOf(frame);
        if ((flags & (FrameFlags.Merged | FrameFlags.CopyOnWrite)) != 0)
            return true;
        // A frame that came back from swap for several mappings (a merged frame was swapped out:
        // every mapping became a swap entry of one slot, and the frame read back is not marked
        // Merged) is shared as long as another mapping or swap entry may reach it (compare
        // Linux's do_wp_page reusing a swap-cache page only when it is exclusive).
        if ((flags & FrameFlags.SwapCache) != 0)
        {
            SwapMap<TPlatform>? swap = _mm.Swap;
            if (swap != null && swap.IsSharedLocked(frame))
                return true;
        }
        return false;
    }

    /// <summary>Lockless probe for the merge scanner: the tracked 4 KiB frame mapped at
    /// <paramref name="page"/>, if any. The caller holds a user reference.</summary>
    internal bool ProbeTracked(VirtAddr page, out Pfn frame)
    {
        frame = default;
        if (!Translate(page, out PageTableEntry leaf, out int level) || level != 1 || leaf.IsSpecial)
            return false;
        frame = leaf.LeafAddress(1).Pfn;
        return frame.Value < (ulong)_mm.Frames.FrameCount;
    }

    /// <summary>
    /// Merge step 1 (write_protect_page): under the page-table lock, if <paramref name="page"/>
    /// still maps <paramref name="frame"/> and that is the frame's only mapping, marks the frame
    /// with <paramref name="mark"/> (from now on a write fault copies instead of upgrading in place,
    /// and <see cref="Protect"/> keeps it read-only), then clears W and D in the entry atomically
    /// (A kept; a D that was set is carried to the frame's Dirty flag, so a write after this point
    /// can be told from the clean entry left here). Then, when W was set: flush the primary TLB and
    /// call the notifiers (ProtectionChange), so no MMU can write the frame any more. False, with
    /// nothing changed, when the entry changed or the frame has other mappings. The caller holds a
    /// reference on <paramref name="frame"/> and a user reference on this space.
    /// </summary>
    internal bool WriteProtectForMerge(VirtAddr page, Pfn frame, FrameFlags mark)
    {
        _ptLock.Enter(_platform);
        ulong* slot = _dead != 0 ? null : WalkLocked(page, 1, false, out MapStatus _);
        PageTableEntry old = slot == null ? default : PteOps.Read(slot);
        // MapCount changes under the rmap lock, but a new mapping of a frame that is neither merged
        // nor shared comes only from MapFrame (a caller mapping it on purpose): 1 here means the
        // entry below is the only way to reach the frame.
        if (slot == null || !old.IsPresent || old.IsSpecial || old.LeafAddress(1).Pfn != frame || _mm.Frames.MapCountOf(frame) != 1)
        {
            _ptLock.Exit(_platform);
            return false;
        }
        _mm.Frames.SetFlags(frame, mark);
        while (true)
        {
            PageTableEntry next = new PageTableEntry(old.Raw & ~(PageTableEntry.Writable | PageTableEntry.Dirty));
            // CAS: the CPU may set A/D meanwhile; retry with the value it left (keeps A, carries D).
            if (next.Raw == old.Raw || PteOps.CompareExchange(slot, old, next))
                break;
            old = PteOps.Read(slot);
        }
        if (old.IsDirty)
            _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
        _ptLock.Exit(_platform);
        // A read-only entry was never cached writable (Protect flushed when it removed W), and no
        // secondary got write access from it: nothing to flush or notify.
        if (old.IsWritable)
            FinishTeardown(page, page + PageSizes.Size4K, MmuNotifierEvent.ProtectionChange);
        return true;
    }

    /// <summary>
    /// Merge step 3 (replace_page): under the page-table lock, if <paramref name="page"/> still
    /// maps <paramref name="frame"/> read-only and clean (a write since step 1 would have copied the
    /// frame away, or set D), replaces the entry with <paramref name="shared"/> in one atomic
    /// exchange (read-only, A/U/XD kept; the entry is never empty, so no demand fault can slip in),
    /// adds the shared frame's reverse-map entry and reference, removes the old one (the old frame
    /// leaves the LRU with its last mapping; the shared frame enters it unless
    /// <paramref name="onLru"/> is false). Then flush, notify (Clear: the translation changed), and
    /// only then drop the old mapping's reference (invariant 1). False (the merge is abandoned, the
    /// mark cleared) when the entry changed. The caller holds references on both frames.
    /// </summary>
    internal bool ReplaceForMerge(VirtAddr page, Pfn frame, Pfn shared, bool onLru)
    {
        bool replaced = false;
        bool listed = true;
        _ptLock.Enter(_platform);
        ulong* slot = _dead != 0 ? null : WalkLocked(page, 1, false, out MapStatus _);
        PageTableEntry old = slot == null ? default : PteOps.Read(slot);
        if (slot != null && old.IsPresent && !old.IsSpecial && !old.IsWritable && !old.IsDirty && old.LeafAddress(1).Pfn == frame
            && _mm.Rmap.Add(shared, this, page))
        {
            _mm.Frames.GetRef(shared); // the new mapping's reference (the caller holds one: count > 0)
            PageTableEntry next = new PageTableEntry((old.Raw & ~(PageTableEntry.AddressMask4K | PageTableEntry.Writable | PageTableEntry.Dirty)) | shared.Address.Value);
            // Atomic: the CPU may set A in the read-only entry; D cannot be set (W is clear).
            PageTableEntry prev = PteOps.Exchange(slot, next);
            if (prev.IsDirty)
                _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
            listed = _mm.Rmap.Remove(frame, this, page);
            if (onLru)
                _mm.Lru.Add(shared, this, page); // no-op when the shared frame is listed already
            replaced = true;
        }
        _ptLock.Exit(_platform);
        if (!replaced)
        {
            _mm.Frames.ClearFlags(frame, FrameFlags.CopyOnWrite);
            return false;
        }
        if (!listed)
            throw new InvalidOperationException("ReplaceForMerge: mapping missing from the reverse map");
        // Flush the primary TLB and call the notifiers: no MMU keeps the old frame.
        FinishTeardown(page, page + PageSizes.Size4K, MmuNotifierEvent.Clear);
        // A page that came back from swap clean kept its slot and copy in the swap cache: with its
        // mapping gone and no swap entry naming the slot, they go (else both leak).
        ReleaseSwapCacheIfUnused(frame);
        // Only then drop the old mapping's reference (invariant 1).
        _mm.Frames.PutRef(frame);
        _platform.Checkpoint(MmCheckpoint.ReferenceDropped);
        return true;
    }

    /// <summary>A mapping of <paramref name="frame"/> went (the caller still holds a reference): a
    /// swap-cache frame that nothing maps and no swap entry names leaves the cache, with its slot
    /// and copy.</summary>
    private void ReleaseSwapCacheIfUnused(Pfn frame)
    {
        SwapMap<TPlatform>? swap = _mm.Swap;
        if (swap != null && (_mm.Frames.FlagsOf(frame) & FrameFlags.SwapCache) != 0)
            swap.ReleaseIfUnused(frame);
    }

    /// <summary>
    /// Copy-on-write break of a merged frame for this one mapping (the caller saw it mapped
    /// read-only at <paramref name="page"/> and holds a reference on <paramref name="shared"/>,
    /// which this drops). Allocate, copy (the shared contents cannot change), then under the lock,
    /// if the entry still maps the shared frame read-only: replace it in one atomic exchange with
    /// the private copy, still read-only and marked <see cref="FrameFlags.CopyOnWrite"/> (so no one
    /// writes the copy while a stale TLB or secondary entry still reads the shared frame); reverse
    /// map and LRU updated. Then flush, notify, unmark the copy (the caller's retry upgrades it in
    /// place), and only then drop the shared frame's reference (invariant 1). Ok also when the
    /// entry changed meanwhile (the copy is freed; the caller retries).
    /// </summary>
    private FaultStatus BreakCow(VirtAddr page, Pfn shared)
    {
        if (!_mm.Frames.AllocateFrame(out Pfn copy) && !(_mm.DirectReclaim() && _mm.Frames.AllocateFrame(out copy)))
        {
            _mm.Frames.PutRef(shared);
            return FaultStatus.OutOfMemory;
        }
        new Span<byte>(_platform.PhysToVirt(shared.Address), (int)PageSizes.Size4K).CopyTo(new Span<byte>(_platform.PhysToVirt(copy.Address), (int)PageSizes.Size4K));
        _mm.Frames.SetFlags(copy, FrameFlags.CopyOnWrite | FrameFlags.Anonymous);
        FaultStatus result = FaultStatus.Ok;
        bool replaced = false;
        bool listed = true;
        _ptLock.Enter(_platform);
        ulong* slot = _dead != 0 ? null : WalkLocked(page, 1, false, out MapStatus _);
        PageTableEntry old = slot == null ? default : PteOps.Read(slot);
        if (_dead != 0)
            result = FaultStatus.Dead;
        else if (slot != null && old.IsPresent && !old.IsSpecial && !old.IsWritable && old.LeafAddress(1).Pfn == shared)
        {
            if (!_mm.Rmap.Add(copy, this, page))
                result = FaultStatus.OutOfMemory;
            else
            {
                _mm.Frames.GetRef(copy); // ours, until the copy is unmarked (the allocation's becomes the mapping's)
                PageTableEntry next = new PageTableEntry((old.Raw & ~(PageTableEntry.AddressMask4K | PageTableEntry.Writable | PageTableEntry.Dirty)) | copy.Address.Value);
                // Release + full barrier: the copied contents are visible before the entry; the old
                // entry's A (and an impossible D) come back with the exchange.
                PageTableEntry prev = PteOps.Exchange(slot, next);
                if (prev.IsDirty)
                    _mm.Frames.SetFlags(shared, FrameFlags.Dirty);
                listed = _mm.Rmap.Remove(shared, this, page);
                _mm.Lru.Add(copy, this, page);
                replaced = true;
            }
        }
        _ptLock.Exit(_platform);
        if (!replaced)
        {
            _mm.Frames.PutRef(copy);
            _mm.Frames.PutRef(shared);
            return result;
        }
        if (!listed)
            throw new InvalidOperationException("BreakCow: mapping missing from the reverse map");
        // Flush the primary TLB, call the notifiers: no MMU reads the shared frame here any more.
        FinishTeardown(page, page + PageSizes.Size4K, MmuNotifierEvent.Clear);
        // The copy may become writable now (the caller's retry upgrades it in place).
        _mm.Frames.ClearFlags(copy, FrameFlags.CopyOnWrite);
        _mm.Frames.PutRef(copy);
        MergeStats.Add(ref _mm.MergeStats._cowBreaks, 1);
        // A shared frame read back from swap leaves the swap cache with its last mapping.
        ReleaseSwapCacheIfUnused(shared);
        // Only then drop the old mapping's reference, then the caller's (invariant 1).
        _mm.Frames.PutRef(shared);
        _platform.Checkpoint(MmCheckpoint.ReferenceDropped);
        _mm.Frames.PutRef(shared);
        return FaultStatus.Ok;
    }
}
