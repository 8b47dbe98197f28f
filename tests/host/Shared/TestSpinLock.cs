using System;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// A spin lock for test models (recording secondary MMU, TLB model) that reports its steps like
/// mm's <see cref="Tandem.Mm.SpinLock"/> does: the interleaving explorer sees a contended spin and
/// runs the holder, so a model may hold it across switch points (a Monitor would deadlock the explorer).
/// </summary>
public sealed class TestSpinLock
{
    private static long s_ids;
    private int _state;
    // Names this lock in its steps (the explorer wakes the waiters of the lock that was released);
    // the top bit keeps it apart from real addresses.
    private readonly ulong _id = 0x8000_0000_0000_0000UL | (ulong)Interlocked.Increment(ref s_ids);

    public void Enter()
    {
        AccessMonitor.Step(SharedAccessKind.LockAcquire, _id);
        // Acquire (full barrier); pairs with the Volatile.Write in Exit.
        while (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            while (Volatile.Read(ref _state) != 0)
            {
                AccessMonitor.Step(SharedAccessKind.LockSpin, _id);
                Thread.Yield();
            }
        }
    }

    public void Exit()
    {
        AccessMonitor.Step(SharedAccessKind.LockRelease, _id);
        // Release; pairs with the CAS in Enter.
        Volatile.Write(ref _state, 0);
    }

    /// <summary>Enter, and Exit when the result is disposed (<c>using (l.Hold()) { ... }</c>).</summary>
    public Holder Hold()
    {
        Enter();
        return new Holder(this);
    }

    public readonly struct Holder : IDisposable
    {
        private readonly TestSpinLock _lock;
        public Holder(TestSpinLock l) { _lock = l; }
        public void Dispose() => _lock.Exit();
    }
}
