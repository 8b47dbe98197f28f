using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Sched;

namespace Tandem.Kernel.Tests
{
    internal static unsafe class WatchdogTests
    {
        private static int s_spinState, s_release;

        /// <summary>Posted to the other CPU: spins with interrupts off until the test lets it go.</summary>
        private static void SpinWithInterruptsOff(ulong argument)
        {
            Native.Cli();
            Volatile.Write(ref s_spinState, 1);
            // No call in the loop (not even to pause): the NMI lands in this function's own code.
            while (Volatile.Read(ref s_release) == 0)
            {
            }
            Volatile.Write(ref s_spinState, 2);
        }

        /// <summary>
        /// Another CPU spins with interrupts off (a lockup, as a lost wake-up or a lock-order bug
        /// makes one): with the threshold lowered to half a second, the watchdog reports it within
        /// seconds, and the NMI it sends makes that CPU print where it is — inside the spinning
        /// function, which is checked through the symbol table.
        /// </summary>
        public static void ReportsACpuStuckWithInterruptsOff(TestContext t)
        {
            if (Cpu.Count < 2)
            {
                t.Skip("needs a second CPU");
                return;
            }
            ulong oldLockup = Watchdog.LockupTsc;
            int reported = Volatile.Read(ref Watchdog.LockupsReported);
            int dumps = Volatile.Read(ref Watchdog.DumpsPrinted);
            Volatile.Write(ref s_spinState, 0);
            Volatile.Write(ref s_release, 0);
            Watchdog.LockupTsc = Timer.TscPerSecond / 2;
            Scheduler.PreemptDisable();
            int target = Cpu.CurrentIndex == 0 ? 1 : 0;
            bool posted = Smp.Post(target, &SpinWithInterruptsOff, 0);
            Scheduler.PreemptEnable();
            if (!t.Check(posted, "could not send the spinning function to the other CPU"))
            {
                Watchdog.LockupTsc = oldLockup;
                return;
            }
            ulong deadline = Native.Rdtsc() + 15 * Timer.TscPerSecond;
            while (Volatile.Read(ref Watchdog.DumpsPrinted) == dumps && Native.Rdtsc() < deadline)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            Volatile.Write(ref s_release, 1);
            while (Volatile.Read(ref s_spinState) == 1)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            Watchdog.LockupTsc = oldLockup;
            if (!t.Check(Volatile.Read(ref Watchdog.LockupsReported) > reported, "the watchdog did not report the CPU spinning with interrupts off"))
                return;
            if (!t.Check(Volatile.Read(ref Watchdog.DumpsPrinted) > dumps, "the stuck CPU printed no NMI dump"))
                return;
            byte* name = Symbols.Lookup(Watchdog.LastDumpRip, out _);
            t.Check(name != null && Contains(name, "SpinWithInterruptsOff"), "the NMI dump's RIP is not in the spinning function", Watchdog.LastDumpRip);
        }

        /// <summary>
        /// A test that runs past the limit (lowered to one second here) is reported once while it
        /// runs, with every CPU's scheduler line and an NMI dump from each other CPU.
        /// </summary>
        public static void ReportsATestThatRunsTooLong(TestContext t)
        {
            ulong oldLimit = Watchdog.TestTsc;
            int reported = Volatile.Read(ref Watchdog.TestsReported);
            int dumps = Volatile.Read(ref Watchdog.DumpsPrinted);
            Watchdog.TestTsc = Timer.TscPerSecond;
            ulong end = Native.Rdtsc() + 3 * Timer.TscPerSecond;
            while (Native.Rdtsc() < end)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 10);
            Watchdog.TestTsc = oldLimit;
            if (!t.Check(Volatile.Read(ref Watchdog.TestsReported) == reported + 1, "the watchdog did not report the long test exactly once", (ulong)(Volatile.Read(ref Watchdog.TestsReported) - reported)))
                return;
            int others = 0;
            for (int i = 0; i < Cpu.Count; i++)
                others += Volatile.Read(ref Cpu.Get(i)->Online) != 0 ? 1 : 0;
            // Every online CPU but the one that noticed prints a dump.
            t.Check(Volatile.Read(ref Watchdog.DumpsPrinted) - dumps == others - 1, "not every other CPU printed an NMI dump", (ulong)(Volatile.Read(ref Watchdog.DumpsPrinted) - dumps));
        }

        private static Sync.SpinLock s_heldLock;
        private static int s_taken;

        /// <summary>Posted to the other CPU: takes the lock the test holds (spinning, interrupts off), then lets it go.</summary>
        private static void TakeTheHeldLock(ulong argument)
        {
            ulong flags = s_heldLock.Acquire();
            s_heldLock.Release(flags);
            Volatile.Write(ref s_taken, 1);
        }

        /// <summary>
        /// Both CPUs with interrupts off, one holding a kernel spin lock and the other spinning on
        /// it: no timer tick anywhere, so only the spinner itself can tell. With the spin limit
        /// lowered to half a second, the spinning CPU reports its spin (with a backtrace) while
        /// it still spins; then the holder lets go.
        /// </summary>
        public static void ReportsALongSpin(TestContext t)
        {
            if (Cpu.Count < 2)
            {
                t.Skip("needs a second CPU");
                return;
            }
            ulong oldSpin = Watchdog.SpinTsc;
            int spins = Volatile.Read(ref Watchdog.SpinsReported);
            Volatile.Write(ref s_taken, 0);
            Watchdog.SpinTsc = Timer.TscPerSecond / 2;
            ulong flags = s_heldLock.Acquire();
            int target = Cpu.CurrentIndex == 0 ? 1 : 0;
            bool posted = Smp.Post(target, &TakeTheHeldLock, 0);
            ulong deadline = Native.Rdtsc() + 15 * Timer.TscPerSecond;
            while (posted && Volatile.Read(ref Watchdog.SpinsReported) == spins && Native.Rdtsc() < deadline)
                Native.Pause();
            bool reported = Volatile.Read(ref Watchdog.SpinsReported) != spins;
            bool tookItEarly = Volatile.Read(ref s_taken) != 0;
            s_heldLock.Release(flags);
            while (posted && Volatile.Read(ref s_taken) == 0)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            Watchdog.SpinTsc = oldSpin;
            if (!t.Check(posted, "could not send the spinning function to the other CPU"))
                return;
            if (!t.Check(!tookItEarly, "the other CPU took a lock that was held"))
                return;
            t.Check(reported, "the spinning CPU did not report its long spin");
        }

        private static bool Contains(byte* text, string part)
        {
            for (int i = 0; i < 400 && text[i] != 0; i++)
            {
                int k = 0;
                while (k < part.Length && text[i + k] == (byte)part[k])
                    k++;
                if (k == part.Length)
                    return true;
            }
            return false;
        }
    }
}
