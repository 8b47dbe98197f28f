using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// A test-and-test-and-set spin lock for the portable core (no <c>lock</c>, no Monitor).
/// Keep it in a field of a class and call it on the field (it is a mutable struct).
/// </summary>
/// <remarks>
/// Rules for using this: hold it for short, bounded work; never block or call a notifier while
/// holding it unless docs/locking.md lists that nesting; never take it recursively.
/// </remarks>
public struct SpinLock
{
    private int _state;

    /// <summary>Acquires the lock, spinning with the platform's pause hint.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
        // Not preemptible from here to Exit: a spinner with preemption off may wait for us.
        platform.PreemptDisable();
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.LockAcquire, HookAddress);
#endif
        // Acquire: the CAS is a full barrier; pairs with the Volatile.Write in Exit, so the
        // previous holder's writes are visible to us.
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            EnterContended(platform);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
        do
        {
            // Read-only spin so the cache line stays shared until the holder's Exit.
            while (Volatile.Read(ref _state) != 0)
            {
#if TANDEM_HOST_TESTS
                SharedAccess.Hook?.Invoke(SharedAccessKind.LockSpin, HookAddress);
#endif
                platform.SpinPause();
            }
        }
        while (Interlocked.CompareExchange(ref _state, 1, 0) != 0);
    }

    /// <summary>
    /// <see cref="Enter"/> without the host tests' shared-access hook, for a leaf lock whose
    /// critical sections make no observed step (no page-table or EPT access, no other lock): the
    /// interleaving explorer then sees each section as part of the step before it, so a leaf lock
    /// taken on every install and unmap (the LRU lock) does not multiply the schedules of every
    /// exploration that installs or unmaps. A thread can never be descheduled by the explorer
    /// while it holds such a lock (it switches only at hooks), so nobody spins on it there. Pair
    /// with <see cref="ExitQuiet"/>. The kernel build is the same as <see cref="Enter"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnterQuiet<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
        platform.PreemptDisable();
        // Same pairing as Enter.
        while (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            while (Volatile.Read(ref _state) != 0)
                platform.SpinPause();
        }
    }

    /// <summary><see cref="Exit"/> without the hook; pairs with <see cref="EnterQuiet"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ExitQuiet<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
        // Release: pairs with the CAS in EnterQuiet.
        Volatile.Write(ref _state, 0);
        platform.PreemptEnable();
    }

    /// <summary>Acquires the lock if it is free; never spins. Preemption stays off only when it returns true.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryEnter<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
        platform.PreemptDisable();
        if (TryTake())
            return true;
        platform.PreemptEnable();
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryTake()
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.LockAcquire, HookAddress);
        // Same pairing as Enter.
        bool taken = Interlocked.CompareExchange(ref _state, 1, 0) == 0;
        if (!taken)
            SharedAccess.Hook?.Invoke(SharedAccessKind.LockTryFailed, HookAddress);
        return taken;
#else
        // Same pairing as Enter.
        return Interlocked.CompareExchange(ref _state, 1, 0) == 0;
#endif
    }

    /// <summary>Releases the lock, then allows preemption again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit<TPlatform>(in TPlatform platform) where TPlatform : struct, ILockPlatform
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.LockRelease, HookAddress);
#endif
        // Release: pairs with the CAS in Enter/TryEnter of the next holder.
        Volatile.Write(ref _state, 0);
        platform.PreemptEnable();
    }

#if TANDEM_HOST_TESTS
    /// <summary>Host tests: the lock's current address, which names it in hook calls (the explorer
    /// wakes the waiters of the lock that was released).</summary>
    private ulong HookAddress
    {
        get
        {
            unsafe
            {
                return (ulong)Unsafe.AsPointer(ref _state);
            }
        }
    }

#endif
    /// <summary>True while some context holds the lock (for assertions only).</summary>
    public bool IsHeld
    {
        get { return Volatile.Read(ref _state) != 0; }
    }
}
