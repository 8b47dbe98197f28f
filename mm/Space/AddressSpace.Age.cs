namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// Tests and clears "young" for the mapping (this, <paramref name="address"/>) of
    /// <paramref name="frame"/>: the primary accessed bit (under the page-table lock, cleared
    /// atomically because the CPU sets it), then the secondary MMUs outside the lock — the
    /// fast-only lockless call when <paramref name="exact"/> is false, ClearFlushYoung otherwise
    /// (invariant 3 and 4). A primary TLB flush follows a cleared bit only when exact. An incomplete
    /// fast answer counts as young. The caller holds a user reference.
    /// </summary>
    internal bool TestClearYoung(Pfn frame, VirtAddr address, bool exact)
    {
        bool young = false;
        bool mapped = false;
        _ptLock.Enter(_platform);
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        // A 4 KiB page, or a tracked 2 MiB page as one unit (its head is the frame the LRU holds).
        if (s.Level <= 2 && s.Value.IsPresent && !s.Value.IsSpecial && s.Value.LeafAddress(s.Level).Pfn == frame
            && s.Address == address)
        {
            mapped = true;
            PageTableEntry old = PteOps.ClearBits(s.Pointer, PageTableEntry.Accessed);
            young = old.IsAccessed;
        }
        _ptLock.Exit(_platform);
        if (!mapped)
            return false;
        VirtAddr end = address + s.Size;
        if (young && exact)
            FlushRange(address, end);
        if (Notifiers.HasNotifiers)
        {
            if (exact)
                young |= Notifiers.ClearFlushYoung(this, address, end);
            else
            {
                FastAgeResult fast = Notifiers.TestClearYoungFastOnly(this, address, end, true);
                // A notifier that was not asked (no lockless aging) may hold the page young:
                // unknown counts as young, as a failed compare-exchange does (invariant 4).
                young |= fast.Young || !fast.Complete;
            }
        }
        return young;
    }

    /// <summary>Tests young without clearing anything (primary bit and every secondary MMU).</summary>
    public bool TestYoung(VirtAddr address)
    {
        VirtAddr page = address.AlignDown(PageSizes.Size4K);
        bool young = Translate(page, out PageTableEntry leaf, out int _) && leaf.IsAccessed;
        if (Notifiers.HasNotifiers)
            young |= Notifiers.TestYoung(this, page, page + PageSizes.Size4K);
        return young;
    }
}
