namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// Changes the rights of every present leaf in <c>[start, end)</c> to <paramref name="prot"/>
    /// (keeping A/D). When any right was removed: one flush and one notifier call
    /// (<see cref="MmuNotifierEvent.ProtectionChange"/>) for the whole range, after the entries
    /// changed. Partly covered huge leaves are split. Returns the number of entries changed, or -1
    /// when a split found no frame (the part before it is changed and notified, the rest is not).
    /// The range is validated first (<see cref="ValidateRange"/>).
    /// </summary>
    public int Protect(VirtAddr start, VirtAddr end, PageProt prot)
    {
        ValidateRange(start, end);
        int total = 0;
        while (true)
        {
            int changed = ProtectPart(ref start, end, prot, out bool busy);
            if (changed < 0)
                return -1;
            total += changed;
            if (!busy)
                return total;
            _platform.SpinPause();
        }
    }

    /// <summary>
    /// One pass of <see cref="Protect"/> from <paramref name="start"/>; <paramref name="busy"/>: it
    /// stopped at a tracked 2 MiB page held for a moment (<paramref name="start"/> moves there).
    /// </summary>
    private int ProtectPart(ref VirtAddr start, VirtAddr end, PageProt prot, out bool busy)
    {
        busy = false;
        int changed = 0;
        bool reduced = false;
        bool outOfMemory = false;
        VirtAddr stop = end;
        _ptLock.Enter(_platform);
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, start, end);
        while (w.MoveNext())
        {
            PteSlot s = w.Current;
            if (!s.Value.IsPresent)
            {
                // A swap entry keeps the page's rights for its swap-in: change them there too.
                // Plain store: a non-present entry is never written by the CPU nor cached.
                if (s.Value.IsSwap && s.Value.WithProt(prot).Raw != s.Value.Raw)
                {
                    PageTableEntry swapped = s.Value.WithProt(prot);
                    PteOps.Write(s.Pointer, swapped);
                    changed++;
                    // A swap-out that installed this entry calls the notifiers only after it drops
                    // the lock: until then a secondary may still map the old frame with the old
                    // rights. Reducing them must flush and notify too, or Protect returns while a
                    // secondary can still write the page (as Unmap does for a swap entry, 4.4).
                    if ((s.Value.IsWritable && !swapped.IsWritable) || (s.Value.IsUser && !swapped.IsUser) || (!s.Value.IsNoExecute && swapped.IsNoExecute))
                        reduced = true;
                }
                continue;
            }
            if (s.Level > 1 && (s.Address < start || s.End > end))
            {
                VirtAddr at = s.Address < start ? start : s.Address;
                MapStatus split = SplitLocked(at, out VirtAddr _, out ulong _);
                if (split == MapStatus.Busy)
                {
                    // A tracked 2 MiB page held for a moment: finish this part (flush and notify
                    // below), then go on from here without the lock held meanwhile.
                    busy = true;
                    stop = at;
                    break;
                }
                if (split != MapStatus.Ok)
                {
                    // Nothing may throw under _ptLock: stop here, notify what changed.
                    outOfMemory = true;
                    stop = at;
                    break;
                }
                reduced = true; // the split needs the flush
                w.Restart(at);
                continue;
            }
            PageTableEntry old = s.Value;
            while (true)
            {
                PageTableEntry next = old.WithProt(prot);
                // A merged frame stays read-only (its writes copy; AddressSpace.Merge.cs).
                if (next.IsWritable && !old.IsWritable && MustCopyOnWrite(old, s.Level))
                    next = next.WithWritable(false);
                if (next.Raw == old.Raw)
                    break;
                // CAS: the CPU may set A/D concurrently; retry with the value it left.
                if (PteOps.CompareExchange(s.Pointer, old, next))
                {
                    changed++;
                    if ((old.IsWritable && !next.IsWritable) || (old.IsUser && !next.IsUser) || (!old.IsNoExecute && next.IsNoExecute))
                        reduced = true;
                    break;
                }
                old = PteOps.Read(s.Pointer);
            }
        }
        _ptLock.Exit(_platform);
        if (reduced && start < stop)
            FinishTeardown(start, stop, MmuNotifierEvent.ProtectionChange);
        start = stop;
        return outOfMemory ? -1 : changed;
    }
}
