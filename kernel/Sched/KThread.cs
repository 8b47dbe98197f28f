namespace Tandem.Kernel.Sched
{
    /// <summary>A kernel thread's state (docs/scheduler.md, "States").</summary>
    public static class ThreadState
    {
        /// <summary>On a CPU's run queue, waiting for it.</summary>
        public const int Runnable = 0;

        /// <summary>Some CPU's current thread.</summary>
        public const int Running = 1;

        /// <summary>Off every queue until <see cref="Scheduler.Wake"/> (or its deadline).</summary>
        public const int Blocked = 2;

        /// <summary>Returned from its entry function; its stack is freed by the next thread on that CPU.</summary>
        public const int Dead = 3;
    }

    /// <summary>
    /// A kernel thread: its saved stack pointer, its state, where it may run, and its statistics.
    /// Lives in kernel-heap memory that never moves and is never freed (a pointer to a thread stays
    /// valid after it died, so joiners and kickers never race with its release).
    /// </summary>
    public unsafe struct KThread
    {
        /// <summary>The stack pointer saved by <c>tandem_switch</c> while the thread is not running.</summary>
        public ulong Rsp;

        /// <summary>
        /// 1 from the moment a CPU switches to the thread until <c>tandem_switch</c> has saved its
        /// stack on the way out. A CPU that picks the thread waits for 0 before resuming it.
        /// </summary>
        public int OnCpu;

        /// <summary>One of <see cref="ThreadState"/>; changed by the thread itself, except Blocked to Runnable by a waker's CAS.</summary>
        public int State;

        /// <summary>A wake-up that has not been consumed by <see cref="Scheduler.Block"/> yet (a binary semaphore).</summary>
        public int WakeToken;

        /// <summary>The CPU the thread runs on, or last ran on, or is queued on.</summary>
        public int Cpu;

        /// <summary>The CPUs it may run on (bit i = CPU index i).</summary>
        public ulong Allowed;

        /// <summary>Nonzero while the thread must not be preempted by the timer (see <see cref="Scheduler.PreemptDisable"/>).</summary>
        public int PreemptCount;

        public int Id;

        /// <summary>Run-queue link (under the queue's lock).</summary>
        public KThread* Next;

        /// <summary>Sleeper-list link and the CPU whose list holds it (-1: on none), under that CPU's queue lock.</summary>
        public KThread* NextSleeper;
        public int SleepCpu;

        /// <summary>The TSC deadline of a timed <see cref="Scheduler.Block"/>.</summary>
        public ulong SleepUntil;

        public ulong StackBase, StackPages;
        public delegate*<ulong, void> Entry;
        public ulong Argument;

        /// <summary>Called, with interrupts off, each time the thread is switched back in (a vCPU reloads its VMCS there).</summary>
        public delegate*<ulong, void> SwitchIn;
        public ulong SwitchInArgument;

        /// <summary>Times switched in, preempted by the timer, and moved to another CPU.</summary>
        public ulong Switches, Preemptions, Migrations;

        /// <summary>Set (Volatile) when the thread has returned from its entry function.</summary>
        public int Finished;

        public fixed byte Name[24];
    }
}
