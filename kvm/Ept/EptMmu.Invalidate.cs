using Tandem.Mm;

namespace Tandem.Kvm.Ept;

public sealed unsafe partial class EptMmu<TPlatform>
{
    /// <summary>
    /// The primary mappings of <c>range</c> are gone (or going): raise the in-progress count under
    /// the MMU lock, then zap every EPT leaf backed by the range without a lock, carry each dirty
    /// bit to its frame, and flush once: one INVEPT here plus one remote-flush request.
    /// </summary>
    /// <remarks>
    /// Called by mm after the primary entries were cleared and the primary TLB flushed, before the
    /// frames' references are dropped (invariant 1); no primary lock held; may run concurrently with
    /// faults, aging and other invalidations. The flush is issued for every range that overlaps a
    /// memslot, even if this call found nothing to zap: a concurrent invalidation may have zapped
    /// a leaf of our range and not yet flushed it, and our caller frees the frames when we return.
    /// </remarks>
    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        LockMmu();
        _seq.BeginUnderLock(range);
        UnlockMmu();
        if (ZapHostRange(range.Start, range.End))
            FlushTlbs();
    }

    /// <summary>Pairs with <see cref="InvalidateRangeStart"/>: bump the sequence, lower the count (under the MMU lock).</summary>
    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        LockMmu();
        _seq.EndUnderLock();
        UnlockMmu();
    }

    /// <summary>Zaps the leaves backed by host range <c>[start, end)</c>; true if the range overlaps a memslot.</summary>
    private bool ZapHostRange(VirtAddr start, VirtAddr end)
    {
        MemslotMap slots = Memslots;
        bool overlaps = false;
        for (int i = 0; i < slots.Count; i++)
        {
            Memslot s = slots[i];
            if (!(start < s.HostEnd && s.HostBase < end))
                continue;
            overlaps = true;
            VirtAddr from = start > s.HostBase ? start : s.HostBase;
            VirtAddr to = end < s.HostEnd ? end : s.HostEnd;
            ZapGuestRange(s.GuestAddressOf(from), s.GuestAddressOf(to));
        }
        return overlaps;
    }

    /// <summary>
    /// Lockless zap of every leaf in <c>[start, end)</c>. A 2 MiB leaf that the range covers only
    /// partly is zapped whole (split by zap: its other 4 KiB parts fault back in as the primary maps
    /// them now). The caller flushes.
    /// </summary>
    private void ZapGuestRange(GuestPhysAddr start, GuestPhysAddr end)
    {
        foreach (EptSlot s in new EptWalker<TPlatform>(_platform, _root, start, end))
            ZapLeaf(s.Pointer, s.Level);
    }

    /// <summary>Clears one leaf atomically and carries its dirty bit to the frame(s) it mapped.</summary>
    private void ZapLeaf(ulong* slot, int level)
    {
        // Exchange, not a store: the CPU may set D until the entry is gone; we must see that D.
        EptEntry old = EptOps.Exchange(slot, EptEntry.Empty);
        if (!old.IsPresent || !old.IsDirty)
            return;
        Pfn first = old.LeafAddress(level).Pfn;
        ulong frames = PageSizes.ForLevel(level) >> PageSizes.Shift4K;
        for (ulong i = 0; i < frames; i++)
            _space.MarkFrameDirty(first + i);
    }
}
