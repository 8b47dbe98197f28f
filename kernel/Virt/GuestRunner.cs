using Tandem.Kernel.Console;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Virt
{
    /// <summary>Runs the guests the command line asks for (<c>vm=MODULE[,mem=MiB][,cpus=N]</c>).</summary>
    public static unsafe class GuestRunner
    {
        /// <summary>Runs every vm= guest in turn; returns 0 if all exited 0.</summary>
        public static int RunFromCommandLine()
        {
            if (CommandLine.VmxOff)
            {
                Log.Line("vm: vmx=off on the command line: not running any guest");
                return Machine.StatusBadBoot;
            }
            if (!KernelMain.Features.Vmx || !KernelMain.Features.Ept || !KernelMain.Features.UnrestrictedGuest)
            {
                Log.Line("vm: cannot run guests: this CPU lacks VT-x, EPT or unrestricted guest (see the banner)");
                return Machine.StatusBadBoot;
            }
            int worst = 0;
            for (int i = 0; i < CommandLine.VmCount; i++)
            {
                ref CommandLine.VmSpec spec = ref CommandLine.Vm(i);
                int status = RunOne(ref spec);
                if (status != 0)
                    worst = 1;
            }
            return worst;
        }

        private static int RunOne(ref CommandLine.VmSpec spec)
        {
            ulong f = Log.Begin();
            Log.Write("vm: starting '");
            for (int k = 0; k < spec.ModuleLength; k++)
                Log.WriteChar((char)spec.Module[k]);
            Log.Write("' with ");
            Log.Write(spec.MemoryMiB);
            Log.Write(" MiB\n");
            Log.End(f);
            if (spec.Cpus != 1)
            {
                Log.Line("vm: only one vCPU per VM is supported; refusing cpus= other than 1");
                return 1;
            }
            if (!KvmGlue.FindModule(spec.Module, spec.ModuleLength, out byte* image, out ulong length))
            {
                Log.Line("vm: no boot module with that name (modules are named by their GRUB module2 command line)");
                return 1;
            }
            Vm? vm = Create(spec.MemoryMiB << 20, image, length, out string? problem);
            if (vm == null)
            {
                Log.Write("vm: ");
                Log.Line(problem ?? "could not be created");
                return 1;
            }
            RunLoop.Run(vm.Vcpu!);
            Report(vm);
            return vm.ExitStatus;
        }

        /// <summary>A VM with <paramref name="memoryBytes"/> of RAM running <paramref name="image"/>.</summary>
        public static Vm? Create(ulong memoryBytes, byte* image, ulong length, out string? problem, bool hugeBacked = false)
        {
            MmGuestMemory? memory = MmGuestMemory.Create(memoryBytes, out problem, hugeBacked);
            if (memory == null)
                return null;
            Vm? vm = VmFactory.Create(memory, out problem);
            if (vm == null)
                return null;
            problem = GuestImage.Load(vm.Vcpu!, image, length);
            if (problem != null)
                return null;
            vm.Vcpu!.Registers->Rbx = (ulong)vm.Id;      // boot protocol: ebx = the VM's id
            return vm;
        }

        public static void Report(Vm vm)
        {
            ulong f = Log.Begin();
            Log.Write("vm ");
            Log.Write((ulong)vm.Id);
            Log.Write(": exit status ");
            Log.Write(vm.ExitStatus);
            if (vm.StopReason != null)
            {
                Log.Write(" (stopped by the host: ");
                Log.Write(vm.StopReason);
                Log.Write(")");
            }
            Log.Write(", ");
            Log.Write(vm.Vcpu!.Exits);
            Log.Write(" exits, ");
            Log.Write(vm.Memory.FaultsHandled);
            Log.Write(" EPT faults\n");
            Log.End(f);
        }
    }
}
