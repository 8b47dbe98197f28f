using System.Threading;
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
    /// faults, aging, other invalidations, a memslot removal and <see cref="Release"/>. The flush is
    /// issued for every range that overlaps a memslot (one being removed included), even if this
    /// call found nothing to zap: a concurrent invalidation may have zapped a leaf of our range and
    /// not yet flushed it, and our caller frees the frames when we return. After Release the
    /// tables are gone, already zapped and flushed: nothing to do.
    /// </remarks>
    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        LockMmu();
        _seq.BeginUnderLock(range);
        UnlockMmu();
        bool overlaps = false;
        int section = _walkers.ReadLock();
        // Acquire (Closed); pairs with Close in Release, which comes after its zap and flush.
        if (!_walkers.Closed)
        {
            _platform.Checkpoint(MmCheckpoint.SecondaryWalkBegun);
            overlaps = ZapHostRange(range.Start, range.End);
        }
        _walkers.ReadUnlock(section);
        if (overlaps)
            FlushTlbs();
    }

    /// <summary>Pairs with <see cref="InvalidateRangeStart"/>: bump the sequence, lower the count (under the MMU lock).</summary>
    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        LockMmu();
        _seq.EndUnderLock();
        UnlockMmu();
    }

    /// <summary>
    /// Zaps the leaves backed by host range <c>[start, end)</c>, through every memslot (those being
    /// removed included); true if the range overlaps one. Inside a walker section.
    /// </summary>
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
    /// them now). Inside a walker section (or by the releaser); the caller flushes.
    /// </summary>
    private void ZapGuestRange(GuestPhysAddr start, GuestPhysAddr end)
    {
        foreach (EptSlot s in new EptWalker<TPlatform>(_platform, _root, start, end))
        {
            _platform.Checkpoint(MmCheckpoint.SecondaryZapLeaf);
            if (!ZapLeaf(s.Pointer, s.Level))
            {
                // A fault replaced the large leaf with a table since the walker read it: zap the
                // part of that table our range covers.
                GuestPhysAddr from = s.Address.Value > start.Value ? s.Address : start;
                GuestPhysAddr to = s.Address.Value + s.Size < end.Value ? new GuestPhysAddr(s.Address.Value + s.Size) : end;
                ZapGuestRange(from, to);
            }
        }
    }

    /// <summary>
    /// Clears the leaf at <paramref name="slot"/> (a <paramref name="level"/> entry) atomically and
    /// carries its dirty bit to the frame(s) it mapped. True when the slot is empty afterwards;
    /// false when it holds a table now (never unlinked here: its leaves are live and their dirty
    /// bits unread).
    /// </summary>
    private bool ZapLeaf(ulong* slot, int level)
    {
        while (true)
        {
            EptEntry old = EptOps.Read(slot);
            if (!old.IsPresent)
                return true;
            if (!old.IsLeaf(level))
                return false;
            _platform.Checkpoint(MmCheckpoint.SecondaryLeafRead);
            // Compare-exchange, not a store: the CPU may set A/D until the entry is gone (a failed
            // CAS re-reads and we see that D), and a fault may install a table in place of a large
            // leaf (we must not unlink it). Full barrier: orders the clear before the INVEPT.
            if (EptOps.CompareExchange(slot, EptEntry.Empty, old).Value != old.Value)
                continue;
            if (old.IsDirty)
            {
                Pfn first = old.LeafAddress(level).Pfn;
                ulong frames = PageSizes.ForLevel(level) >> PageSizes.Shift4K;
                for (ulong i = 0; i < frames; i++)
                    _space.MarkFrameDirty(first + i);
            }
            return true;
        }
    }
}
