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
        Gfn gfn = gpa.Gfn;
        while (true)
        {
            long seq = _seq.ReadBegin();
            _platform.Checkpoint(MmCheckpoint.SequenceRead);
            Memslot? slot = Memslots.Find(gfn);
            if (slot == null)
                return FaultStatus.NoRegion;
            if (write && !slot.Writable)
                return FaultStatus.AccessDenied;
            VirtAddr hva = slot.HostAddressOf(gfn);
            FaultStatus status = _space.ResolveForSecondary(hva, write, out ResolvedPage page);
            if (status != FaultStatus.Ok)
                return status;
            LockMmu();
            bool dead = _dead != 0;
            bool retry = dead || _seq.RetryUnderLock(seq, hva, hva + PageSizes.Size4K);
            if (!retry)
                status = InstallLeafLocked(gfn.Address, page.Frame, page.Writable && slot.Writable);
            UnlockMmu();
            _platform.Checkpoint(MmCheckpoint.SecondaryInstallDone);
            _space.ReleaseResolved(page);
            if (!retry)
                return status;
            if (dead)
                return FaultStatus.NoRegion;
            Interlocked.Increment(ref _faultRetries);
            // An invalidation of our page is in flight (or just ended): let it finish before we
            // resolve again (KVM returns to the guest and takes the fault again).
            _platform.SpinPause();
        }
    }

    /// <summary>Installs the 4 KiB leaf gpa → frame. MMU lock held; the retry check passed.</summary>
    private FaultStatus InstallLeafLocked(GuestPhysAddr gpa, Pfn frame, bool writable)
    {
        bool flush = false;
        ulong* slot = WalkCreateLocked(gpa, ref flush);
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
        if (flush)
            FlushTlbs();
        return FaultStatus.Ok;
    }

    /// <summary>
    /// Finds the 4 KiB leaf slot for <paramref name="gpa"/>, allocating missing tables. A 2 MiB leaf
    /// in the way is zapped (its dirty bits kept) and <paramref name="flush"/> set. MMU lock held:
    /// it is the only writer of non-leaf entries.
    /// </summary>
    private ulong* WalkCreateLocked(GuestPhysAddr gpa, ref bool flush)
    {
        PhysAddr table = _root;
        for (int level = 4; level > 1; level--)
        {
            ulong* slot = _platform.TableAt(table) + gpa.TableIndex(level);
            EptEntry e = EptOps.Read(slot);
            if (e.IsLeaf(level))
            {
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
        return _platform.TableAt(table) + gpa.TableIndex(1);
    }
}
