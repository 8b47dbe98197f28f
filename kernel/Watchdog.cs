using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;

namespace Tandem.Kernel
{
    /// <summary>
    /// The lockup detector. Each CPU's timer tick checks, at most once a second for the whole
    /// machine, that every other online CPU's tick count has moved: a CPU whose count stood still
    /// for <see cref="LockupTsc"/> runs with interrupts off (a spin on a lock, a lost wake-up in an
    /// interrupts-off wait). It gets an NMI, and its NMI handler prints where it is, with a
    /// backtrace; the checking CPU prints every CPU's scheduler state. A test that has run longer
    /// than <see cref="TestTsc"/> gets the same report for every CPU, once: a hung test leaves a
    /// diagnosis in the serial log before the driver's timeout kills the run. Nothing is stopped.
    /// </summary>
    public static unsafe class Watchdog
    {
        /// <summary>A CPU whose ticks stood still this long (TSC cycles) is reported. 20 s by default; 0 turns the check off.</summary>
        public static ulong LockupTsc;

        /// <summary>A test that runs longer than this (TSC cycles) is reported once. 300 s by default; 0 turns it off.</summary>
        public static ulong TestTsc;

        /// <summary>A spin-wait that lasts this long (TSC cycles) is reported from the spinning CPU. 10 s by default; 0 turns it off.</summary>
        public static ulong SpinTsc;

        /// <summary>Lockups reported, long tests reported, NMI dumps printed, long spins reported (for tests).</summary>
        public static int LockupsReported, TestsReported, DumpsPrinted, SpinsReported;

        /// <summary>The RIP the last NMI dump interrupted (0 when it came through a VM exit).</summary>
        public static ulong LastDumpRip;

        private static ulong* s_seenTicks;
        private static ulong* s_seenTsc;
        private static int* s_reported;
        private static ulong s_dumpRequests;
        private static int s_checking;
        private static ulong s_nextCheckTsc;
        private static string? s_testName;
        private static ulong s_testStartTsc;
        private static int s_testReported;

        /// <summary>After the timer is calibrated: the tables and the default thresholds.</summary>
        public static void Initialize()
        {
            s_seenTicks = (ulong*)KernelHeap.Alloc((ulong)(Cpu.MaxCpus * sizeof(ulong)));
            s_seenTsc = (ulong*)KernelHeap.Alloc((ulong)(Cpu.MaxCpus * sizeof(ulong)));
            s_reported = (int*)KernelHeap.Alloc((ulong)(Cpu.MaxCpus * sizeof(int)));
            if (s_seenTicks == null || s_seenTsc == null || s_reported == null)
            {
                Log.Line("watchdog: no memory for its tables; lockups are not detected");
                s_seenTicks = null;
                return;
            }
            ulong now = Native.Rdtsc();
            for (int i = 0; i < Cpu.MaxCpus; i++)
            {
                s_seenTicks[i] = 0;
                s_seenTsc[i] = now;
                s_reported[i] = 0;
            }
            LockupTsc = 20 * Timer.TscPerSecond;
            SpinTsc = 10 * Timer.TscPerSecond;
            TestTsc = 300 * Timer.TscPerSecond;
        }

        /// <summary>
        /// One step of a spin-wait (every kernel spin loop calls it: the kernel's spin locks, the
        /// mm and EPT locks through the platforms' SpinPause, Smp's waits). Steps less than 10 µs
        /// apart are one spin; a spin that lasts <see cref="SpinTsc"/> prints, once, where this CPU
        /// spins, with a backtrace. It sees what the lockup check cannot: every CPU spinning with
        /// interrupts off, each waiting for another.
        /// </summary>
        public static void SpinStep()
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu == null || s_seenTicks == null)
                return;
            ulong now = Native.Rdtsc();
            if (now - cpu->SpinLastTsc > Timer.TscPerSecond / 100_000)
            {
                cpu->SpinStartTsc = now;
                cpu->SpinReported = 0;
            }
            cpu->SpinLastTsc = now;
            ulong limit = SpinTsc;
            if (limit == 0 || cpu->SpinReported != 0 || now - cpu->SpinStartTsc < limit)
                return;
            cpu->SpinReported = 1;
            ReportSpin(cpu->Index, now - cpu->SpinStartTsc);
        }

        /// <summary>
        /// As <see cref="SpinStep()"/>, for a loop that knows where its spin begins: the caller
        /// keeps <paramref name="start"/> (0 before the first step) on its stack. Exact, where the
        /// 10 µs rule is not: an emulator that runs its CPUs in turns leaves longer gaps.
        /// </summary>
        public static void SpinStep(ref ulong start)
        {
            if (s_seenTicks == null || start == ulong.MaxValue)
                return;
            ulong now = Native.Rdtsc();
            if (start == 0)
            {
                start = now;
                return;
            }
            ulong limit = SpinTsc;
            if (limit == 0 || now - start < limit)
                return;
            ulong spun = now - start;
            start = ulong.MaxValue;     // once per spin
            ReportSpin(Cpu.CurrentIndex, spun);
        }

        private static void ReportSpin(int index, ulong spun)
        {
            Interlocked.Increment(ref SpinsReported);
            bool interrupts = (Native.ReadRflags() & 0x200) != 0;
            // A chain, not Log.Info: the spinning code may hold the log lock (BeginWithin waits a
            // while, then prints anyway), and the backtrace goes out under the same lock.
            ulong f = Log.BeginWithin(Timer.TscPerSecond, out bool locked);
            Log.Write("watchdog: cpu ");
            Log.Write((ulong)index);
            Log.Write(" has spun for ");
            Log.Write(spun / (Timer.TscPerSecond / 1000));
            Log.Write(interrupts ? " ms (interrupts on) in:\n" : " ms (interrupts off) in:\n");
            Backtrace.PrintHere();
            if (locked)
                Log.End(f);
        }

        /// <summary>The test runner: <paramref name="name"/> starts now (null: no test runs).</summary>
        public static void TestStarted(string? name)
        {
            s_testStartTsc = Native.Rdtsc();
            Volatile.Write(ref s_testReported, 0);
            Volatile.Write(ref s_testName, name);
        }

        /// <summary>From the timer interrupt (interrupts off), after this CPU's tick count moved.</summary>
        internal static void OnTick(PerCpu* self)
        {
            if (s_seenTicks == null || !Smp.Started)
                return;
            ulong now = Native.Rdtsc();
            if (now < Volatile.Read(ref s_nextCheckTsc))
                return;
            // One checker at a time; the others skip this second.
            if (Interlocked.CompareExchange(ref s_checking, 1, 0) != 0)
                return;
            Volatile.Write(ref s_nextCheckTsc, now + Timer.TscPerSecond);
            ulong lockup = Volatile.Read(ref LockupTsc);
            for (int i = 0; i < Cpu.Count; i++)
            {
                PerCpu* c = Cpu.Get(i);
                if (c == self || Volatile.Read(ref c->Online) == 0)
                    continue;
                ulong ticks = Volatile.Read(ref c->TimerTicks);
                if (ticks != s_seenTicks[i])
                {
                    s_seenTicks[i] = ticks;
                    s_seenTsc[i] = now;
                    s_reported[i] = 0;
                    continue;
                }
                if (lockup == 0 || now - s_seenTsc[i] < lockup || s_reported[i] != 0)
                    continue;
                s_reported[i] = 1;
                Interlocked.Increment(ref LockupsReported);
                Log.Info($"watchdog: cpu {(ulong)i} took no timer tick for {(now - s_seenTsc[i]) / Timer.TscPerSecond} s (interrupts off: a lockup); its NMI dump follows");
                RequestDump(c);
            }
            string? test = Volatile.Read(ref s_testName);
            ulong limit = Volatile.Read(ref TestTsc);
            if (test != null && limit != 0 && now - s_testStartTsc >= limit && Interlocked.CompareExchange(ref s_testReported, 1, 0) == 0)
            {
                Interlocked.Increment(ref TestsReported);
                Log.Info($"watchdog: test {test} has run for {(now - s_testStartTsc) / Timer.TscPerSecond} s; every CPU's state follows (the test goes on)");
                Sched.Scheduler.Report();
                for (int i = 0; i < Cpu.Count; i++)
                {
                    PerCpu* c = Cpu.Get(i);
                    if (c != self && Volatile.Read(ref c->Online) != 0)
                        RequestDump(c);
                }
            }
            Volatile.Write(ref s_checking, 0);
        }

        private static void RequestDump(PerCpu* c)
        {
            ulong bit = 1UL << c->Index;
            ulong old;
            do
            {
                old = Volatile.Read(ref s_dumpRequests);
            }
            while (Interlocked.CompareExchange(ref s_dumpRequests, old | bit, old) != old);
            Lapic.SendNmi(c->ApicId);
        }

        /// <summary>
        /// From the NMI handler (<paramref name="rip"/> and <paramref name="rbp"/> of the interrupted
        /// code), or from an NMI exit of a vCPU (rip 0: this CPU ran a guest): prints this CPU's dump
        /// if one was asked for. Returns false for an NMI the watchdog did not send.
        /// </summary>
        public static bool OnNmi(ulong rip, ulong rbp, ulong rsp = 0)
        {
            int me = Cpu.CurrentIndex;
            ulong bit = 1UL << me;
            ulong old;
            do
            {
                old = Volatile.Read(ref s_dumpRequests);
                if ((old & bit) == 0)
                    return false;
            }
            while (Interlocked.CompareExchange(ref s_dumpRequests, old & ~bit, old) != old);
            // The interrupted code may hold the log lock: wait for it a while, then print anyway.
            ulong f = Log.BeginWithin(Timer.TscPerSecond, out bool locked);
            Log.Write("watchdog: cpu ");
            Log.Write((ulong)me);
            if (rip == 0)
                Log.Write(" was running a guest (an NMI exit); its host stack:\n");
            else
                Log.Write(" interrupted by the watchdog's NMI:\n");
            Backtrace.Print(rip, rbp);
            // A frameless leaf (an assembly stub) hides its caller from the rbp chain: the word at
            // the stack pointer, when it is kernel code, is likely that caller's return address.
            if (rsp != 0 && (rsp & 7) == 0 && Symbols.Lookup(*(ulong*)rsp, out _) != null)
            {
                Log.Write("  ? (the word at rsp)\n");
                Backtrace.PrintFrame(*(ulong*)rsp);
            }
            if (locked)
                Log.End(f);
            LastDumpRip = rip;
            Interlocked.Increment(ref DumpsPrinted);
            return true;
        }
    }
}
