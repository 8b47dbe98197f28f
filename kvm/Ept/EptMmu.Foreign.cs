using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// A foreign memslot: guest frames of this VM (B) backed by a host range of another address space
/// (the source, A's guest RAM): memory shared between VMs (invariant 7, seed 003). It is its own
/// secondary MMU registration on the source: the source's invalidations zap B's EPT leaves of the
/// slot, B's faults on the slot resolve through the source under this slot's own
/// <see cref="InvalidationSequence"/>, and the source's aging asks B's accessed bits.
/// </summary>
/// <remarks>
/// <para>Only 4 KiB leaves are installed for a foreign slot (no 2 MiB mapping of shared memory).</para>
/// <para>Locks: the sequence and the <c>_dead</c> flag are protected by the owning EPT's MMU lock
/// (the same lock that protects every leaf install of that EPT). The MMU lock is taken inside the
/// source's notifier callbacks (no source lock held, inside the source list's read-side section)
/// and by a foreign fault after the source resolve returned; it is never held while calling into
/// the source. Registration and unregistration on the source's list happen in
/// <see cref="EptMmu{TPlatform}.AddForeignMemslot"/>/<see cref="EptMmu{TPlatform}.RemoveForeignMemslot"/>
/// with no lock held, never from a callback (docs/locking.md, "Mirrors").</para>
/// </remarks>
public sealed class ForeignMemslot<TPlatform> : IMmuNotifier where TPlatform : struct, IEptPlatform
{
    /// <summary>The EPT this slot belongs to (VM B).</summary>
    public readonly EptMmu<TPlatform> Owner;
    /// <summary>The address space whose memory the slot shows (VM A's).</summary>
    public readonly IAddressSpace Source;
    /// <summary>Guest frames of B → host range of the source.</summary>
    public readonly Memslot Slot;
    internal readonly InvalidationSequence Seq = new InvalidationSequence();
    // Under the owner's MMU lock: set by Release (source dying or the slot removed).
    internal int Dead;
    internal long InvalidationCount;
    internal long RetryCount;

    internal ForeignMemslot(EptMmu<TPlatform> owner, IAddressSpace source, Memslot slot)
    {
        Owner = owner;
        Source = source;
        Slot = slot;
    }

    /// <summary>The sequence (read-only use: tests and statistics).</summary>
    public InvalidationSequence Sequence { get { return Seq; } }

    /// <summary>True once released (the source died or the slot was removed): faults fail with Dead.</summary>
    public bool IsReleased { get { return Volatile.Read(ref Dead) != 0; } }

    /// <summary>Source invalidations that overlapped the slot.</summary>
    public long Invalidations { get { return Volatile.Read(ref InvalidationCount); } }

    /// <summary>Faults on the slot that dropped what they resolved and started again.</summary>
    public long Retries { get { return Volatile.Read(ref RetryCount); } }

    /// <inheritdoc/>
    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        Owner.ForeignInvalidateStart(this, range);
    }

    /// <inheritdoc/>
    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        Owner.ForeignInvalidateEnd(this);
    }

    /// <inheritdoc/>
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        return Owner.ForeignAge(this, start, end, true, true);
    }

    /// <inheritdoc/>
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        return Owner.ForeignAge(this, start, end, true, false);
    }

    /// <inheritdoc/>
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        return Owner.ForeignAge(this, start, end, false, false);
    }

    /// <inheritdoc/>
    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        // Lockless: the EPT's aging walk takes no lock (EptMmu.AgeGuestRange).
        return Owner.ForeignAge(this, start, end, clear, false);
    }

    /// <inheritdoc/>
    public void Release(IAddressSpace space)
    {
        Owner.ForeignRelease(this);
    }
}

public sealed unsafe partial class EptMmu<TPlatform>
{
    // The foreign slots, replaced as a whole under the MMU lock; read lock-free by faults.
    private ForeignMemslot<TPlatform>[] _foreign = new ForeignMemslot<TPlatform>[0];

    /// <summary>The foreign slots (a snapshot).</summary>
    public ForeignMemslot<TPlatform>[] ForeignMemslots
    {
        // Acquire; pairs with the Volatile.Write in AddForeignMemslot/RemoveForeignMemslot.
        get { return Volatile.Read(ref _foreign); }
    }

    /// <summary>
    /// Shares <paramref name="slot"/>'s host range of <paramref name="source"/> with this VM: the
    /// slot's guest frames fault in the source's pages. Registers the slot as a notifier on
    /// <paramref name="sourceNotifiers"/> (the source's list) first, so every invalidation that
    /// could matter reaches it before any fault can install a leaf; then publishes it. Null when the
    /// slot overlaps another slot of this VM, this EPT is released, or the source is dying.
    /// Call with no lock held and never from a notifier callback (it waits for the source's grace period).
    /// </summary>
    public ForeignMemslot<TPlatform>? AddForeignMemslot<TMm>(Memslot slot, IAddressSpace source, MmuNotifierList<TMm> sourceNotifiers)
        where TMm : struct, IMmPlatform
    {
        ForeignMemslot<TPlatform> f = new ForeignMemslot<TPlatform>(this, source, slot);
        if (!sourceNotifiers.Register(f, MmuNotifierFlags.LocklessAging))
            return null;
        LockMmu();
        bool ok = _dead == 0 && !OverlapsAnySlotLocked(slot.BaseGfn.Value, slot.EndGfn);
        if (ok)
        {
            ForeignMemslot<TPlatform>[] old = _foreign;
            ForeignMemslot<TPlatform>[] next = new ForeignMemslot<TPlatform>[old.Length + 1];
            for (int i = 0; i < old.Length; i++)
                next[i] = old[i];
            next[old.Length] = f;
            // Release: the array is complete before it is published; pairs with ForeignMemslots.
            Volatile.Write(ref _foreign, next);
        }
        UnlockMmu();
        if (!ok)
        {
            sourceNotifiers.Unregister(f);
            return null;
        }
        return f;
    }

    /// <summary>
    /// Removes a foreign slot: unregisters it from the source (its Release refuses faults, zaps its
    /// leaves and flushes), then unpublishes it. Also after the source's teardown released it.
    /// Call with no lock held and never from a notifier callback. False if it is not a slot of this EPT.
    /// </summary>
    public bool RemoveForeignMemslot<TMm>(ForeignMemslot<TPlatform> f, MmuNotifierList<TMm> sourceNotifiers)
        where TMm : struct, IMmPlatform
    {
        if (f.Owner != this)
            return false;
        sourceNotifiers.Unregister(f);
        // Unregister returns false when the source's teardown claimed the release: it ran (or is
        // running, and ReleaseAll waits for it); either way make sure the leaves are gone.
        ForeignRelease(f);
        LockMmu();
        ForeignMemslot<TPlatform>[] old = _foreign;
        int at = -1;
        for (int i = 0; i < old.Length; i++)
        {
            if (old[i] == f)
                at = i;
        }
        if (at >= 0)
        {
            ForeignMemslot<TPlatform>[] next = new ForeignMemslot<TPlatform>[old.Length - 1];
            int j = 0;
            for (int i = 0; i < old.Length; i++)
            {
                if (i != at)
                    next[j++] = old[i];
            }
            // Release; pairs with ForeignMemslots.
            Volatile.Write(ref _foreign, next);
        }
        UnlockMmu();
        return at >= 0;
    }

    /// <summary>True when guest frames <c>[first, end)</c> overlap a memslot (invalid ones too) or a foreign slot. MMU lock held.</summary>
    private bool OverlapsAnySlotLocked(ulong first, ulong end)
    {
        MemslotMap slots = _slots;
        for (int i = 0; i < slots.Count; i++)
        {
            if (first < slots[i].EndGfn && slots[i].BaseGfn.Value < end)
                return true;
        }
        return OverlapsForeignLocked(first, end);
    }

    /// <summary>True when a foreign slot covers <paramref name="gpa"/> (lock-free: a snapshot of the slots).</summary>
    public bool InForeignMemslot(GuestPhysAddr gpa)
    {
        ForeignMemslot<TPlatform>[] foreign = ForeignMemslots;
        ulong gfn = gpa.Value >> PageSizes.Shift4K;
        for (int i = 0; i < foreign.Length; i++)
        {
            if (foreign[i].Slot.BaseGfn.Value <= gfn && gfn < foreign[i].Slot.EndGfn)
                return true;
        }
        return false;
    }

    /// <summary>True when guest frames <c>[first, end)</c> overlap a foreign slot. MMU lock held.</summary>
    private bool OverlapsForeignLocked(ulong first, ulong end)
    {
        ForeignMemslot<TPlatform>[] foreign = _foreign;
        for (int i = 0; i < foreign.Length; i++)
        {
            if (first < foreign[i].Slot.EndGfn && foreign[i].Slot.BaseGfn.Value < end)
                return true;
        }
        return false;
    }

    /// <summary>
    /// An EPT violation outside every own memslot: the foreign slot's fault, under the source's
    /// sequence/retry check (the same protocol as <see cref="HandleViolation"/>, with the slot's
    /// own sequence), 4 KiB leaves only. NoRegion when no foreign slot covers the frame.
    /// </summary>
    private FaultStatus HandleForeignViolation(Gfn gfn, bool write)
    {
        ForeignMemslot<TPlatform>[] foreign = ForeignMemslots;
        ForeignMemslot<TPlatform>? f = null;
        for (int i = 0; i < foreign.Length; i++)
        {
            if (foreign[i].Slot.Contains(gfn))
                f = foreign[i];
        }
        if (f == null)
            return FaultStatus.NoRegion;
        if (write && !f.Slot.Writable)
            return FaultStatus.AccessDenied;
        // Keeps the source's page tables while we resolve through them.
        if (!f.Source.TryGetUser())
            return FaultStatus.Dead;
        FaultStatus status = HandleForeignViolationAsUser(f, gfn, write);
        f.Source.PutUser();
        return status;
    }

    private FaultStatus HandleForeignViolationAsUser(ForeignMemslot<TPlatform> f, Gfn gfn, bool write)
    {
        VirtAddr hva = f.Slot.HostAddressOf(gfn);
        while (true)
        {
            if (Volatile.Read(ref _dead) != 0 || Volatile.Read(ref f.Dead) != 0)
                return FaultStatus.Dead;
            long seq = f.Seq.ReadBegin();
            _platform.Checkpoint(MmCheckpoint.SequenceRead);
            FaultStatus status = f.Source.ResolveForSecondary(hva, write, out ResolvedPage page);
            if (status != FaultStatus.Ok)
                return status;
            bool flush = false;
            LockMmu();
            bool dead = _dead != 0 || f.Dead != 0;
            bool retry = dead || f.Seq.RetryUnderLock(seq, hva, hva + PageSizes.Size4K);
            if (!retry)
                status = InstallLeafLocked(gfn.Address, page.Frame, page.Writable && f.Slot.Writable, ref flush);
            UnlockMmu();
            if (flush)
                FlushTlbs();
            _platform.Checkpoint(MmCheckpoint.SecondaryInstallDone);
            f.Source.ReleaseResolved(page);
            if (!retry)
                return status;
            if (dead)
                return FaultStatus.Dead;
            Interlocked.Increment(ref f.RetryCount);
            _platform.SpinPause();
        }
    }

    /// <summary>The source's InvalidateRangeStart for a foreign slot: raise its count, zap the slot's leaves backed by the range, flush.</summary>
    internal void ForeignInvalidateStart(ForeignMemslot<TPlatform> f, in MmuNotifierRange range)
    {
        LockMmu();
        f.Seq.BeginUnderLock(range);
        UnlockMmu();
        Memslot s = f.Slot;
        if (!(range.Start < s.HostEnd && s.HostBase < range.End))
            return;
        Interlocked.Increment(ref f.InvalidationCount);
        VirtAddr from = range.Start > s.HostBase ? range.Start : s.HostBase;
        VirtAddr to = range.End < s.HostEnd ? range.End : s.HostEnd;
        ZapForeign(f, s.GuestAddressOf(from), s.GuestAddressOf(to));
    }

    /// <summary>Pairs with <see cref="ForeignInvalidateStart"/>.</summary>
    internal void ForeignInvalidateEnd(ForeignMemslot<TPlatform> f)
    {
        LockMmu();
        f.Seq.EndUnderLock();
        UnlockMmu();
    }

    /// <summary>The source releases the slot: refuse its faults (under the MMU lock), zap its leaves, flush.</summary>
    internal void ForeignRelease(ForeignMemslot<TPlatform> f)
    {
        LockMmu();
        f.Dead = 1;
        UnlockMmu();
        ZapForeign(f, f.Slot.BaseGfn.Address, f.Slot.GuestAddressOf(f.Slot.HostEnd));
    }

    /// <summary>
    /// Zaps the foreign slot's leaves in guest range <c>[start, end)</c> inside a walker section
    /// (nothing once this EPT's tables are gone), carrying dirty bits to the source's frames, and
    /// flushes (always: a concurrent zap of ours may not have flushed yet).
    /// </summary>
    private void ZapForeign(ForeignMemslot<TPlatform> f, GuestPhysAddr start, GuestPhysAddr end)
    {
        int section = _walkers.ReadLock();
        bool open = !_walkers.Closed;
        if (open)
        {
            foreach (EptSlot s in new EptWalker<TPlatform>(_platform, _root, start, end))
            {
                _platform.Checkpoint(MmCheckpoint.SecondaryZapLeaf);
                while (true)
                {
                    EptEntry old = EptOps.Read(s.Pointer);
                    // Foreign slots hold 4 KiB leaves only; own slots never reach into their range.
                    if (!old.IsPresent || !old.IsLeaf(s.Level))
                        break;
                    // Compare-exchange: the CPU may set A/D until the entry is gone. Full barrier:
                    // orders the clear before the INVEPT below.
                    if (EptOps.CompareExchange(s.Pointer, EptEntry.Empty, old).Value != old.Value)
                        continue;
                    if (old.IsDirty)
                        f.Source.MarkFrameDirty(old.LeafAddress(s.Level).Pfn);
                    break;
                }
            }
        }
        _walkers.ReadUnlock(section);
        if (open)
            FlushTlbs();
    }

    /// <summary>Aging of the foreign slot's leaves backed by source range <c>[start, end)</c> (lockless).</summary>
    internal bool ForeignAge(ForeignMemslot<TPlatform> f, VirtAddr start, VirtAddr end, bool clear, bool flush)
    {
        Memslot s = f.Slot;
        if (!(start < s.HostEnd && s.HostBase < end))
            return false;
        VirtAddr from = start > s.HostBase ? start : s.HostBase;
        VirtAddr to = end < s.HostEnd ? end : s.HostEnd;
        bool cleared = false;
        bool young = AgeGuestRange(s.GuestAddressOf(from), s.GuestAddressOf(to), clear, ref cleared);
        if (cleared && flush)
            FlushTlbs();
        return young;
    }

    /// <summary>Before this EPT's own release zap: zap the foreign slots so their dirty bits go to their sources.</summary>
    private void ZapForeignForRelease()
    {
        ForeignMemslot<TPlatform>[] foreign = ForeignMemslots;
        for (int i = 0; i < foreign.Length; i++)
            ZapForeign(foreign[i], foreign[i].Slot.BaseGfn.Address, foreign[i].Slot.GuestAddressOf(foreign[i].Slot.HostEnd));
    }
}
