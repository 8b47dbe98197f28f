namespace Tandem.Kvm
{
    /// <summary>
    /// What kvm needs from the kernel (which sits above it and cannot be referenced): memory, the
    /// console and interrupt polling, as function pointers the kernel fills in at boot.
    /// Physical memory is identity-mapped, so a physical address is also a pointer.
    /// </summary>
    public static unsafe class KvmHost
    {
        /// <summary>Zeroed, physically contiguous pages; returns the physical address or 0.</summary>
        public static delegate*<ulong, ulong> AllocatePages;
        public static delegate*<ulong, ulong, void> FreePages;
        public static delegate*<int> CurrentCpu;
        public static delegate*<ulong> LogBegin;
        public static delegate*<ulong, void> LogEnd;

        /// <summary>LogBegin for a console of its own (a VM's id): sets *continues when its unfinished line is still the last thing on the screen.</summary>
        public static delegate*<int, bool*, ulong> LogBeginAs;

        /// <summary>Before LogEnd: the line just written stays open, the owner's.</summary>
        public static delegate*<int, void> LogLeaveOpen;
        public static delegate*<string, void> Write;
        public static delegate*<ulong, void> WriteDecimal;
        public static delegate*<ulong, void> WriteHex;
        public static delegate*<char, void> WriteChar;

        /// <summary>A byte typed on the host console, or -1 (the run loop hands it to the running VM's COM1).</summary>
        public static delegate*<int> ReadConsole;

        /// <summary>
        /// The VM whose vCPU 0 takes <see cref="ReadConsole"/>'s bytes (the monitor's <c>focus</c>);
        /// 0: whichever VM looks first.
        /// </summary>
        public static int ConsoleFocus;

        /// <summary>Lets interrupts that arrived while a guest ran be delivered (sti; nop; cli).</summary>
        public static delegate*<void> PollInterrupts;

        /// <summary>An NMI arrived while a guest ran: the kernel decides (a panic stops this CPU).</summary>
        public static delegate*<void> HandleNmi;

        /// <summary>Runs a function on another CPU and waits for it (the kernel's Smp.RunOn); false if it could not.</summary>
        public static delegate*<int, delegate*<ulong, void>, ulong, bool> RunOnCpu;

        /// <summary>The current kernel thread (an opaque handle for the calls below).</summary>
        public static delegate*<ulong> CurrentThread;

        /// <summary>Wakes a thread blocked in <see cref="BlockThread"/> (or makes its next block return at once).</summary>
        public static delegate*<ulong, void> WakeThread;

        /// <summary>Sends the thread's CPU a reschedule IPI if it runs on another CPU now (a vCPU in guest mode exits).</summary>
        public static delegate*<ulong, void> KickThread;

        /// <summary>Blocks the current thread until woken or until the TSC reaches the deadline (0: none); true if woken.</summary>
        public static delegate*<ulong, bool> BlockThread;

        /// <summary>
        /// Gives the current thread's CPU to a thread queued for it, if there is one, and returns when
        /// this thread runs again (the scheduler's yield; interrupts stay as they were). The yield
        /// hypercall calls it.
        /// </summary>
        public static delegate*<void> Yield;

        /// <summary>Sets the current thread's switch-in hook (called with interrupts off each time it is switched back in), or clears it (null).</summary>
        public static delegate*<delegate*<ulong, void>, ulong, void> SetSwitchInHook;

        /// <summary>The calibrated TSC frequency (the VM clock of every device model runs on it).</summary>
        public static ulong TscPerSecond;

        /// <summary>Seconds since 1970-01-01 UTC at TSC 0, from the host's RTC at boot (0 when it could not be read): every VM's RTC starts from it.</summary>
        public static ulong WallSecondsAtTscZero;

        public static ulong AllocatePage() => AllocatePages(1);

        public static void Line(string text)
        {
            ulong f = LogBegin();
            Write(text);
            WriteChar('\n');
            LogEnd(f);
        }
    }
}
