using System.Threading;
using Tandem.Arch.X86;

namespace Tandem.Kernel.Sync
{
    /// <summary>
    /// A test-and-test-and-set spin lock that also disables interrupts while held, so an interrupt
    /// handler on the same CPU can never spin on a lock its own CPU holds.
    /// </summary>
    /// <remarks>
    /// Rules for using this: <c>ulong flags = lock.Acquire(); ... lock.Release(flags);</c> on the same
    /// CPU; never sleep (halt) while holding it; the lock order is in docs/locking.md.
    /// </remarks>
    public struct SpinLock
    {
        private int _held;

        public ulong Acquire()
        {
            ulong flags = Native.ReadRflags();
            Native.Cli();
            ulong spinStart = 0;
            while (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
            {
                // Pairs with the release write in Release: spin on plain reads until it is free.
                while (Volatile.Read(ref _held) != 0)
                {
                    Watchdog.SpinStep(ref spinStart);
                    Native.Pause();
                }
            }
            return flags;
        }

        /// <summary>
        /// As <see cref="Acquire"/>, giving up after <paramref name="tscCycles"/>: false then, with
        /// interrupts off all the same (<paramref name="flags"/> restores them). For a diagnostic
        /// path (an NMI) that must not hang on a lock the code it interrupted holds.
        /// </summary>
        public bool TryAcquireWithin(ulong tscCycles, out ulong flags)
        {
            flags = Native.ReadRflags();
            Native.Cli();
            ulong deadline = Native.Rdtsc() + tscCycles;
            while (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
            {
                while (Volatile.Read(ref _held) != 0)
                {
                    if (Native.Rdtsc() >= deadline)
                        return false;
                    Native.Pause();
                }
            }
            return true;
        }

        public void Release(ulong flags)
        {
            // Release semantics: everything written under the lock is visible before _held = 0.
            Volatile.Write(ref _held, 0);
            if ((flags & 0x200) != 0)
                Native.Sti();
        }

        public bool IsHeld => Volatile.Read(ref _held) != 0;
    }
}
