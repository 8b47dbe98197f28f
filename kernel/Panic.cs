using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// Stops the machine: the first CPU to panic sends an NMI to every other CPU (their NMI handler
    /// halts them), prints the reason and a backtrace, then ends the run with status 3.
    /// A second panic on another CPU just halts that CPU.
    /// </summary>
    public static unsafe class Panic
    {
        private static int s_owner = -1;

        public static bool InProgress => Volatile.Read(ref s_owner) >= 0;

        /// <summary>Begins a panic; returns false if another CPU already owns it (the caller then halts).</summary>
        private static bool Begin()
        {
            int cpu = Cpu.CurrentIndex;
            Native.Cli();
            if (Interlocked.CompareExchange(ref s_owner, cpu, -1) != -1)
            {
                if (Volatile.Read(ref s_owner) != cpu)
                    Native.HaltForever();
                return true;
            }
            if (Smp.Started)
                Lapic.SendNmiToOthers();
            Log.s_panicking = true;
            return true;
        }

        /// <summary>Stops the other CPUs and prints "PANIC on cpu N: " (the reason follows).</summary>
        private static void Header()
        {
            Begin();
            Log.Write("\nPANIC on cpu ");
            Log.Write(Cpu.CurrentIndex);
            Log.Write(": ");
        }

        public static void Fail(string reason)
        {
            Header();
            Log.Write(reason);
            Log.WriteChar('\n');
            Backtrace.Print(0, Native.ReadRbp());
            Machine.Exit(Machine.StatusPanic);
        }

        /// <summary>Panic with a dump of an interrupt frame (an unexpected exception).</summary>
        public static void FailWithFrame(string reason, InterruptFrame* frame)
        {
            Header();
            Log.Write(reason);
            Log.WriteChar('\n');
            Interrupts.Dump(frame);
            CrashDump.WriteHostCode(frame->Rip);
            Backtrace.Print(frame->Rip, frame->Rbp);
            Machine.Exit(Machine.StatusPanic);
        }

        [UnmanagedCallersOnly(EntryPoint = "tandem_fail_fast")]
        private static void FailFastExport(byte* reason)
        {
            Header();
            Log.WriteAscii(reason, 200);
            Log.WriteChar('\n');
            Backtrace.Print(0, Native.ReadRbp());
            Machine.Exit(Machine.StatusPanic);
        }

        /// <summary>Where every C# <c>throw</c> ends (the runtime has no unwinder).</summary>
        [UnmanagedCallersOnly(EntryPoint = "tandem_unhandled_exception")]
        private static void UnhandledException(void* exceptionPointer, nint throwSite)
        {
            Header();
            System.Exception exception = System.Runtime.CompilerServices.Unsafe.AsRef<System.Exception>(&exceptionPointer);
            Log.Write("unhandled exception ");
            ulong typeAddress = **(ulong**)&exceptionPointer;
            byte* typeName = Symbols.Lookup(typeAddress, out ulong offset);
            if (typeName != null && offset == 0)
                Log.WriteAscii(Symbols.TypeName(typeName), 200);
            else
                Log.Hex(typeAddress);
            Log.Write(": ");
            Log.Write(exception.Message);
            Log.WriteChar('\n');
            Backtrace.Print(0, Native.ReadRbp());
            Machine.Exit(Machine.StatusPanic);
        }
    }
}
