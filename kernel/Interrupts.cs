using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// The one C# entry for every interrupt and exception (called by the generated stubs with the
    /// saved frame). Exceptions a test provoked on purpose, and faults at a registered probe
    /// instruction (the exception table), are recovered from; any other exception is a panic
    /// with a register dump and a symbolised backtrace.
    /// </summary>
    public static unsafe class Interrupts
    {
        public const byte TimerVector = 0x20;
        public const byte CallFunctionVector = 0xF0;

        /// <summary>Set by a test that is about to execute int3; counts the #BPs seen.</summary>
        public static int ExpectBreakpoint;
        public static int BreakpointsSeen;
        public static int ProbeFaultsFixed;

        /// <summary>Non-zero while a crash dump reads memory through the probe: a fixed-up fault is not reported.</summary>
        public static int QuietProbes;

        /// <summary>A handler for page faults the kernel did not cause through a probe (the mm core installs one); returns true if handled.</summary>
        public static delegate*<InterruptFrame*, ulong, bool> PageFaultHook;

        private static readonly string[] s_names =
        [
            "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
            "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
            "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
            "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check",
            "#XM SIMD error", "#VE virtualization exception", "#CP control protection", "reserved 22",
            "reserved 23", "reserved 24", "reserved 25", "reserved 26", "reserved 27",
            "#HV hypervisor injection", "#VC VMM communication", "#SX security exception", "reserved 31",
        ];

        [UnmanagedCallersOnly(EntryPoint = "tandem_interrupt")]
        private static void Dispatch(InterruptFrame* frame)
        {
            ulong vector = frame->Vector;
            if (vector < 32)
            {
                HandleException(frame);
                return;
            }
            switch (vector)
            {
                case TimerVector:
                    // EOI before the scheduler may switch threads here: the next thread's ticks must come.
                    Lapic.EndOfInterrupt();
                    Sched.Scheduler.OnTimer();
                    return;
                case Sched.Scheduler.RescheduleVector:
                    Lapic.EndOfInterrupt();
                    Sched.Scheduler.OnReschedule();
                    return;
                case CallFunctionVector:
                    // EOI first: a posted function may run long and re-enable interrupts, and it must
                    // still be able to take the next call-function IPI (a TLB shootdown, say).
                    Lapic.EndOfInterrupt();
                    Smp.HandleCallFunction();
                    return;
                case Lapic.SpuriousVector:
                    return;
                case >= Pic.Base and < Pic.Base + 16:
                    return;   // a spurious IRQ from the masked 8259: no EOI anywhere   // no EOI for spurious interrupts (SDM 12.9)
                default:
                    Log.Line("interrupt: unexpected vector ", vector);
                    Lapic.EndOfInterrupt();
                    return;
            }
        }

        private static void HandleException(InterruptFrame* frame)
        {
            switch (frame->Vector)
            {
                case 2:
                    if (Panic.InProgress)
                        Native.HaltForever();
                    if (Watchdog.OnNmi(frame->Rip, frame->Rbp, frame->Rsp))
                        return;
                    Log.Line("NMI received; continuing");
                    return;
                case 3:
                    if (Volatile.Read(ref ExpectBreakpoint) != 0)
                    {
                        Interlocked.Increment(ref BreakpointsSeen);
                        Report("#BP breakpoint (expected by a test) at ", frame->Rip - 1, "; resuming after int3");
                        return;    // #BP is a trap: rip already points past int3
                    }
                    break;
                case 13:
                case 14:
                    if (TryFixup(frame))
                        return;
                    if (frame->Vector == 14 && PageFaultHook != null && PageFaultHook(frame, Native.ReadCr2()))
                        return;
                    break;
            }
            Panic.FailWithFrame(s_names[(int)frame->Vector], frame);
        }

        /// <summary>Looks the faulting rip up in the exception table of the probe stubs.</summary>
        private static bool TryFixup(InterruptFrame* frame)
        {
            KernelLayout* layout = KernelLayout.Get;
            ulong* table = (ulong*)layout->ExTable;
            ulong count = *(ulong*)layout->ExTableCount;
            for (ulong i = 0; i < count; i++)
            {
                if (table[i * 2] == frame->Rip)
                {
                    if (QuietProbes == 0)
                        Report(frame->Vector == 14 ? "#PF at a probe instruction " : "#GP at a probe instruction ", frame->Rip, "; fixed up through the exception table");
                    frame->Rip = table[i * 2 + 1];
                    Interlocked.Increment(ref ProbeFaultsFixed);
                    return true;
                }
            }
            return false;
        }

        private static void Report(string what, ulong rip, string outcome)
        {
            byte* name = Symbols.Lookup(rip, out _);
            if (name != null)
                Log.Info($"interrupt: {what}{rip:x} ({Ascii.Span(name, 200)}){outcome}");
            else
                Log.Info($"interrupt: {what}{rip:x}{outcome}");
        }

        public static void Dump(InterruptFrame* f)
        {
            Log.Write("vector ");
            Log.Write(f->Vector);
            Log.Write(" (");
            Log.Write(f->Vector < 32 ? s_names[(int)f->Vector] : "interrupt");
            Log.Write(")  error code ");
            Log.Hex(f->ErrorCode);
            Log.Write("  cr2 ");
            Log.Hex(Native.ReadCr2(), 16);
            Log.WriteChar('\n');
            if (f->Vector == 14)
                CrashDump.WritePageFaultError(f->ErrorCode, Native.ReadCr2());
            Reg("rip", f->Rip); Reg("rsp", f->Rsp); Reg("rflags", f->Rflags); Reg("cs", f->Cs); Log.WriteChar('\n');
            Reg("rax", f->Rax); Reg("rbx", f->Rbx); Reg("rcx", f->Rcx); Reg("rdx", f->Rdx); Log.WriteChar('\n');
            Reg("rsi", f->Rsi); Reg("rdi", f->Rdi); Reg("rbp", f->Rbp); Reg("r8", f->R8); Log.WriteChar('\n');
            Reg("r9", f->R9); Reg("r10", f->R10); Reg("r11", f->R11); Reg("r12", f->R12); Log.WriteChar('\n');
            Reg("r13", f->R13); Reg("r14", f->R14); Reg("r15", f->R15); Reg("cr3", Native.ReadCr3()); Log.WriteChar('\n');
        }

        private static void Reg(string name, ulong value)
        {
            Log.Write(name);
            Log.Write("=");
            Log.Hex(value, 16);
            Log.Write("  ");
        }
    }
}
