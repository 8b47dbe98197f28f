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
        public static delegate*<string, void> Write;
        public static delegate*<ulong, void> WriteDecimal;
        public static delegate*<ulong, void> WriteHex;
        public static delegate*<char, void> WriteChar;

        /// <summary>A byte typed on the host console, or -1 (the run loop hands it to the running VM's COM1).</summary>
        public static delegate*<int> ReadConsole;

        /// <summary>Lets interrupts that arrived while a guest ran be delivered (sti; nop; cli).</summary>
        public static delegate*<void> PollInterrupts;

        /// <summary>An NMI arrived while a guest ran: the kernel decides (a panic stops this CPU).</summary>
        public static delegate*<void> HandleNmi;

        /// <summary>Runs a function on another CPU and waits for it (the kernel's Smp.RunOn); false if it could not.</summary>
        public static delegate*<int, delegate*<ulong, void>, ulong, bool> RunOnCpu;

        /// <summary>The calibrated TSC frequency (the VM clock of every device model runs on it).</summary>
        public static ulong TscPerSecond;

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
