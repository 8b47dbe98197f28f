using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The notifiers registered on one address space (compare Linux's
/// <c>struct mmu_notifier_subscriptions</c>). Each address space owns exactly one, so finding the
/// notifiers of an address space is O(1); there is no global list.
/// </summary>
/// <remarks>
/// Rules for using this (callers in mm/):
/// <list type="bullet">
/// <item>Call sites test <see cref="HasNotifiers"/> inline and only then call the out-of-line
/// method. On teardown paths the test must come after the Interlocked operation that cleared the
/// primary entry (that full barrier pairs with the grace period in <see cref="Register"/>; see
/// docs/locking.md, "registration vs teardown").</item>
/// <item>No primary lock may be held across any call into this type.</item>
/// </list>
/// Every call into the notifiers runs inside a read-side section of <c>_srcu</c> (an SRCU-style
/// <see cref="GracePeriod"/>). <see cref="Register"/> publishes a new snapshot and waits for the
/// sections that began before (so a new notifier either sees a whole invalidation or none of it);
/// <see cref="Unregister"/> and <see cref="ReleaseAll"/> call <see cref="IMmuNotifier.Release"/>
/// while the notifier is still published (so no invalidation can miss a mapping it still holds),
/// then unpublish and wait: after they return, no callback of it is running or will run. Neither
/// waits for sections that begin after it, so a busy address space cannot starve them.
/// </remarks>
public sealed partial class MmuNotifierList<TPlatform> where TPlatform : struct, IMmPlatform
{
    private readonly TPlatform _platform;
    private readonly IAddressSpace _owner;
    private readonly GracePeriod _srcu = new GracePeriod();
    private MmuNotifierSet? _set;
    private SpinLock _registrationLock;
    private bool _released;

    /// <summary>Creates the empty list of <paramref name="owner"/>.</summary>
    public MmuNotifierList(TPlatform platform, IAddressSpace owner)
    {
        _platform = platform;
        _owner = owner;
    }

    /// <summary>Cheap inline test in front of every notifier call site.</summary>
    public bool HasNotifiers
    {
        // Plain acquire read; the ordering against the primary-entry clear comes from the
        // Interlocked operation that cleared it (see the remarks).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return Volatile.Read(ref _set) != null; }
    }

    /// <summary>The current snapshot (may be null). For inspection and tests.</summary>
    public MmuNotifierSet? Snapshot
    {
        get { return Volatile.Read(ref _set); }
    }

    /// <summary>
    /// Registers <paramref name="notifier"/>. Returns after every invalidation that might have
    /// missed it has finished, so the caller may start populating secondary entries at once.
    /// False (nothing registered) when the address space is dying: its notifiers were released.
    /// </summary>
    public bool Register(IMmuNotifier notifier, MmuNotifierFlags flags)
    {
        _registrationLock.Enter(_platform);
        if (_released)
        {
            _registrationLock.Exit(_platform);
            return false;
        }
        MmuNotifierSet? old = _set;
        int n = old == null ? 0 : old.Items.Length;
        MmuNotifierRegistration[] items = new MmuNotifierRegistration[n + 1];
        for (int i = 0; i < n; i++)
            items[i] = old!.Items[i];
        items[n] = new MmuNotifierRegistration(notifier, flags);
        // Publish; pairs with the Volatile.Read of _set in Enter (after its ReadLock).
        Volatile.Write(ref _set, new MmuNotifierSet(items));
        _registrationLock.Exit(_platform);
        // An invalidation that read the old snapshot (before we were published) may have cleared
        // primary entries that we are about to resolve; wait for it to end. Its clear is then
        // visible to our resolves, and our sequence snapshots are taken after this.
        _srcu.Synchronize(_platform);
        if (old != null)
            _platform.DeferFree(old);
        return true;
    }

    /// <summary>
    /// Removes <paramref name="notifier"/> (compare mmu_notifier_unregister): calls its
    /// <see cref="IMmuNotifier.Release"/> while it is still published (invalidations keep reaching
    /// it until its mappings are gone), then unpublishes it and waits for the callbacks that began
    /// before. After return no callback of it is running or will run. Returns false if it was not
    /// registered or someone else is already releasing it (Release is called exactly once).
    /// </summary>
    /// <remarks>
    /// Rules for using this: the caller must have stopped populating secondary entries: a mapping
    /// installed after Release would no longer be invalidated. Callbacks may still arrive between
    /// Release and the return of Unregister; a released notifier ignores them.
    /// </remarks>
    public bool Unregister(IMmuNotifier notifier)
    {
        _registrationLock.Enter(_platform);
        MmuNotifierSet? current = _set;
        int index = current == null ? -1 : current.IndexOf(notifier);
        bool claimed = index >= 0 && current!.Items[index].Claim();
        // Release runs inside a read-side section, entered before the registration lock is
        // dropped: a concurrent ReleaseAll takes the lock after us, so its Synchronize sees our
        // section and waits for this Release before the address space tears its mappings down.
        int section = claimed ? _srcu.ReadLock() : 0;
        _registrationLock.Exit(_platform);
        if (!claimed)
            return false;
        notifier.Release(_owner);
        _srcu.ReadUnlock(section);
        _registrationLock.Enter(_platform);
        MmuNotifierSet? old = _set;
        int at = old == null ? -1 : old.IndexOf(notifier);
        MmuNotifierSet? next = old;
        if (at >= 0)
        {
            next = null;
            if (old!.Items.Length > 1)
            {
                MmuNotifierRegistration[] items = new MmuNotifierRegistration[old.Items.Length - 1];
                int j = 0;
                for (int i = 0; i < old.Items.Length; i++)
                {
                    if (i != at)
                        items[j++] = old.Items[i];
                }
                next = new MmuNotifierSet(items);
            }
            // Publish; pairs with the Volatile.Read of _set in Enter.
            Volatile.Write(ref _set, next);
        }
        _registrationLock.Exit(_platform);
        // Wait for callbacks that began before the unpublish (they may hold the old snapshot).
        _srcu.Synchronize(_platform);
        if (at >= 0)
            _platform.DeferFree(old!);
        return true;
    }

    /// <summary>
    /// The address space is dying: calls <see cref="IMmuNotifier.Release"/> once on every notifier
    /// that is not already being released by an <see cref="Unregister"/>, while they are still
    /// published; then unpublishes them all, refuses later registrations and waits for every
    /// callback (and every concurrent Release) that began before. After return no notifier of this
    /// address space is running or will run, and every one of them has dropped its mappings.
    /// </summary>
    public void ReleaseAll(IAddressSpace space)
    {
        _registrationLock.Enter(_platform);
        _released = true;
        MmuNotifierSet? current = _set;
        _registrationLock.Exit(_platform);
        if (current != null)
        {
            int section = _srcu.ReadLock();
            for (int i = 0; i < current.Items.Length; i++)
            {
                if (current.Items[i].Claim())
                    current.Items[i].Notifier.Release(space);
            }
            _srcu.ReadUnlock(section);
        }
        _registrationLock.Enter(_platform);
        MmuNotifierSet? old = _set;
        // Publish; pairs with the Volatile.Read of _set in Enter.
        Volatile.Write(ref _set, null);
        _registrationLock.Exit(_platform);
        // Waits for callbacks on the old snapshot and for a concurrent Unregister's Release.
        _srcu.Synchronize(_platform);
        if (old != null)
            _platform.DeferFree(old);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private MmuNotifierSet? Enter(out int section)
    {
        // Full barrier (the ReadLock increment); pairs with Synchronize in Register/Unregister/ReleaseAll.
        section = _srcu.ReadLock();
        // Pairs with the Volatile.Write of _set in Register/Unregister/ReleaseAll.
        MmuNotifierSet? set = Volatile.Read(ref _set);
        if (set == null)
            _srcu.ReadUnlock(section);
        return set;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit(int section)
    {
        // Ends the section; pairs with the counter read in GracePeriod.Synchronize.
        _srcu.ReadUnlock(section);
    }

    /// <summary>
    /// <c>InvalidateRangeStart</c> then <c>InvalidateRangeEnd</c> on every notifier of one snapshot
    /// (Linux's invalidate-page pattern: called after the primary entries were cleared and flushed).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Invalidate(in MmuNotifierRange range)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeStart(range);
        _platform.Checkpoint(MmCheckpoint.NotifierStartDone);
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeEnd(range);
        Exit(section);
        _platform.Checkpoint(MmCheckpoint.NotifierEndDone);
    }

    /// <summary>Exact aging: OR of <see cref="IMmuNotifier.ClearFlushYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.ClearFlushYoung(space, start, end);
        Exit(section);
        return young;
    }

    /// <summary>OR of <see cref="IMmuNotifier.ClearYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.ClearYoung(space, start, end);
        Exit(section);
        return young;
    }

    /// <summary>OR of <see cref="IMmuNotifier.TestYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.TestYoung(space, start, end);
        Exit(section);
        return young;
    }

    /// <summary>
    /// Fast-only aging: asks only the notifiers that declared <see cref="MmuNotifierFlags.LocklessAging"/>.
    /// Never waits on a lock. <see cref="FastAgeResult.Complete"/> is false if some notifier was skipped.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public FastAgeResult TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return new FastAgeResult(false, true);
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
        {
            if ((items[i].Flags & MmuNotifierFlags.LocklessAging) != 0)
                young |= items[i].Notifier.TestClearYoungFastOnly(space, start, end, clear);
        }
        bool complete = set.AllLockless;
        Exit(section);
        return new FastAgeResult(young, complete);
    }
}
