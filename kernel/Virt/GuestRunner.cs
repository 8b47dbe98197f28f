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
                NoSuchModule("vm: no boot module named '", spec.Module, spec.ModuleLength);
                return 1;
            }
            // The guest's modules: the initrd first (Linux takes only that one), then modules=A+B.
            const int MaxGuestModules = 8;
            Tandem.Kvm.Boot.BootModule* modules = stackalloc Tandem.Kvm.Boot.BootModule[MaxGuestModules];
            int moduleCount = 0;
            if (spec.Initrd != null && !AddModule(modules, ref moduleCount, spec.Initrd, spec.InitrdLength))
                return 1;
            for (int at = 0; spec.Modules != null && at < spec.ModulesLength;)
            {
                int end = at;
                while (end < spec.ModulesLength && spec.Modules[end] != '+')
                    end++;
                if (moduleCount == MaxGuestModules)
                {
                    Log.Line("vm: at most 8 modules per guest");
                    return 1;
                }
                if (end > at && !AddModule(modules, ref moduleCount, spec.Modules + at, end - at))
                    return 1;
                at = end + 1;
            }
            Tandem.Kvm.Boot.BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            input.Cmdline = spec.Cmdline;
            input.CmdlineLength = (ulong)spec.CmdlineLength;
            input.Modules = modules;
            input.ModuleCount = moduleCount;
            Vm? vm = Create(spec.MemoryMiB << 20, input, out string? problem);
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
            Tandem.Kvm.Boot.BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            return Create(memoryBytes, input, out problem, hugeBacked);
        }

        /// <summary>A VM with <paramref name="memoryBytes"/> of RAM booted from <paramref name="input"/> by the loader its format asks for.</summary>
        public static Vm? Create(ulong memoryBytes, in Tandem.Kvm.Boot.BootInput input, out string? problem, bool hugeBacked = false)
        {
            MmGuestMemory? memory = MmGuestMemory.Create(memoryBytes, out problem, hugeBacked);
            if (memory == null)
                return null;
            Vm? vm = VmFactory.Create(memory, out problem);
            if (vm == null)
                return null;
            problem = GuestImage.Load(vm.Vcpu!, input, out GuestImage.Format format);
            if (problem != null)
                return null;
            if (format == GuestImage.Format.Flat)
                vm.Vcpu!.Registers->Rbx = (ulong)vm.Id;      // test-guest boot protocol: ebx = the VM's id
            else
            {
                ulong f = Log.Begin();
                Log.Write("vm ");
                Log.Write((ulong)vm.Id);
                Log.Write(": loaded as a ");
                Log.Write(GuestImage.FormatName(format));
                Log.Write("\n");
                Log.End(f);
            }
            return vm;
        }

        private static bool AddModule(Tandem.Kvm.Boot.BootModule* modules, ref int count, byte* name, int nameLength)
        {
            if (!KvmGlue.FindModule(name, nameLength, out byte* start, out ulong length))
            {
                NoSuchModule("vm: no boot module named '", name, nameLength);
                return false;
            }
            ref Tandem.Kvm.Boot.BootModule m = ref modules[count++];
            m = default;
            m.Data = start;
            m.Length = length;
            m.Cmdline = name;
            m.CmdlineLength = (ulong)nameLength;
            return true;
        }

        /// <summary>The module is not on the boot image: say so, and list the ones that are.</summary>
        private static void NoSuchModule(string what, byte* name, int nameLength)
        {
            ulong f = Log.Begin();
            Log.Write(what);
            for (int k = 0; k < nameLength; k++)
                Log.WriteChar((char)name[k]);
            Log.Write("'; the boot modules are:");
            for (int i = 0; i < Boot.Multiboot2.ModuleCount; i++)
            {
                byte* n = Boot.Multiboot2.Module(i).CommandLine;
                Log.WriteChar(' ');
                for (int k = 0; n[k] != 0 && k < 64; k++)
                    Log.WriteChar((char)n[k]);
            }
            Log.Write("\n");
            Log.End(f);
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
