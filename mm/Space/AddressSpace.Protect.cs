using System;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// Changes the rights of every present leaf in <c>[start, end)</c> to <paramref name="prot"/>
    /// (keeping A/D). When any right was removed: one flush and one notifier call
    /// (<see cref="MmuNotifierEvent.ProtectionChange"/>) for the whole range, after the entries
    /// changed. Partly covered huge leaves are split. Returns the number of entries changed.
    /// </summary>
    public int Protect(VirtAddr start, VirtAddr end, PageProt prot)
    {
        int changed = 0;
        bool reduced = false;
        _ptLock.Enter(_platform);
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, start, end);
        while (w.MoveNext())
        {
            PteSlot s = w.Current;
            if (!s.Value.IsPresent)
                continue;
            if (s.Level > 1 && (s.Address < start || s.End > end))
            {
                if (SplitLocked(s.Address < start ? start : s.Address, out VirtAddr _, out ulong _) != MapStatus.Ok)
                    throw new InvalidOperationException("Protect: cannot split a huge page (no memory)");
                reduced = true; // the split needs the flush
                w.Restart(s.Address < start ? start : s.Address);
                continue;
            }
            PageTableEntry old = s.Value;
            while (true)
            {
                PageTableEntry next = old.WithProt(prot);
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
        _ptLock.Exit();
        if (reduced)
            FinishTeardown(start, end, MmuNotifierEvent.ProtectionChange);
        return changed;
    }
}
