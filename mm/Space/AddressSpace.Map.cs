using System.Threading;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// Finds the entry for <paramref name="address"/> at <paramref name="level"/>, creating missing
    /// tables when <paramref name="allocate"/>. Null with a status when a huge leaf is in the way,
    /// a table is missing (not allocating) or no frame is left. Caller holds <c>_ptLock</c>.
    /// </summary>
    private ulong* WalkLocked(VirtAddr address, int level, bool allocate, out MapStatus status)
    {
        PhysAddr table = Root;
        for (int l = 4; ; l--)
        {
            ulong* slot = (ulong*)_platform.PhysToVirt(table) + address.TableIndex(l);
            if (l == level)
            {
                status = MapStatus.Ok;
                return slot;
            }
            PageTableEntry e = PteOps.Read(slot);
            if (!e.IsPresent)
            {
                if (!allocate)
                {
                    status = MapStatus.NotMapped;
                    return null;
                }
                if (!_mm.Frames.AllocateFrame(out Pfn frame))
                {
                    status = MapStatus.OutOfMemory;
                    return null;
                }
                _mm.Frames.SetFlags(frame, FrameFlags.PageTable);
                ZeroFrame(frame);
                e = PageTableEntry.ForTable(frame.Address);
                // Release store of a zeroed table; pairs with PteOps.Read in walkers (lockless ones
                // included), which then see the zeroes.
                PteOps.Write(slot, e);
            }
            else if (e.IsLeaf(l))
            {
                status = MapStatus.Conflict;
                return null;
            }
            table = e.TableAddress;
        }
    }

    /// <summary>
    /// Maps <c>[address, address + size)</c> to <paramref name="physical"/> with one entry of size
    /// 4 KiB, 2 MiB or 1 GiB. The mapping is untracked (the "special" bit: no reference count, no
    /// reverse map), as for fixed regions and device memory.
    /// </summary>
    public MapStatus Map(VirtAddr address, PhysAddr physical, ulong size, PageProt prot)
    {
        int level = size == PageSizes.Size4K ? 1 : size == PageSizes.Size2M ? 2 : size == PageSizes.Size1G ? 3 : 0;
        if (level == 0 || !address.IsAligned(size) || !physical.IsAligned(size) || address.Value >= UserTop || UserTop - address.Value < size)
            return MapStatus.Misaligned;
        _ptLock.Enter(_platform);
        MapStatus status = _dead != 0 ? MapStatus.Dead : MapLocked(address, physical, level, prot);
        _ptLock.Exit(_platform);
        return status;
    }

    private MapStatus MapLocked(VirtAddr address, PhysAddr physical, int level, PageProt prot)
    {
        ulong* slot = WalkLocked(address, level, true, out MapStatus status);
        if (slot == null)
            return status;
        PageTableEntry old = PteOps.Read(slot);
        if (old.IsPresent)
            return old.IsLeaf(level) ? MapStatus.AlreadyMapped : MapStatus.Conflict;
        if (old.IsSwap)
            return MapStatus.Conflict;      // a swapped-out anonymous page is there
        // Non-present before: the CPU cannot be setting A/D in it, and x86 caches no non-present
        // entries, so a release store and no flush suffice.
        PteOps.Write(slot, PageTableEntry.ForLeaf(physical, level, prot).WithSpecial(true));
        return MapStatus.Ok;
    }

    /// <summary>
    /// Maps the tracked frame <paramref name="frame"/> at <paramref name="address"/> (4 KiB): takes a
    /// reference for the mapping and records it in the reverse map.
    /// </summary>
    public MapStatus MapFrame(VirtAddr address, Pfn frame, PageProt prot)
    {
        if (!address.IsAligned(PageSizes.Size4K) || address.Value >= UserTop)
            return MapStatus.Misaligned;
        _ptLock.Enter(_platform);
        if (_dead != 0)
        {
            _ptLock.Exit(_platform);
            return MapStatus.Dead;
        }
        ulong* slot = WalkLocked(address, 1, true, out MapStatus status);
        if (slot == null)
        {
            _ptLock.Exit(_platform);
            return status;
        }
        if (PteOps.Read(slot).Raw != 0)
        {
            // Mapped, or a swap entry (the page is swapped out, not missing).
            _ptLock.Exit(_platform);
            return MapStatus.AlreadyMapped;
        }
        _mm.Frames.GetRef(frame);
        if (!_mm.Rmap.Add(frame, this, address))
        {
            _ptLock.Exit(_platform);
            _mm.Frames.PutRef(frame);
            return MapStatus.OutOfMemory;
        }
        // Release store after the rmap entry: a reclaimer that finds the entry through the rmap
        // then takes _ptLock and sees this store.
        PteOps.Write(slot, PageTableEntry.ForLeaf(frame.Address, 1, prot));
        _ptLock.Exit(_platform);
        return MapStatus.Ok;
    }

    /// <summary>
    /// Splits the huge leaf (2 MiB or 1 GiB) that maps <paramref name="address"/> into a table of
    /// 512 smaller leaves with the same translation and rights, then flushes the huge range
    /// (SDM Vol. 3A, 4.10.2.3: a page-size change needs an invalidation) and calls the notifiers
    /// for it (<see cref="MmuNotifierEvent.Split"/>, as Linux's huge-PMD split does): the
    /// translation is the same, but a secondary that mapped the range with one huge leaf drops it
    /// and faults the parts back at the primary's new size, so that from now on it ages, dirties
    /// and invalidates them page by page, as the primary does.
    /// A tracked 2 MiB page (<see cref="Region.HugePages"/>) becomes 512 tracked 4 KiB pages: each
    /// frame gets its own reference, reverse-map entry and LRU place (the head's generation). A
    /// transient reference on it (a secondary resolving it, an eviction holding it) makes the split
    /// wait for its release.
    /// </summary>
    public MapStatus SplitHuge(VirtAddr address)
    {
        return SplitHuge(address, default, 0, -1);
    }

    /// <summary>
    /// <see cref="SplitHuge(VirtAddr)"/> for a caller that holds <paramref name="extraRefs"/>
    /// references on the tracked 2 MiB page whose head is <paramref name="head"/> (NotMapped when
    /// the address maps another page now), and, if it took the head off the LRU (eviction), the
    /// generation <paramref name="isolatedSeq"/> it took it from (-1 otherwise). Busy is returned
    /// only when another holder's reference did not go within a bounded wait.
    /// </summary>
    internal MapStatus SplitHuge(VirtAddr address, Pfn head, int extraRefs, int isolatedSeq)
    {
        if (address.Value >= UserTop)
            throw new System.ArgumentException("SplitHuge: address above the user half (2^47)");
        for (int attempt = 0; ; attempt++)
        {
            _ptLock.Enter(_platform);
            MapStatus status = SplitLocked(address, head, extraRefs, isolatedSeq, out VirtAddr start, out ulong size);
            _ptLock.Exit(_platform);
            if (status == MapStatus.Ok)
                FinishTeardown(start, start + size, MmuNotifierEvent.Split);
            if (status != MapStatus.Busy || attempt == BusyRetries)
                return status;
            // A resolve or an eviction holds the head for a moment: let it finish (no lock held).
            _platform.SpinPause();
        }
    }

    /// <summary>How often a split that found a transient reference tries again before it reports Busy.</summary>
    private const int BusyRetries = 1 << 16;

    private MapStatus SplitLocked(VirtAddr address, out VirtAddr start, out ulong size)
    {
        return SplitLocked(address, default, 0, -1, out start, out size);
    }

    private MapStatus SplitLocked(VirtAddr address, Pfn expectedHead, int extraRefs, int isolatedSeq, out VirtAddr start, out ulong size)
    {
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        start = s.Address;
        size = s.Size;
        if (!s.Value.IsPresent)
            return MapStatus.NotMapped;
        if (s.Level == 1)
            return MapStatus.Conflict;
        Pfn head = default;
        bool tracked = !s.Value.IsSpecial;
        if (tracked)
        {
            // Only 2 MiB pages are tracked huge leaves (a fault never maps 1 GiB anonymous memory).
            head = s.Value.LeafAddress(2).Pfn;
            // The caller's references are on its page: another one mapped here since is not it.
            if (extraRefs > 0 && head != expectedHead)
                return MapStatus.NotMapped;
            // Freeze the head's count (the mapping's reference and the caller's): no reference can
            // be taken meanwhile, and a holder of another one could still act on the 2 MiB page.
            if (!_mm.Frames.TryFreezeRefs(head, 1 + extraRefs))
                return MapStatus.Busy;
        }
        if (!_mm.Frames.AllocateFrame(out Pfn tableFrame))
        {
            if (tracked)
                _mm.Frames.UnfreezeRefs(head, 1 + extraRefs);
            return MapStatus.OutOfMemory;
        }
        _mm.Frames.SetFlags(tableFrame, FrameFlags.PageTable);
        if (tracked && !MakeTailsIndependentLocked(head, start, isolatedSeq))
        {
            _mm.Frames.PutRef(tableFrame);
            _mm.Frames.UnfreezeRefs(head, 1 + extraRefs);
            return MapStatus.OutOfMemory;
        }
        ulong* child = (ulong*)_platform.PhysToVirt(tableFrame.Address);
        int childLevel = s.Level - 1;
        ulong childSize = PageSizes.ForLevel(childLevel);
        PageTableEntry old = s.Value;
        while (true)
        {
            ulong baseAddr = old.LeafAddress(s.Level).Value;
            // Keep every flag but the address; for 4 KiB children, PS becomes PAT's position (bit 7)
            // and the large-page PAT (bit 12) is dropped into it (Tables 4-18 vs 4-20).
            ulong flags = old.Raw & ~PageTableEntry.AddressMask4K;
            if (childLevel == 1)
            {
                flags &= ~PageTableEntry.PageSize;
                if ((old.Raw & PageTableEntry.PatLarge) != 0)
                    flags |= PageTableEntry.Pat4K;
            }
            else
            {
                flags |= old.Raw & PageTableEntry.PatLarge;
            }
            for (int i = 0; i < 512; i++)
                child[i] = flags | (baseAddr + (ulong)i * childSize);
            // CAS: the CPU may set A/D in the huge leaf while we build the table; then rebuild
            // from the new value. Full barrier: the table contents are visible before the entry.
            if (PteOps.CompareExchange(s.Pointer, old, PageTableEntry.ForTable(tableFrame.Address)))
            {
                if (tracked)
                    _mm.Frames.UnfreezeRefs(head, 1 + extraRefs);
                return MapStatus.Ok;
            }
            old = PteOps.Read(s.Pointer);
        }
    }

    /// <summary>
    /// The frame side of a split of the tracked 2 MiB page at <paramref name="start"/> (head
    /// frozen, _ptLock held, before the entry changes): a reverse-map entry, a reference and the
    /// anonymous flag for each tail, the head's huge mark dropped, and the tails on the LRU beside
    /// the head. False (nothing changed) when the reverse map has no room.
    /// </summary>
    private bool MakeTailsIndependentLocked(Pfn head, VirtAddr start, int isolatedSeq)
    {
        for (int i = 1; i < FrameDatabase<TPlatform>.HugeFrames; i++)
        {
            if (_mm.Rmap.Add(head + (ulong)i, this, start + (ulong)i * PageSizes.Size4K))
                continue;
            for (int j = 1; j < i; j++)
                _mm.Rmap.Remove(head + (ulong)j, this, start + (ulong)j * PageSizes.Size4K);
            return false;
        }
        for (int i = 1; i < FrameDatabase<TPlatform>.HugeFrames; i++)
            _mm.Frames.MakeIndependent(head + (ulong)i, FrameFlags.Anonymous);
        _mm.Frames.ClearFlags(head, FrameFlags.Huge);
        _mm.Lru.SplitHuge(head, isolatedSeq);
        return true;
    }
}
