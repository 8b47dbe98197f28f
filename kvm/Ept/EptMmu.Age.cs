using System.Runtime.CompilerServices;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

public sealed unsafe partial class EptMmu<TPlatform>
{
    /// <summary>Exact aging: test and clear the EPT accessed bits backed by <c>[start, end)</c>; INVEPT if any was cleared, so the next guest access walks (and sets A) again.</summary>
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        bool cleared = false;
        bool young = AgeHostRange(start, end, true, ref cleared);
        if (cleared)
            FlushTlbs();
        return young;
    }

    /// <summary>Test and clear the EPT accessed bits backed by <c>[start, end)</c>, without a flush. Lockless.</summary>
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        bool cleared = false;
        return AgeHostRange(start, end, true, ref cleared);
    }

    /// <summary>Test the EPT accessed bits backed by <c>[start, end)</c>. Lockless.</summary>
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        bool cleared = false;
        return AgeHostRange(start, end, false, ref cleared);
    }

    /// <summary>
    /// The fast-only call (aging walk, look-around): never takes, tries or waits on a lock, so it is
    /// fast by construction, not by luck (seed 001).
    /// </summary>
    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        bool cleared = false;
        return AgeHostRange(start, end, clear, ref cleared);
    }

    /// <summary>
    /// The fast-only call for a whole span (<see cref="IBitmapAgingNotifier"/>): one walk of the
    /// EPT leaves backing <c>[start, start + pages·4 KiB)</c> in every memslot, instead of one walk
    /// per page. For each asked page with an accessed leaf: its bit is set in
    /// <paramref name="young"/> and A is cleared with one compare-exchange (a failed one leaves the
    /// leaf as the CPU or a zapper left it; it still counts as young). Never takes, tries or waits
    /// on a lock. A 2 MiB leaf is cleared only when the span covers it and every one of its pages
    /// was asked (its A bit stands for all 512); otherwise it is reported young and left set.
    /// </summary>
    public void TestClearYoungFastOnlyBitmap(IAddressSpace space, VirtAddr start, int pages, ulong* ask, ulong* young)
    {
        int section = _walkers.ReadLock();
        if (!_walkers.Closed)
        {
            _platform.Checkpoint(MmCheckpoint.SecondaryWalkBegun);
            VirtAddr end = start + ((ulong)pages << PageSizes.Shift4K);
            MemslotMap slots = Memslots;
            for (int i = 0; i < slots.Count; i++)
            {
                Memslot s = slots[i];
                if (!(start < s.HostEnd && s.HostBase < end))
                    continue;
                VirtAddr from = start > s.HostBase ? start : s.HostBase;
                VirtAddr to = end < s.HostEnd ? end : s.HostEnd;
                AgeSpanBitmapLocked(s, from, to, start, ask, young);
            }
        }
        _walkers.ReadUnlock(section);
    }

    private void AgeSpanBitmapLocked(Memslot s, VirtAddr from, VirtAddr to, VirtAddr spanStart, ulong* ask, ulong* young)
    {
        GuestPhysAddr gStart = s.GuestAddressOf(from), gEnd = s.GuestAddressOf(to);
        // Page index in the span of guest address g: the slot maps guest and host linearly.
        long delta = (long)(from.Value - spanStart.Value) - (long)gStart.Value;
        bool anyCleared = false;
        EptWalker<TPlatform> walker = new EptWalker<TPlatform>(_platform, _root, gStart, gEnd);
        while (true)
        {
            ulong runAt = walker.NextAddress.Value;
            if (walker.TryTakeTableRun(out ulong* run, out int count))
            {
                int first = (int)(((long)runAt + delta) >> PageSizes.Shift4K);
                for (int k = 0; k < count; k++)
                {
                    int page = first + k;
                    if ((ask[page >> 6] & (1UL << (page & 63))) == 0)
                        continue;
                    EptEntry e = EptOps.Read(run + k);
                    if (!e.IsAccessed)
                        continue;
                    AgeLeaf(run + k, e, true, ref anyCleared);
                    young[page >> 6] |= 1UL << (page & 63);
                }
                continue;
            }
            if (!walker.MoveNext())
                break;
            EptSlot leaf = walker.Current;
            if (!leaf.Value.IsAccessed)
                continue;
            // A large leaf: the asked pages it backs inside this span are young.
            ulong lo = leaf.Address.Value > gStart.Value ? leaf.Address.Value : gStart.Value;
            ulong hi = leaf.Address.Value + leaf.Size < gEnd.Value ? leaf.Address.Value + leaf.Size : gEnd.Value;
            bool allAsked = lo == leaf.Address.Value && hi == leaf.Address.Value + leaf.Size;
            for (ulong g = lo; g < hi; g += PageSizes.Size4K)
            {
                int page = (int)(((long)g + delta) >> PageSizes.Shift4K);
                if ((ask[page >> 6] & (1UL << (page & 63))) != 0)
                    young[page >> 6] |= 1UL << (page & 63);
                else
                    allAsked = false;
            }
            AgeLeaf(leaf.Pointer, leaf.Value, allAsked, ref anyCleared);
        }
    }

    private bool AgeHostRange(VirtAddr start, VirtAddr end, bool clear, ref bool cleared)
    {
        int section = _walkers.ReadLock();
        bool young = false;
        // Acquire (Closed); pairs with Close in Release. Closed: nothing is mapped any more.
        if (!_walkers.Closed)
        {
            _platform.Checkpoint(MmCheckpoint.SecondaryWalkBegun);
            MemslotMap slots = Memslots;
            for (int i = 0; i < slots.Count; i++)
            {
                Memslot s = slots[i];
                if (!(start < s.HostEnd && s.HostBase < end))
                    continue;
                VirtAddr from = start > s.HostBase ? start : s.HostBase;
                VirtAddr to = end < s.HostEnd ? end : s.HostEnd;
                young |= AgeGuestRangeLocked(s.GuestAddressOf(from), s.GuestAddressOf(to), clear, ref cleared);
            }
        }
        _walkers.ReadUnlock(section);
        return young;
    }

    /// <summary>
    /// Lockless aging of the leaves in <c>[start, end)</c>. One compare-exchange per young leaf and
    /// no retry: if it fails, the CPU (A/D) or a zapper changed the entry meanwhile, and the leaf
    /// counts as young (deterministic, bounded). A 2 MiB leaf that the range covers only partly is
    /// reported young but not cleared: its accessed bit stands for all 512 pages, and clearing it
    /// for a 4 KiB question would make the other 511 look old.
    /// </summary>
    public bool AgeGuestRange(GuestPhysAddr start, GuestPhysAddr end, bool clear, ref bool cleared)
    {
        int section = _walkers.ReadLock();
        bool young = !_walkers.Closed && AgeGuestRangeLocked(start, end, clear, ref cleared);
        _walkers.ReadUnlock(section);
        return young;
    }

    private bool AgeGuestRangeLocked(GuestPhysAddr start, GuestPhysAddr end, bool clear, ref bool cleared)
    {
        // Locals, written through the ref parameter once at the end: a store before every locked
        // instruction would have to drain first (the hot loop is one read and, for a young leaf,
        // one compare-exchange).
        bool young = false;
        bool anyCleared = false;
        EptWalker<TPlatform> walker = new EptWalker<TPlatform>(_platform, _root, start, end);
        while (true)
        {
            if (walker.TryTakeTableRun(out ulong* run, out int count))
            {
                // The rest of a last-level table: one read per entry; absent entries have no A bit.
                ulong* stop = run + count;
                for (ulong* slot = run; slot < stop; slot++)
                {
                    EptEntry e = EptOps.Read(slot);
                    if (e.IsAccessed)
                        young |= AgeLeaf(slot, e, clear, ref anyCleared);
                }
                continue;
            }
            if (!walker.MoveNext())
                break;
            EptSlot s = walker.Current;
            if (!s.Value.IsAccessed)
                continue;
            bool whole = s.Address.Value >= start.Value && s.Address.Value + s.Size <= end.Value;
            young |= AgeLeaf(s.Pointer, s.Value, clear && whole, ref anyCleared);
        }
        if (anyCleared)
            cleared = true;
        return young;
    }

    /// <summary>An accessed leaf: young; with <paramref name="clear"/>, one compare-exchange to clear A.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool AgeLeaf(ulong* slot, EptEntry e, bool clear, ref bool cleared)
    {
        _platform.Checkpoint(MmCheckpoint.SecondaryLeafRead);
        // Pairs with the CPU's locked A/D update and with the zap's compare-exchange: a failed CAS
        // means one of them won, and we leave the entry as they left it (it still counts as young).
        if (clear && EptOps.CompareExchange(slot, e.WithoutAccessed(), e).Value == e.Value)
            cleared = true;
        return true;
    }
}
