using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Sched;

namespace Tandem.Kernel.Tests
{
    /// <summary>The scheduler on its own (no VMX): threads on every CPU, preemption, blocking, wake-ups, deadlines.</summary>
    internal static unsafe class SchedTests
    {
        private static KThread* s_waiter;
        private static int s_running;
        private static long s_seenCpus;
        private static int s_stop;
        private static long* s_counters;

        /// <summary>Waits (blocking, a second per wait at most) until <paramref name="count"/> reaches 0; false on a timeout.</summary>
        private static bool Join(ref int count, ulong seconds)
        {
            ulong deadline = Native.Rdtsc() + seconds * Timer.TscPerSecond;
            while (Volatile.Read(ref count) != 0)
            {
                if (Native.Rdtsc() >= deadline)
                    return false;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 10);
            }
            return true;
        }

        private static void Finished()
        {
            if (Interlocked.Decrement(ref s_running) == 0)
                Scheduler.Wake(s_waiter);
        }

        private static void SpinAndRecord(ulong index)
        {
            for (int round = 0; round < 200; round++)
            {
                Interlocked.Or(ref s_seenCpus, 1L << Cpu.CurrentIndex);
                for (int i = 0; i < 2000; i++)
                    Native.Pause();
                if ((round & 15) == 0)
                    Scheduler.Yield();
            }
            Finished();
        }

        public static void ThreadsRunOnEveryCpu(TestContext t)
        {
            s_waiter = Scheduler.Current;
            s_seenCpus = 0;
            int threads = Cpu.Count * 2;
            s_running = threads;
            for (int i = 0; i < threads; i++)
            {
                if (!t.Check(Scheduler.Spawn("spin", &SpinAndRecord, (ulong)i) != null, "could not spawn a thread"))
                    return;
            }
            if (!t.Check(Join(ref s_running, 60), "threads did not finish within 60 s", (ulong)Volatile.Read(ref s_running)))
                return;
            long all = (1L << Cpu.Count) - 1;
            t.Check(Volatile.Read(ref s_seenCpus) == all, "some CPU ran none of the threads", (ulong)s_seenCpus);
        }

        private static void SpinCounting(ulong index)
        {
            while (Volatile.Read(ref s_stop) == 0)
                Interlocked.Increment(ref s_counters[index]);
            Finished();
        }

        /// <summary>
        /// Three threads pinned to CPU 0 spin without ever yielding; the main thread (also CPU 0)
        /// sleeps. Only the timer can share CPU 0 between them: each must have counted, and been
        /// preempted, before the main thread tells them to stop.
        /// </summary>
        public static void TimerPreemptsSpinningThreads(TestContext t)
        {
            const int Spinners = 3;
            s_waiter = Scheduler.Current;
            s_stop = 0;
            s_counters = (long*)Memory.KernelHeap.Alloc(8 * Spinners);
            s_running = Spinners;
            KThread** threads = stackalloc KThread*[Spinners];
            for (int i = 0; i < Spinners; i++)
            {
                threads[i] = Scheduler.Spawn("spinner", &SpinCounting, (ulong)i, allowed: 1UL);
                if (!t.Check(threads[i] != null, "could not spawn a thread"))
                    return;
            }
            // The main thread sleeps 300 ms in 10 ms steps (it wakes by deadline, so the timer must
            // also take CPU 0 away from a spinner to run it).
            ulong end = Native.Rdtsc() + Timer.TscPerSecond * 3 / 10;
            ulong sleeps = 0;
            while (Native.Rdtsc() < end)
            {
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
                sleeps++;
            }
            Volatile.Write(ref s_stop, 1);
            if (!t.Check(Join(ref s_running, 30), "spinners did not stop"))
                return;
            for (int i = 0; i < Spinners; i++)
            {
                if (!t.Check(Volatile.Read(ref s_counters[i]) > 0, "a spinner never ran: the timer did not preempt", (ulong)i))
                    return;
                if (!t.Check(threads[i]->Preemptions > 0, "a spinner was never preempted", (ulong)i))
                    return;
                if (!t.Check(threads[i]->Migrations == 0, "a thread pinned to CPU 0 ran elsewhere", (ulong)i))
                    return;
            }
            t.Check(sleeps >= 10, "the sleeping main thread woke too rarely beside three spinners", sleeps);
        }

        /// <summary>
        /// A thread whose sleep ends just after another thread began its quantum on the same CPU
        /// takes the CPU once that thread has run the granularity (1 ms), not at the next tick: the
        /// timer is armed for the granularity's end. The main thread (CPU 0) sleeps 200 us at a time
        /// beside a spinner pinned to CPU 0, so every sleep hands the spinner a fresh quantum. Before
        /// the fix every wake-up waited for the next tick, and because the main thread then woke on
        /// the tick, the next one was a whole tick (10 ms) late: the host ticker beside two vCPUs
        /// had bursts of late wake-ups (400 of 606 over 5 ms in one CI run).
        /// </summary>
        public static void AWokenSleeperPreemptsAfterTheGranularity(TestContext t)
        {
            const int Rounds = 40;
            s_waiter = Scheduler.Current;
            s_stop = 0;
            s_counters = (long*)Memory.KernelHeap.Alloc(8);
            s_running = 1;
            KThread* spinner = Scheduler.Spawn("spinner", &SpinCounting, 0, allowed: 1UL);
            if (!t.Check(spinner != null, "could not spawn a thread"))
                return;
            ulong sleep = Timer.TscPerSecond / 5000;            // 200 us
            ulong slowLimit = Timer.TscPerSecond / 200;         // 5 ms: half a tick
            ulong slow = 0, worst = 0;
            for (int i = 0; i < Rounds; i++)
            {
                ulong deadline = Native.Rdtsc() + sleep;
                Scheduler.Block(deadline);                      // the spinner gets CPU 0 meanwhile
                ulong late = Native.Rdtsc() - deadline;
                if (late > slowLimit)
                    slow++;
                if (late > worst)
                    worst = late;
            }
            Volatile.Write(ref s_stop, 1);
            if (!t.Check(Join(ref s_running, 30), "the spinner did not stop"))
                return;
            ulong perUs = Timer.TscPerSecond / 1_000_000;
            Log.Info($"sched: {(ulong)Rounds} sleeps of 200 us beside a spinner: {slow} woke over 5 ms late, the latest {worst / perUs} us late, the spinner preempted {spinner->Preemptions} times");
            // Every sleep must have handed the CPU to the spinner, or the test measured nothing.
            if (!t.Check(spinner->Preemptions >= Rounds / 2, "the spinner was preempted too rarely (the sleeps did not hand it the CPU)", spinner->Preemptions))
                return;
            // Emulators are not exact timers: QEMU in CI runs woke the latest 4.2 and 4.8 ms late
            // in CI (0.8 ms on a quiet one). Without the arming every one of the 40 waits the
            // next tick (9.8 ms), so half of them late is the bug and anything below is noise.
            t.Check(slow <= Rounds / 2, "sleepers woke a tick late: a thread that woke waited for the next tick", slow);
        }

        private static KThread* s_partner;
        private static int s_ping, s_pong;
        private static int s_timeouts;
        private const int PingPongs = 2000;

        private static void Ponger(ulong unused)
        {
            for (int i = 1; i <= PingPongs; i++)
            {
                while (Volatile.Read(ref s_ping) < i)
                {
                    if (!Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond) && Volatile.Read(ref s_ping) < i)
                        Interlocked.Increment(ref s_timeouts);
                }
                Volatile.Write(ref s_pong, i);
                Scheduler.Wake(s_waiter);
            }
            Finished();
        }

        /// <summary>
        /// The main thread (CPU 0) and a thread pinned to the last CPU wake each other 2000 times
        /// through Block/Wake. A lost wake-up shows as a one-second timeout.
        /// </summary>
        public static void BlockAndWakeAcrossCpus(TestContext t)
        {
            s_waiter = Scheduler.Current;
            s_ping = 0;
            s_pong = 0;
            s_timeouts = 0;
            s_running = 1;
            s_partner = Scheduler.Spawn("ponger", &Ponger, 0, allowed: 1UL << (Cpu.Count - 1));
            if (!t.Check(s_partner != null, "could not spawn a thread"))
                return;
            for (int i = 1; i <= PingPongs; i++)
            {
                Volatile.Write(ref s_ping, i);
                Scheduler.Wake(s_partner);
                while (Volatile.Read(ref s_pong) < i)
                {
                    if (!Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond) && Volatile.Read(ref s_pong) < i)
                    {
                        if (Interlocked.Increment(ref s_timeouts) == 1)
                        {
                            // Which side stood still: a ponger Blocked with its token set lost its
                            // wake-up; one Runnable was never given its CPU; one Running is slow.
                            KThread* p = s_partner;
                            Log.Info($"sched: ping {(ulong)i} unanswered for 1 s: the ponger is in state {(ulong)Volatile.Read(ref p->State)} (0 runnable, 1 running, 2 blocked), token {(ulong)Volatile.Read(ref p->WakeToken)}, on cpu {(ulong)Volatile.Read(ref p->Cpu)}, its pong {(ulong)Volatile.Read(ref s_pong)}");
                            Scheduler.Report();
                        }
                    }
                    if (Volatile.Read(ref s_timeouts) > 5)
                        break;
                }
            }
            Join(ref s_running, 10);
            t.Check(Volatile.Read(ref s_pong) == PingPongs, "the ping-pong did not complete", (ulong)s_pong);
            t.Check(Volatile.Read(ref s_timeouts) == 0, "a wake-up was lost (a one-second wait timed out)", (ulong)s_timeouts);
            if (Cpu.Count > 1)
                t.Check(s_partner->Cpu == Cpu.Count - 1 && s_partner->Migrations <= 1, "the pinned thread left its CPU", (ulong)s_partner->Cpu);
        }

        /// <summary>A deadline sleep never ends early, and ends (within a generous bound) without a wake-up.</summary>
        public static void SleepEndsAtItsDeadline(TestContext t)
        {
            // A wake-up left over from an earlier test (a thread that woke us after we stopped
            // waiting) is consumed by a block whose deadline has passed: it returns at once.
            Scheduler.Block(1);
            for (int i = 0; i < 5; i++)
            {
                ulong start = Native.Rdtsc();
                ulong deadline = start + Timer.TscPerSecond / 50;       // 20 ms
                bool woken = Scheduler.Block(deadline);
                ulong end = Native.Rdtsc();
                if (!t.Check(!woken, "a sleep with no waker reported a wake-up"))
                    return;
                if (!t.Check(end >= deadline, "the sleep ended before its deadline", deadline - end))
                    return;
                if (!t.Check(end - start < Timer.TscPerSecond, "a 20 ms sleep took more than a second", (end - start) * 1000 / Timer.TscPerSecond))
                    return;
            }
        }

        private static Tandem.Mm.SpinLock s_mmLock;
        private static int s_bumped;

        private static void Bump(ulong argument)
        {
            Volatile.Write(ref s_bumped, 1);
            Finished();
        }

        /// <summary>
        /// An mm spin lock's holder is not preempted (mm/Sync/ILockPlatform.cs). A runnable thread
        /// pinned to CPU 0 waits while the main thread (CPU 0) holds an mm lock with interrupts on
        /// for ten quanta: it must not run until the lock is released, and must run after (so the
        /// test can see a preemption). A holder that could be preempted is a hang: a spinner with
        /// preemption off on the same CPU (the reclaimer in its eviction batch) never lets it back.
        /// </summary>
        public static void MmLockHolderIsNotPreempted(TestContext t)
        {
            s_waiter = Scheduler.Current;
            s_bumped = 0;
            s_running = 1;
            int before = Scheduler.Current->PreemptCount;
            Memory.KernelMmPlatform platform = default;
            s_mmLock.Enter(platform);
            if (Scheduler.Spawn("bumper", &Bump, 0, allowed: 1UL) == null)
            {
                s_mmLock.Exit(platform);
                t.Fail("could not spawn a thread");
                return;
            }
            ulong until = Native.Rdtsc() + Timer.TscPerSecond / 1000 * Scheduler.QuantumMs * 10;
            while (Native.Rdtsc() < until && Volatile.Read(ref s_bumped) == 0)
                Native.Pause();
            int ranWhileHeld = Volatile.Read(ref s_bumped);
            int held = Scheduler.Current->PreemptCount;
            s_mmLock.Exit(platform);
            if (!t.Check(ranWhileHeld == 0, "the timer preempted the holder of an mm lock: another thread ran on its CPU while it held the lock"))
            {
                Join(ref s_running, 5);
                return;
            }
            if (!t.Check(held == before + 1 && Scheduler.Current->PreemptCount == before, "the mm lock did not raise the preempt count by one and drop it again", (ulong)held))
                return;
            t.Check(Join(ref s_running, 5) && Volatile.Read(ref s_bumped) == 1, "the other thread never ran after the lock was released");
        }
    }
}
