using Tandem.Arch.X86;
using Tandem.Kernel.Boot;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kvm;

namespace Tandem.Kernel.Virt
{
    /// <summary>Gives kvm the kernel services it needs (see <see cref="KvmHost"/>).</summary>
    public static unsafe class KvmGlue
    {
        public static void Initialize()
        {
            KvmHost.TscPerSecond = Timer.TscPerSecond;
            KvmHost.WallSecondsAtTscZero = HostRtc.WallSecondsAtTscZero;
            KvmHost.AllocatePages = &AllocatePages;
            KvmHost.ReadConsole = &Console.Serial.TryRead;
            KvmHost.FreePages = &FrameAllocator.FreeContiguous;
            KvmHost.CurrentCpu = &CurrentCpu;
            KvmHost.LogBegin = &Log.Begin;
            KvmHost.LogEnd = &Log.End;
            KvmHost.LogBeginAs = &Log.BeginAs;
            KvmHost.LogLeaveOpen = &Log.LeaveOpen;
            KvmHost.Write = &Log.Write;
            KvmHost.WriteDecimal = &Log.Write;
            KvmHost.WriteHex = &WriteHex;
            KvmHost.WriteChar = &Log.WriteChar;
            KvmHost.PollInterrupts = &PollInterrupts;
            KvmHost.HandleNmi = &HandleNmi;
            KvmHost.RunOnCpu = &Smp.RunOn;
            KvmHost.CurrentThread = &CurrentThread;
            KvmHost.WakeThread = &WakeThread;
            KvmHost.KickThread = &KickThread;
            KvmHost.BlockThread = &BlockThread;
            KvmHost.SetSwitchInHook = &SetSwitchInHook;
            KvmHost.Yield = &Sched.Scheduler.Yield;
        }

        public static int VmxCpus;
        public static string? VmxProblem;

        private static void EnableVmxHere(ulong unused)
        {
            string? problem = Tandem.Kvm.Vmx.VmxCpu.Enable();
            if (problem == null)
                System.Threading.Interlocked.Increment(ref VmxCpus);
            else
                VmxProblem = problem;
        }

        /// <summary>VMXON on every online CPU (unless vmx=off or there is no VT-x); reports the outcome.</summary>
        public static void EnableVmxEverywhere()
        {
            if (CommandLine.VmxOff)
            {
                Log.Line("vmx: off (vmx=off on the command line)");
                return;
            }
            if (!KernelMain.Features.Vmx)
                return;
            for (int i = 0; i < Cpu.Count; i++)
                Smp.RunOn(i, &EnableVmxHere, 0);
            Log.Info($"vmx: enabled on {(ulong)VmxCpus} of {(ulong)Cpu.Count} cpus{(VmxProblem != null ? "; " : "")}{VmxProblem}");
        }

        private static ulong AllocatePages(ulong count)
        {
            ulong physical = FrameAllocator.AllocateContiguous(count);
            if (physical != 0)
                Native.MemSet((void*)physical, 0, count * FrameAllocator.PageSize);
            return physical;
        }

        private static int CurrentCpu() => Cpu.CurrentIndex;

        private static ulong CurrentThread() => (ulong)Sched.Scheduler.Current;

        private static void WakeThread(ulong thread) => Sched.Scheduler.Wake((Sched.KThread*)thread);

        private static void KickThread(ulong thread) => Sched.Scheduler.Kick((Sched.KThread*)thread);

        private static bool BlockThread(ulong deadlineTsc) => Sched.Scheduler.Block(deadlineTsc);

        private static void SetSwitchInHook(delegate*<ulong, void> hook, ulong argument)
        {
            Sched.KThread* me = Sched.Scheduler.Current;
            me->SwitchIn = null;               // never half-set if the timer switches us right here
            me->SwitchInArgument = argument;
            me->SwitchIn = hook;
        }

        private static void WriteHex(ulong value) => Log.Hex(value);

        private static void PollInterrupts()
        {
            Native.Sti();
            Native.Pause();
            Native.Cli();
        }

        private static void HandleNmi()
        {
            if (Panic.InProgress)
                Native.HaltForever();
            Watchdog.OnNmi(0, Native.ReadRbp());
        }

        /// <summary>The boot module whose GRUB command line is <paramref name="name"/>.</summary>
        public static bool FindModule(byte* name, int nameLength, out byte* start, out ulong length)
        {
            for (int i = 0; i < Multiboot2.ModuleCount; i++)
            {
                ref BootModule m = ref Multiboot2.Module(i);
                int k = 0;
                while (k < nameLength && m.CommandLine[k] == name[k])
                    k++;
                if (k == nameLength && m.CommandLine[k] == 0)
                {
                    start = (byte*)m.Start;
                    length = m.End - m.Start;
                    return true;
                }
            }
            start = null;
            length = 0;
            return false;
        }

        public static bool FindModule(string name, out byte* start, out ulong length)
        {
            byte* ascii = stackalloc byte[64];
            int n = 0;
            for (; n < name.Length && n < 63; n++)
                ascii[n] = (byte)name[n];
            return FindModule(ascii, n, out start, out length);
        }
    }
}
