using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

public sealed unsafe partial class EptMmu<TPlatform>
{
    /// <summary>
    /// Handles an EPT violation at <paramref name="gpa"/>: guest frame → host virtual address
    /// (memslots) → page faulted in through the primary MMU → EPT leaf installed.
    /// </summary>
    /// <remarks>
    /// Rules for using this (the sequence/retry protocol, invariant 2, seed 004):
    /// <code>
    /// seq = ReadBegin()                  // before the resolve
    /// resolve hva through the primary    // may fault the page in; no EPT lock held
    /// lock MMU
    ///   if in-progress invalidation overlaps hva, or seq moved: unlock, release, start again
    ///   install the leaf
    /// unlock; release the frame reference
    /// </code>
    /// Call from the vCPU's exit handler with no lock held. Returns <see cref="FaultStatus.NoRegion"/>
    /// for a guest frame outside every memslot (or after <see cref="Release"/>), AccessDenied for a
    /// write to a read-only slot.
    /// </remarks>
    public FaultStatus HandleViolation(GuestPhysAddr gpa, bool write)
    {
        // A user reference keeps the address space's page tables while we resolve through them,
        // even if its owner destroys it meanwhile (then the resolve fails with Dead).
        if (!_space.TryGetUser())
            return FaultStatus.Dead;
        FaultStatus status = HandleViolationAsUser(gpa, write);
        _space.PutUser();
        return status;
    }

    private FaultStatus HandleViolationAsUser(GuestPhysAddr gpa, bool write)
    {
        Gfn gfn = gpa.Gfn;
        while (true)
        {
            if (Volatile.Read(ref _dead) != 0)
                return FaultStatus.Dead;
            long seq = _seq.ReadBegin();
            _platform.Checkpoint(MmCheckpoint.SequenceRead);
            Memslot? slot = Memslots.Find(gfn);
            if (slot == null)
                return HandleForeignViolation(gfn, write);   // shared memory, else NoRegion (EptMmu.Foreign.cs)
            if (write && !slot.Writable)
                return FaultStatus.AccessDenied;
            VirtAddr hva = slot.HostAddressOf(gfn);
            FaultStatus status = _space.ResolveForSecondary(hva, write, out ResolvedPage page);
            if (status != FaultStatus.Ok)
                return status;
            // Where the primary maps 2 MiB and the whole 2 MiB fits the memslot at the same
            // alignment, map it with one 2 MiB EPT leaf; the retry check then covers all of it.
            bool huge = CanMapHuge(slot, gfn, hva, page);
            VirtAddr lo = huge ? hva.AlignDown(PageSizes.Size2M) : hva;
            VirtAddr hi = lo + (huge ? PageSizes.Size2M : PageSizes.Size4K);
            bool flush = false;
            LockMmu();
            bool dead = _dead != 0;
            bool retry = dead || _seq.RetryUnderLock(seq, lo, hi);
            if (!retry && huge)
                status = InstallHugeLeafLocked(gfn, page, page.Writable && slot.Writable, ref flush, out huge);
            if (!retry && !huge)
                status = InstallLeafLocked(gfn.Address, page.Frame, page.Writable && slot.Writable, ref flush);
            UnlockMmu();
            // Never wait for a TLB flush under the MMU lock: another vCPU may spin on it with
            // interrupts off and never answer the IPI. A leaf we replaced stays cached elsewhere
            // until this flush; its frames are still mapped by the primary (we hold a reference),
            // and an invalidation of them flushes itself before they are freed.
            if (flush)
                FlushTlbs();
            _platform.Checkpoint(MmCheckpoint.SecondaryInstallDone);
            _space.ReleaseResolved(page);
            if (!retry)
                return status;
            if (dead)
                return FaultStatus.Dead;
            Interlocked.Increment(ref _faultRetries);
            // An invalidation of our page is in flight (or just ended): let it finish before we
            // resolve again (KVM returns to the guest and takes the fault again).
            _platform.SpinPause();
        }
    }

    /// <summary>True when a 2 MiB EPT leaf can mirror the primary's 2 MiB mapping of <paramref name="hva"/>.</summary>
    private static bool CanMapHuge(Memslot slot, Gfn gfn, VirtAddr hva, in ResolvedPage page)
    {
        if (page.Level < 2)
            return false;
        ulong baseGfn = gfn.Value & ~511UL;
        if (baseGfn < slot.BaseGfn.Value || baseGfn + 512 > slot.EndGfn)
            return false;
        // Guest and host offsets inside the 2 MiB page must agree, and so must the frame's.
        ulong offsetPages = gfn.Value & 511;
        return slot.HostAddressOf(new Gfn(baseGfn)).IsAligned(PageSizes.Size2M)
            && ((page.Frame.Value - offsetPages) & 511) == 0
            && ((hva.Value >> PageSizes.Shift4K) & 511) == offsetPages;
    }

    /// <summary>
    /// Installs a 2 MiB leaf for the 2 MiB page around <paramref name="gfn"/>. If 4 KiB leaves already
    /// hang there (a table), sets <paramref name="installed"/> false so the caller maps 4 KiB instead.
    /// MMU lock held; the retry check for the whole 2 MiB passed.
    /// </summary>
    private FaultStatus InstallHugeLeafLocked(Gfn gfn, in ResolvedPage page, bool writable, ref bool flush, out bool installed)
    {
        installed = false;
        GuestPhysAddr gpa = new Gfn(gfn.Value & ~511UL).Address;
        ulong* slot = WalkCreateLocked(gpa, 2, ref flush);
        if (slot == null)
            return FaultStatus.OutOfMemory;
        Pfn baseFrame = new Pfn(page.Frame.Value & ~511UL);
        EptEntry leaf = EptEntry.ForLeaf(baseFrame.Address, 2, writable, EptMemoryType.WriteBack);
        EptEntry old;
        while (true)
        {
            old = EptOps.Read(slot);
            if (old.IsPresent && !old.IsLeaf(2))
                return FaultStatus.Ok;                 // a table of 4 KiB leaves: keep it
            EptEntry next = old.IsPresent && old.LeafAddress(2) == leaf.LeafAddress(2)
                ? leaf.WithBits(old.Value & (EptEntry.Accessed | EptEntry.Dirty))
                : leaf;
            // CAS: the CPU may set A/D in a present old entry (EptOps.MustUpdateAtomically).
            if (EptOps.CompareExchange(slot, next, old).Value == old.Value)
                break;
        }
        installed = true;
        if (old.IsPresent && old.LeafAddress(2) != leaf.LeafAddress(2))
        {
            // As in the 4 KiB path: cannot happen under the protocol; if it does, do what a zap
            // would: keep the dirty bits of the old frames and flush.
            if (old.IsDirty)
            {
                Pfn first = old.LeafAddress(2).Pfn;
                for (ulong i = 0; i < 512; i++)
                    _space.MarkFrameDirty(first + i);
            }
            flush = true;
        }
        return FaultStatus.Ok;
    }

    /// <summary>Installs the 4 KiB leaf gpa → frame. MMU lock held; the retry check passed. Sets
    /// <paramref name="flush"/> when the caller must flush after dropping the lock.</summary>
    private FaultStatus InstallLeafLocked(GuestPhysAddr gpa, Pfn frame, bool writable, ref bool flush)
    {
        ulong* slot = WalkCreateLocked(gpa, 1, ref flush);
        if (slot == null)
            return FaultStatus.OutOfMemory;
        EptEntry leaf = EptEntry.ForLeaf(frame.Address, 1, writable, EptMemoryType.WriteBack);
        EptEntry old;
        while (true)
        {
            old = EptOps.Read(slot);
            EptEntry next = leaf;
            // Same frame (a write upgrade, or a racing fault of another vCPU): keep what the CPU set.
            if (old.IsPresent && old.LeafAddress(1) == leaf.LeafAddress(1))
                next = leaf.WithBits(old.Value & (EptEntry.Accessed | EptEntry.Dirty));
            // CAS, not a plain store: the CPU may set A/D in a present old entry (EptOps.MustUpdateAtomically).
            if (EptOps.CompareExchange(slot, next, old).Value == old.Value)
                break;
        }
        if (old.IsPresent && old.LeafAddress(1) != leaf.LeafAddress(1))
        {
            // Cannot happen under the protocol (an invalidation zaps a leaf before its frame
            // changes); if it does, do what a zap would: keep the dirty bit and flush.
            if (old.IsDirty)
                _space.MarkFrameDirty(old.LeafAddress(1).Pfn);
            flush = true;
        }
        return FaultStatus.Ok;
    }

    /// <summary>
    /// Finds the slot at <paramref name="target"/> level (1: 4 KiB leaf, 2: 2 MiB) for
    /// <paramref name="gpa"/>, allocating missing tables above it. A larger leaf in the way is
    /// zapped (its dirty bits kept) and <paramref name="flush"/> set. MMU lock held: it is the only
    /// writer of non-leaf entries.
    /// </summary>
    private ulong* WalkCreateLocked(GuestPhysAddr gpa, int target, ref bool flush)
    {
        PhysAddr table = _root;
        for (int level = 4; level > target; level--)
        {
            ulong* slot = _platform.TableAt(table) + gpa.TableIndex(level);
            EptEntry e = EptOps.Read(slot);
            if (e.IsLeaf(level))
            {
                // A larger leaf in the way (we are the only one who turns empty into a table, so
                // after the zap the slot is empty). The caller flushes after the lock.
                ZapLeaf(slot, level);
                flush = true;
                e = EptEntry.Empty;
            }
            if (!e.IsPresent)
            {
                if (!_platform.AllocateTable(out PhysAddr fresh, out ulong* _))
                    return null;
                EptEntry link = EptEntry.ForTable(fresh);
                // The new table is zeroed before this publishes it (full barrier); pairs with
                // EptOps.Read in lockless walkers and with the CPU's walk. CAS from empty: we are
                // the only structure writer (MMU lock), and the CPU never writes an empty entry.
                EptOps.CompareExchange(slot, link, EptEntry.Empty);
                e = link;
            }
            table = e.TableAddress;
        }
        return _platform.TableAt(table) + gpa.TableIndex(target);
    }
}
