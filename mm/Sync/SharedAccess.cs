#if TANDEM_HOST_TESTS
using System;

namespace Tandem.Mm;

/// <summary>What a shared-memory step reported through <see cref="SharedAccess.Hook"/> is about to do.</summary>
public enum SharedAccessKind
{
    /// <summary>A page-table entry read (<see cref="PteOps.Read"/>).</summary>
    PteRead,
    /// <summary>A page-table entry store (<see cref="PteOps.Write"/>).</summary>
    PteWrite,
    /// <summary>A page-table entry exchange.</summary>
    PteExchange,
    /// <summary>A page-table entry compare-exchange.</summary>
    PteCompareExchange,
    /// <summary>An atomic AND on a page-table entry (clear bits).</summary>
    PteAnd,
    /// <summary>An atomic OR on a page-table entry (set bits).</summary>
    PteOr,
    /// <summary>An EPT entry read (<c>EptOps.Read</c>).</summary>
    EptRead,
    /// <summary>An EPT entry exchange.</summary>
    EptExchange,
    /// <summary>An EPT entry compare-exchange.</summary>
    EptCompareExchange,
    /// <summary>About to try to take a spin lock (the first CAS of <see cref="SpinLock.Enter"/> or <see cref="SpinLock.TryEnter"/>).</summary>
    LockAcquire,
    /// <summary>One iteration of a contended spin on a held lock (the caller cannot progress until someone releases it).</summary>
    LockSpin,
    /// <summary>A <see cref="SpinLock.TryEnter"/> found the lock held.</summary>
    LockTryFailed,
    /// <summary>About to release a spin lock.</summary>
    LockRelease,
    /// <summary>A spin-wait iteration outside a lock (platform SpinPause, WaitForChange): the caller waits for another context.</summary>
    Spin,
    /// <summary>A hardware page walk (the host tests' model of the CPU) is about to touch an entry.</summary>
    HardwareWalk,
}

/// <summary>
/// Host tests only (compiled when <c>TANDEM_HOST_TESTS</c> is defined, which only the host test
/// libraries do; the kernel and its corelib never see this type). Every <see cref="PteOps"/> and
/// <c>EptOps</c> access and every <see cref="SpinLock"/> operation calls <see cref="Hook"/> first,
/// so the host tests can switch threads at every shared-memory step, check that nobody reads a
/// freed table, or change an entry between a read and a compare-exchange as the CPU would.
/// </summary>
public static class SharedAccess
{
    /// <summary>
    /// Called before each shared-memory step with its kind and the address it touches (the entry's
    /// address; for lock operations the lock's address, which names the lock; 0 for a plain spin).
    /// Null means no hook (the cost is one load and a branch).
    /// </summary>
    public static Action<SharedAccessKind, ulong>? Hook;
}
#endif
