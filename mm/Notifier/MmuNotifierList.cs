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
/// primary entry (that full barrier pairs with the barrier in <see cref="Register"/>; see
/// docs/locking.md, "registration vs teardown").</item>
/// <item>No primary lock may be held across any call into this type.</item>
/// </list>
/// Every call into the notifiers runs between an increment and a decrement of <c>_inFlight</c>;
/// <see cref="Register"/> and <see cref="Unregister"/> publish a new snapshot and then wait for
/// <c>_inFlight</c> to drain, so a notifier either sees a whole invalidation (start and end) or is
/// registered only after it finished; and after Unregister returns, it is never called again.
/// </remarks>
public sealed class MmuNotifierList<TPlatform> where TPlatform : struct, IMmPlatform
{
    private readonly TPlatform _platform;
    private readonly IAddressSpace _owner;
    private MmuNotifierSet? _set;
    private int _inFlight;
    private SpinLock _registrationLock;

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
    /// </summary>
    public void Register(IMmuNotifier notifier, MmuNotifierFlags flags)
    {
        _registrationLock.Enter(_platform);
        MmuNotifierSet? old = _set;
        int n = old == null ? 0 : old.Items.Length;
        MmuNotifierRegistration[] items = new MmuNotifierRegistration[n + 1];
        for (int i = 0; i < n; i++)
            items[i] = old!.Items[i];
        items[n] = new MmuNotifierRegistration(notifier, flags);
        // Publish; pairs with the Volatile.Read of _set in Enter (after its Interlocked.Increment).
        Volatile.Write(ref _set, new MmuNotifierSet(items));
        _registrationLock.Exit();
        if (old != null)
            _platform.DeferFree(old);
        Drain();
    }

    /// <summary>
    /// Removes <paramref name="notifier"/> (compare mmu_notifier_unregister): first calls its
    /// <see cref="IMmuNotifier.Release"/> so it drops every mapping while it still receives
    /// invalidations, then unpublishes it and waits for in-flight callbacks. After return no
    /// callback of it is running or will run. Returns false if it was not registered.
    /// </summary>
    /// <remarks>
    /// Rules for using this: the caller must have stopped populating secondary entries: a mapping
    /// installed after Release would no longer be invalidated.
    /// </remarks>
    public bool Unregister(IMmuNotifier notifier)
    {
        MmuNotifierSet? current = Volatile.Read(ref _set);
        bool registered = false;
        if (current != null)
        {
            for (int i = 0; i < current.Items.Length; i++)
            {
                if (current.Items[i].Notifier == notifier)
                    registered = true;
            }
        }
        if (!registered)
            return false;
        notifier.Release(_owner);
        _registrationLock.Enter(_platform);
        MmuNotifierSet? old = _set;
        int index = -1;
        if (old != null)
        {
            for (int i = 0; i < old.Items.Length; i++)
            {
                if (old.Items[i].Notifier == notifier)
                    index = i;
            }
        }
        if (index < 0)
        {
            _registrationLock.Exit();
            return false;
        }
        MmuNotifierSet? next = null;
        if (old!.Items.Length > 1)
        {
            MmuNotifierRegistration[] items = new MmuNotifierRegistration[old.Items.Length - 1];
            int j = 0;
            for (int i = 0; i < old.Items.Length; i++)
            {
                if (i != index)
                    items[j++] = old.Items[i];
            }
            next = new MmuNotifierSet(items);
        }
        // Publish; pairs with the Volatile.Read of _set in Enter.
        Volatile.Write(ref _set, next);
        _registrationLock.Exit();
        _platform.DeferFree(old);
        Drain();
        return true;
    }

    /// <summary>
    /// Detaches every notifier and calls <see cref="IMmuNotifier.Release"/> on each, once.
    /// Used by the address space when it dies.
    /// </summary>
    public void ReleaseAll(IAddressSpace space)
    {
        _registrationLock.Enter(_platform);
        MmuNotifierSet? old = _set;
        // Publish; pairs with the Volatile.Read of _set in Enter.
        Volatile.Write(ref _set, null);
        _registrationLock.Exit();
        if (old == null)
            return;
        Drain();
        for (int i = 0; i < old.Items.Length; i++)
            old.Items[i].Notifier.Release(space);
        _platform.DeferFree(old);
    }

    private void Drain()
    {
        // Full barrier between the publication of the new snapshot above and the read of
        // _inFlight below; pairs with the Interlocked.Increment in Enter: either Enter's read of
        // _set sees the new snapshot, or we see its increment and wait for it.
        Interlocked.MemoryBarrier();
        while (Volatile.Read(ref _inFlight) != 0)
            _platform.SpinPause();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private MmuNotifierSet? Enter()
    {
        // Full barrier; pairs with Interlocked.MemoryBarrier in Drain.
        Interlocked.Increment(ref _inFlight);
        // Pairs with the Volatile.Write of _set in Register/Unregister/ReleaseAll.
        MmuNotifierSet? set = Volatile.Read(ref _set);
        if (set == null)
            Interlocked.Decrement(ref _inFlight);
        return set;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit()
    {
        // Release of our calls; pairs with the Volatile.Read of _inFlight in Drain.
        Interlocked.Decrement(ref _inFlight);
    }

    /// <summary>
    /// <c>InvalidateRangeStart</c> then <c>InvalidateRangeEnd</c> on every notifier of one snapshot
    /// (Linux's invalidate-page pattern: called after the primary entries were cleared and flushed).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Invalidate(in MmuNotifierRange range)
    {
        MmuNotifierSet? set = Enter();
        if (set == null)
            return;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeStart(range);
        _platform.Checkpoint(MmCheckpoint.NotifierStartDone);
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeEnd(range);
        Exit();
        _platform.Checkpoint(MmCheckpoint.NotifierEndDone);
    }

    /// <summary>
    /// Starts a bracketed invalidation (start now, end later with <see cref="InvalidateEnd"/>).
    /// Returns the snapshot to pass to the end call; null if there was no notifier.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public MmuNotifierSet? InvalidateStart(in MmuNotifierRange range)
    {
        MmuNotifierSet? set = Enter();
        if (set == null)
            return null;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeStart(range);
        _platform.Checkpoint(MmCheckpoint.NotifierStartDone);
        return set;
    }

    /// <summary>Ends an invalidation started by <see cref="InvalidateStart"/> on the same snapshot.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void InvalidateEnd(in MmuNotifierRange range, MmuNotifierSet? set)
    {
        if (set == null)
            return;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            items[i].Notifier.InvalidateRangeEnd(range);
        Exit();
        _platform.Checkpoint(MmCheckpoint.NotifierEndDone);
    }

    /// <summary>Exact aging: OR of <see cref="IMmuNotifier.ClearFlushYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter();
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.ClearFlushYoung(space, start, end);
        Exit();
        return young;
    }

    /// <summary>OR of <see cref="IMmuNotifier.ClearYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter();
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.ClearYoung(space, start, end);
        Exit();
        return young;
    }

    /// <summary>OR of <see cref="IMmuNotifier.TestYoung"/> over every notifier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        MmuNotifierSet? set = Enter();
        if (set == null)
            return false;
        bool young = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
            young |= items[i].Notifier.TestYoung(space, start, end);
        Exit();
        return young;
    }

    /// <summary>
    /// Fast-only aging: asks only the notifiers that declared <see cref="MmuNotifierFlags.LocklessAging"/>.
    /// Never waits on a lock. <see cref="FastAgeResult.Complete"/> is false if some notifier was skipped.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public FastAgeResult TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        MmuNotifierSet? set = Enter();
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
        Exit();
        return new FastAgeResult(young, complete);
    }
}
