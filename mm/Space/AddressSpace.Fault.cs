using System.Threading;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// The primary page-fault handler: makes <paramref name="address"/> mapped with at least the
    /// requested access, according to its region (demand-zero, fixed, or userfault wait).
    /// <c>Dead</c> once the space is dying: nothing is installed then (checked under the
    /// page-table lock at every install). The caller holds a user reference (or is the owner).
    /// </summary>
    public FaultStatus HandleFault(VirtAddr address, bool write)
    {
        while (true)
        {
            Region? region = Regions.Find(address);
            if (region == null)
                return FaultStatus.NoRegion;
            if (write && (region.Prot & PageProt.Write) == 0)
                return FaultStatus.AccessDenied;
            VirtAddr page = address.AlignDown(PageSizes.Size4K);
            // Lockless probe first (safe: table pages outlive the address space's users, and
            // PteOps.Read pairs with the release store that installed the entry). A missing page
            // goes straight to the slow path, which re-checks under _ptLock.
            if (Translate(page, out PageTableEntry leaf, out int _))
            {
                if (!write || leaf.IsWritable)
                    return FaultStatus.Ok;
                FaultStatus present = TryUpgradePresent(page, write);
                if (present != FaultStatus.NoRegion)
                    return present;
                continue;   // gone since the probe (unmapped or swapped out): probe again
            }
            else if (leaf.IsSwap)
            {
                // Swapped out (before the userfault and demand-zero paths: the page has contents).
                FaultStatus swapped = FaultSwapIn(page, leaf);
                if (swapped != FaultStatus.Ok && swapped != FaultStatus.Exists)
                    return swapped;
                continue;
            }
            if (region.Kind == RegionKind.Fixed)
                return FaultFixed(region, page);
            if (region.Userfault != null)
            {
                // A dying space wakes its waiters (Destroy); they must not wait again.
                if (Volatile.Read(ref _dead) != 0)
                    return FaultStatus.Dead;
                WaitForUserfault(region, page, write);
                continue;
            }
            FaultStatus status = FaultAnonymous(region, page);
            if (status != FaultStatus.Exists)
                return status;
        }
    }

    /// <summary>
    /// If the page is mapped: Ok (upgrading a read-only entry of a writable region on a write,
    /// like a write-protect fault). NoRegion when it is not mapped.
    /// </summary>
    private FaultStatus TryUpgradePresent(VirtAddr page, bool write)
    {
        while (true)
        {
            FaultStatus status = TryUpgradePresentOnce(page, write, out Pfn shared);
            if (status != FaultStatus.Exists)
                return status;
            // A merged frame: copy it (AddressSpace.Merge.cs), then upgrade the private copy.
            status = BreakCow(page, shared);
            if (status != FaultStatus.Ok)
                return status;
        }
    }

    /// <summary>One try of <see cref="TryUpgradePresent"/>; Exists: the page maps a frame that must
    /// be copied on write (<paramref name="shared"/>, with a reference taken for the caller).</summary>
    private FaultStatus TryUpgradePresentOnce(VirtAddr page, bool write, out Pfn shared)
    {
        shared = default;
        _ptLock.Enter(_platform);
        if (_dead != 0)
        {
            _ptLock.Exit(_platform);
            return FaultStatus.Dead;
        }
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, page, page + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        if (!s.Value.IsPresent)
        {
            _ptLock.Exit(_platform);
            return FaultStatus.NoRegion;
        }
        if (write && !s.Value.IsWritable && MustCopyOnWrite(s.Value, s.Level))
        {
            // Never made writable in place. The mapping holds a reference under _ptLock, so the
            // count is > 0 for GetRef.
            shared = s.Value.LeafAddress(1).Pfn;
            _mm.Frames.GetRef(shared);
            _ptLock.Exit(_platform);
            return FaultStatus.Exists;
        }
        if (write && !s.Value.IsWritable)
        {
            // Upgrade in place; atomic because the CPU may set A/D concurrently. Raising rights
            // needs no flush (a stale read-only TLB entry only causes a spurious fault).
            PteOps.SetBits(s.Pointer, PageTableEntry.Writable);
        }
        _ptLock.Exit(_platform);
        return FaultStatus.Ok;
    }

    private FaultStatus FaultFixed(Region region, VirtAddr page)
    {
        // Map with the largest page that fits the region and the alignment of both sides.
        for (int level = 3; level >= 1; level--)
        {
            ulong size = PageSizes.ForLevel(level);
            VirtAddr va = page.AlignDown(size);
            PhysAddr pa = new PhysAddr(region.FixedBase.Value + (va - region.Start));
            if (va < region.Start || (va + size) > region.End || !pa.IsAligned(size))
                continue;
            _ptLock.Enter(_platform);
            MapStatus status = _dead != 0 ? MapStatus.Dead : MapLocked(va, pa, level, region.Prot);
            _ptLock.Exit(_platform);
            if (status == MapStatus.Ok || status == MapStatus.AlreadyMapped)
                return FaultStatus.Ok;
            if (status == MapStatus.Dead)
                return FaultStatus.Dead;
            if (status == MapStatus.OutOfMemory)
                return FaultStatus.OutOfMemory;
            // Conflict: a smaller mapping is already there; try a smaller size.
        }
        return FaultStatus.OutOfMemory;
    }

    /// <summary>Demand-zero: allocate, zero outside the lock, install unless someone else did. Exists = lost a race.</summary>
    private FaultStatus FaultAnonymous(Region region, VirtAddr page)
    {
        // At the resident limit, or no frame: reclaim synchronously (bounded; no lock is held
        // here), then retry once.
        _mm.ReclaimIfOverLimit();
        if (region.HugePages && TryFaultHuge(region, page, out FaultStatus huge))
            return huge;
        if (!_mm.Frames.AllocateFrame(out Pfn frame) && !(_mm.DirectReclaim() && _mm.Frames.AllocateFrame(out frame)))
            return FaultStatus.OutOfMemory;
        ZeroFrame(frame);
        return InstallAnonymous(page, frame, region.Prot);
    }

    /// <summary>
    /// Demand-zero with a tracked 2 MiB page (<see cref="Region.HugePages"/>): when the span around
    /// <paramref name="page"/> lies wholly in the region, nothing is mapped in it yet, the resident
    /// limit leaves room for 512 pages and a free 2 MiB block exists, maps the span with one leaf.
    /// False (nothing done) when the fault should map 4 KiB instead; true with the status
    /// otherwise (Exists: another fault mapped the span meanwhile).
    /// </summary>
    private bool TryFaultHuge(Region region, VirtAddr page, out FaultStatus status)
    {
        status = FaultStatus.Ok;
        VirtAddr span = page.AlignDown(PageSizes.Size2M);
        if (span < region.Start || span + PageSizes.Size2M > region.End || !HugeSpanEmpty(span))
            return false;
        int limit = _mm.ResidentLimit;
        if (limit != 0 && _mm.Lru.Listed + FrameDatabase<TPlatform>.HugeFrames > limit)
            return false;
        // No direct reclaim for a huge page (compare THP's defrag=defer): a fragmented or short
        // allocator gives 4 KiB pages.
        if (!_mm.Frames.AllocateHuge(out Pfn head))
            return false;
        for (int i = 0; i < FrameDatabase<TPlatform>.HugeFrames; i++)
            ZeroFrame(head + (ulong)i);
        bool fallBack = false;
        _ptLock.Enter(_platform);
        ulong* slot = _dead != 0 ? null : WalkLocked(span, 2, true, out MapStatus _);
        if (_dead != 0)
            status = FaultStatus.Dead;
        else if (slot == null)
            status = FaultStatus.OutOfMemory;
        else
        {
            PageTableEntry there = PteOps.Read(slot);
            if (there.Raw != 0)
            {
                // A table of 4 KiB entries appeared meanwhile (map 4 KiB), or another fault's
                // 2 MiB leaf (probe again).
                fallBack = !there.IsLeaf(2);
                status = FaultStatus.Exists;
            }
            else if (!_mm.Rmap.Add(head, this, span))
                status = FaultStatus.OutOfMemory;
            else
            {
                _mm.Frames.SetFlags(head, FrameFlags.Anonymous);
                _mm.Lru.Add(head, this, span, huge: true);
                // Release store: the zeroed block and the head's record are visible before the
                // entry; pairs with PteOps.Read in walkers and the CPU's page walk.
                PteOps.Write(slot, PageTableEntry.ForLeaf(head.Address, 2, region.Prot));
            }
        }
        _ptLock.Exit(_platform);
        if (status != FaultStatus.Ok)
        {
            _mm.Frames.PutRef(head);    // frees the whole block (Huge)
            return !fallBack;
        }
        _platform.Checkpoint(MmCheckpoint.PrimaryEntryInstalled);
        return true;
    }

    /// <summary>Lockless probe: nothing at all is mapped in the 2 MiB span (no leaf, no table of 4 KiB entries, no swap entry).</summary>
    private bool HugeSpanEmpty(VirtAddr span)
    {
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, span, span + 1);
        w.MoveNext();
        return w.Current.Level >= 2 && w.Current.Value.Raw == 0;
    }

    /// <summary>Installs a fresh frame (count 1, becomes the mapping's reference). Exists if the
    /// page was mapped meanwhile (the frame is then freed).</summary>
    private FaultStatus InstallAnonymous(VirtAddr page, Pfn frame, PageProt prot)
    {
        _ptLock.Enter(_platform);
        FaultStatus result = FaultStatus.Ok;
        // The dead check is under _ptLock: Destroy sets _dead under it, so either this install
        // comes first (and the teardown's unmap removes it) or nothing is installed.
        MapStatus walk = MapStatus.Ok;
        ulong* slot = _dead != 0 ? null : WalkLocked(page, 1, true, out walk);
        if (_dead != 0)
            result = FaultStatus.Dead;
        else if (slot == null)
            // A 2 MiB leaf in the way was mapped by another fault since the probe: probe again.
            result = walk == MapStatus.Conflict ? FaultStatus.Exists : FaultStatus.OutOfMemory;
        else if (PteOps.Read(slot).Raw != 0)
            result = FaultStatus.Exists;    // mapped, or swapped out since the probe
        else if (!_mm.Rmap.Add(frame, this, page))
            result = FaultStatus.OutOfMemory;
        else
        {
            _mm.Frames.SetFlags(frame, FrameFlags.Anonymous);
            _mm.Lru.Add(frame, this, page); // the youngest generation (LRU lock inside _ptLock)
            // Release store: the zeroed (or copied) contents and the frame record are visible
            // before the entry; pairs with PteOps.Read in walkers and the CPU's page walk.
            PteOps.Write(slot, PageTableEntry.ForLeaf(frame.Address, 1, prot));
        }
        _ptLock.Exit(_platform);
        if (result != FaultStatus.Ok)
        {
            _mm.Frames.PutRef(frame);
            return result;
        }
        _platform.Checkpoint(MmCheckpoint.PrimaryEntryInstalled);
        return FaultStatus.Ok;
    }
}
