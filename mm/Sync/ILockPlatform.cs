namespace Tandem.Mm;

/// <summary>
/// What a <see cref="SpinLock"/> needs from the machine: the pause hint for its spin and the
/// scheduler's preemption switch. A holder of an mm lock is never preempted: <see cref="SpinLock.Enter"/>
/// disables preemption before it spins and <see cref="SpinLock.Exit"/> enables it after the release
/// store, as Linux's spin_lock does. Otherwise a holder preempted on a CPU where another thread then
/// spins for the same lock with preemption (or interrupts) off never gets its CPU back, and the
/// spinner spins for ever (docs/locking.md, "Preemption").
/// </summary>
public interface ILockPlatform : ISpinPause
{
    /// <summary>
    /// Raises the current thread's preemption count (nests). The kernel counts on its thread; the
    /// host does nothing (its threads are the OS's, and spinning there only costs time).
    /// </summary>
    void PreemptDisable();

    /// <summary>Undoes one <see cref="PreemptDisable"/>.</summary>
    void PreemptEnable();
}
