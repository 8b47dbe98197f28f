using System.Threading;
using Tandem.Kernel.Console;
using Tandem.Kvm.Devices;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Virt
{
    /// <summary>Runs the guests the command line asks for (<c>vm=MODULE[,mem=MiB][,cpus=N]</c>).</summary>
    public static unsafe class GuestRunner
    {
        /// <summary>
        /// Creates every vm= guest, then runs them all at once (a thread per vCPU), waits for each to
        /// stop, and prints one line per VM. Returns 0 if all exited 0.
        /// </summary>
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
            int count = CommandLine.VmCount;
            CommandLine.VmSpec* specs = stackalloc CommandLine.VmSpec[count];
            for (int i = 0; i < count; i++)
                specs[i] = CommandLine.Vm(i);
            return RunSpecs(specs, count);
        }

        /// <summary>
        /// Creates the VMs of <paramref name="specs"/>, runs them all at once, and waits for each to
        /// stop, printing its line. A VM that stopped because its guest reset the machine, with
        /// <c>reset=restart</c>, is released and made anew from its spec and started again (at most
        /// <see cref="CommandLine.VmSpec.MaxRestarts"/> times in a row), while the others go on.
        /// Returns 0 if every VM was created and exited 0.
        /// </summary>
        internal static int RunSpecs(CommandLine.VmSpec* specs, int count)
        {
            Vm[] vms = new Vm[count];
            int[] specOf = new int[count];
            int[] restarts = new int[count];
            bool[] done = new bool[count];
            int created = 0;
            int worst = 0;
            for (int i = 0; i < count; i++)
            {
                Vm? vm = CreateFromSpec(ref specs[i]);
                if (vm == null)
                {
                    worst = 1;
                    continue;
                }
                vm.RestartOnReset = specs[i].RestartOnReset;
                specOf[created] = i;
                vms[created++] = vm;
            }
            for (int i = 0; i < created; i++)
                VmThreads.Start(vms[i], specs[specOf[i]].PinMask);
            Monitor.MonitorShell.RunCommandLineScript();      // monitor="cmd;cmd": the VMs have started
            int left = created;
            while (left > 0)
            {
                VmThreads.WaitAny(vms, done, created);
                for (int i = 0; i < created; i++)
                {
                    if (done[i] || System.Threading.Volatile.Read(ref vms[i].RunningVcpus) != 0)
                        continue;
                    VmThreads.Report(vms[i]);
                    Vm? movedTo = Volatile.Read(ref vms[i].MovedTo);
                    if (movedTo != null)
                    {
                        // Moved (the monitor's move): the VM that took over runs on in its place.
                        // The move releases the old one when every page has arrived.
                        vms[i] = movedTo;
                        continue;
                    }
                    ref CommandLine.VmSpec spec = ref specs[specOf[i]];
                    bool restart = vms[i].ResetRequested && vms[i].RestartOnReset;
                    int limit = spec.MaxRestarts > 0 ? spec.MaxRestarts : CommandLine.DefaultMaxRestarts;
                    vms[i].Release();
                    if (restart && restarts[i] >= limit)
                    {
                        Log.Info($"vm: the guest reset its machine {(ulong)restarts[i] + 1} times in a row; not restarted again");
                        restart = false;
                    }
                    if (restart)
                    {
                        Vm? again = CreateFromSpec(ref spec);
                        if (again != null)
                        {
                            restarts[i]++;
                            again.RestartOnReset = true;
                            vms[i] = again;
                            VmThreads.Start(again, spec.PinMask);
                            continue;
                        }
                    }
                    // Here a restart that was asked for could not be made (its reason is printed).
                    done[i] = true;
                    left--;
                    if (vms[i].ExitStatus != 0 || restart)
                        worst = 1;
                }
            }
            PostcopyMove.WaitUntilNoneActive();     // a move's last pages and its figures, before the run's end
            LastRestarts = created > 0 ? restarts[0] : 0;
            return worst;
        }

        /// <summary>The restarts of the first VM of the last <see cref="RunSpecs"/> (for tests).</summary>
        internal static int LastRestarts;

        /// <summary>
        /// What a Linux guest gets unless <c>vm=...,defaults=off</c>: the console on COM1, and the options
        /// that spare a slow (emulated) CPU: no crypto self-tests, no KASLR, no speculation
        /// mitigations, a trusted TSC. The user's <c>cmdline=</c> is appended (Linux takes the last of
        /// a repeated option, so it can override these).
        /// </summary>
        public const string LinuxDefaultCmdline = "console=ttyS0 quiet cryptomgr.notests nokaslr mitigations=off tsc=reliable no_timer_check";

        /// <summary>Defaults for a Linux guest (bzImage or PVH): 2 vCPUs, 256 MiB, the module NAME-initrd, no time budget.</summary>
        public const int LinuxDefaultCpus = 2;
        public const ulong LinuxDefaultMiB = 256;

        /// <summary>Defaults for other guests (test guests, multiboot kernels): 1 vCPU, 16 MiB, the VM's standard budget.</summary>
        public const int OtherDefaultCpus = 1;
        public const ulong OtherDefaultMiB = 16;

        internal static Vm? CreateFromSpec(ref CommandLine.VmSpec spec)
        {
            if (spec.ModuleLength == 4 && spec.Module[0] == 'f' && spec.Module[1] == 'u' && spec.Module[2] == 'z' && spec.Module[3] == 'z')
                return CreateFuzzGuest(ref spec);
            if (!KvmGlue.FindModule(spec.Module, spec.ModuleLength, out byte* image, out ulong length))
            {
                NoSuchModule("vm: no boot module named '", spec.Module, spec.ModuleLength);
                return null;
            }
            Tandem.Kvm.Boot.BootInput probe = default;
            probe.Image = image;
            probe.ImageLength = length;
            GuestImage.Format kind = GuestImage.Detect(probe);
            bool linux = kind == GuestImage.Format.Linux || kind == GuestImage.Format.Pvh;
            if (spec.Cpus == 0)
                spec.Cpus = linux ? LinuxDefaultCpus : OtherDefaultCpus;
            if (spec.MemoryMiB == 0)
                spec.MemoryMiB = linux ? LinuxDefaultMiB : OtherDefaultMiB;
            if (spec.BudgetSeconds == 0 && linux)
                spec.BudgetSeconds = CommandLine.NoBudget;         // an operating system runs until it powers off
            if (linux && spec.Initrd == null)
                DefaultInitrd(ref spec);
            if (linux && !spec.NoDefaultCmdline)
                PrependDefaults(ref spec, LinuxDefaultCmdline);

            // A chain: five optional parts (initrd, budget, fw_cfg, command line), too many for one
            // readable interpolated line.
            ulong f = Log.Begin();
            Log.Write("vm: starting '");
            for (int k = 0; k < spec.ModuleLength; k++)
                Log.WriteChar((char)spec.Module[k]);
            Log.Write("' with ");
            Log.Write(spec.MemoryMiB);
            Log.Write(" MiB, ");
            Log.Write((ulong)spec.Cpus);
            Log.Write(spec.Cpus == 1 ? " vcpu" : " vcpus");
            if (spec.Initrd != null)
            {
                Log.Write(", initrd '");
                for (int k = 0; k < spec.InitrdLength; k++)
                    Log.WriteChar((char)spec.Initrd[k]);
                Log.WriteChar('\'');
            }
            if (spec.BudgetSeconds == CommandLine.NoBudget)
                Log.Write(", no time budget");
            else if (spec.BudgetSeconds != 0)
            {
                Log.Write(", budget ");
                Log.Write(spec.BudgetSeconds);
                Log.Write(" s");
            }
            if (spec.FwCfgFiles != null)
            {
                Log.Write(", fw_cfg ");
                for (int k = 0; k < spec.FwCfgFilesLength; k++)
                    Log.WriteChar((char)spec.FwCfgFiles[k]);
            }
            if (spec.Cmdline != null)
            {
                Log.Write(", command line \"");
                for (int k = 0; k < spec.CmdlineLength; k++)
                    Log.WriteChar((char)spec.Cmdline[k]);
                Log.WriteChar('"');
            }
            Log.WriteChar('\n');
            Log.End(f);
            // The guest's modules: the initrd first (Linux takes only that one), then modules=A+B.
            const int MaxGuestModules = 8;
            Tandem.Kvm.Boot.BootModule* modules = stackalloc Tandem.Kvm.Boot.BootModule[MaxGuestModules];
            int moduleCount = 0;
            if (spec.Initrd != null && !AddModule(modules, ref moduleCount, spec.Initrd, spec.InitrdLength))
                return null;
            for (int at = 0; spec.Modules != null && at < spec.ModulesLength;)
            {
                int end = at;
                while (end < spec.ModulesLength && spec.Modules[end] != '+')
                    end++;
                if (moduleCount == MaxGuestModules)
                {
                    Log.Line("vm: at most 8 modules per guest");
                    return null;
                }
                if (end > at && !AddModule(modules, ref moduleCount, spec.Modules + at, end - at))
                    return null;
                at = end + 1;
            }
            FwCfgFile* files = stackalloc FwCfgFile[PcPlatform.MaxUserFwCfgFiles];
            int fileCount = 0;
            if (spec.FwCfgFiles != null && !ParseFwCfgFiles(spec.FwCfgFiles, spec.FwCfgFilesLength, files, ref fileCount))
                return null;
            Tandem.Kvm.Boot.BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            input.Cmdline = spec.Cmdline;
            input.CmdlineLength = (ulong)spec.CmdlineLength;
            input.Modules = modules;
            input.ModuleCount = moduleCount;
            Vm? vm = Create(spec.MemoryMiB << 20, input, out string? problem, cpus: spec.Cpus);
            if (vm == null)
            {
                Log.Write("vm: ");
                Log.Line(problem ?? "could not be created");
                return null;
            }
            for (int i = 0; i < fileCount; i++)
            {
                byte[] contents = new byte[files[i].Length];
                for (int k = 0; k < contents.Length; k++)
                    contents[k] = files[i].Data[k];
                if (vm.Platform.FwCfg.AddFile(new System.ReadOnlySpan<byte>(files[i].Name, files[i].NameLength), contents) == 0xFFFF)
                {
                    Log.Line("vm: fw_cfg has no room for another file");
                    return null;
                }
            }
            if (spec.BudgetSeconds == CommandLine.NoBudget)
                vm.MaxQuanta = 0;
            else if (spec.BudgetSeconds != 0)
                vm.MaxQuanta = VmcsSetup.BudgetUnits(spec.BudgetSeconds);
            return vm;
        }

        /// <summary>A Linux guest without initrd= takes the module NAME-initrd when the boot image has one.</summary>
        private static void DefaultInitrd(ref CommandLine.VmSpec spec)
        {
            const string Suffix = "-initrd";
            int n = spec.ModuleLength + Suffix.Length;
            byte* name = (byte*)Memory.KernelHeap.Alloc((ulong)n + 1);
            if (name == null)
                return;
            for (int k = 0; k < spec.ModuleLength; k++)
                name[k] = spec.Module[k];
            for (int k = 0; k < Suffix.Length; k++)
                name[spec.ModuleLength + k] = (byte)Suffix[k];
            name[n] = 0;
            if (!KvmGlue.FindModule(name, n, out _, out _))
                return;
            spec.Initrd = name;
            spec.InitrdLength = n;
        }

        /// <summary>The guest's command line becomes <paramref name="defaults"/>, a space, then what the user gave.</summary>
        private static void PrependDefaults(ref CommandLine.VmSpec spec, string defaults)
        {
            if (spec.Cmdline != null && spec.CmdlineLength == 0)
                spec.Cmdline = null;
            int n = defaults.Length + (spec.Cmdline != null ? 1 + spec.CmdlineLength : 0);
            byte* text = (byte*)Memory.KernelHeap.Alloc((ulong)n + 1);
            if (text == null)
                return;
            for (int k = 0; k < defaults.Length; k++)
                text[k] = (byte)defaults[k];
            if (spec.Cmdline != null)
            {
                text[defaults.Length] = (byte)' ';
                for (int k = 0; k < spec.CmdlineLength; k++)
                    text[defaults.Length + 1 + k] = spec.Cmdline[k];
            }
            text[n] = 0;
            spec.Cmdline = text;
            spec.CmdlineLength = n;
        }

        /// <summary>A VM with <paramref name="memoryBytes"/> of RAM running <paramref name="image"/>.</summary>
        public static Vm? Create(ulong memoryBytes, byte* image, ulong length, out string? problem, bool hugeBacked = false, int cpus = 1)
        {
            Tandem.Kvm.Boot.BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            return Create(memoryBytes, input, out problem, hugeBacked, cpus);
        }

        /// <summary><c>vm=fuzz,seed=N</c>: the fuzz guest of seed N (1 when not given), as the campaign makes it (docs/fuzzing.md).</summary>
        private static Vm? CreateFuzzGuest(ref CommandLine.VmSpec spec)
        {
            ulong seed = spec.Seed == CommandLine.Unset ? 1 : spec.Seed;
            Vm? vm = FuzzCampaign.CreateGuest(seed, out string? problem);
            if (vm == null)
                Log.Info($"vm: fuzz guest of seed {seed} not created: {problem ?? "?"}");
            else
                Log.Info($"vm: fuzz guest of seed {seed} is vm {(ulong)vm.Id} (its serial output is muted; the step it ended at is the dword at guest address 0x8000)");
            return vm;
        }

        /// <summary>A VM with <paramref name="memoryBytes"/> of RAM booted from <paramref name="input"/> by the loader its format asks for.</summary>
        public static Vm? Create(ulong memoryBytes, in Tandem.Kvm.Boot.BootInput input, out string? problem, bool hugeBacked = false, int cpus = 1)
        {
            MmGuestMemory? memory = MmGuestMemory.Create(memoryBytes, out problem, hugeBacked);
            if (memory == null)
                return null;
            Vm? vm = VmFactory.Create(memory, out problem, cpus);
            if (vm == null)
            {
                memory.Release();                   // nothing is lost when the VM cannot be made
                return null;
            }
            problem = GuestImage.Load(vm.Vcpu!, input, out GuestImage.Format format);
            if (problem != null)
            {
                vm.Release();                       // a refused image: the VM's VPIDs, pages and RAM go back
                return null;
            }
            if (format == GuestImage.Format.Flat)
                vm.Vcpu!.Registers->Rbx = (ulong)vm.Id;      // test-guest boot protocol: ebx = the VM's id
            else
                Log.Info($"vm {(ulong)vm.Id}: loaded as a {GuestImage.FormatName(format)}");
            return vm;
        }

        /// <summary>One <c>fwcfg=NAME:MODULE</c> file: its name and the module's bytes.</summary>
        private struct FwCfgFile
        {
            public byte* Name;
            public int NameLength;
            public byte* Data;
            public int Length;
        }

        /// <summary>
        /// <c>fwcfg=NAME:MODULE+NAME:MODULE</c> (QEMU's <c>-fw_cfg name=NAME,file=PATH</c>): each
        /// NAME must begin with <c>opt/</c> (the names QEMU leaves to users; <c>etc/</c> is the
        /// platform's) and fit fw_cfg's 55 bytes, each MODULE must be a boot module of at most
        /// <see cref="PcPlatform.MaxUserFwCfgBytes"/>, at most <see cref="PcPlatform.MaxUserFwCfgFiles"/>
        /// files, no name twice. Anything else is refused with what is wrong, before the VM exists.
        /// </summary>
        private static bool ParseFwCfgFiles(byte* text, int length, FwCfgFile* files, ref int count)
        {
            for (int at = 0; at < length;)
            {
                int end = at;
                while (end < length && text[end] != '+')
                    end++;
                int colon = at;
                while (colon < end && text[colon] != ':')
                    colon++;
                int nameLength = colon - at;
                if (colon == end || nameLength == 0 || colon + 1 == end)
                    return FwCfgRefused("is not NAME:MODULE", text + at, end - at);
                if (nameLength < 5 || text[at] != 'o' || text[at + 1] != 'p' || text[at + 2] != 't' || text[at + 3] != '/')
                    return FwCfgRefused("names no file under opt/ (etc/ is the platform's)", text + at, nameLength);
                if (nameLength >= FwCfg.NameSize)
                    return FwCfgRefused("has a name longer than 55 bytes", text + at, nameLength);
                for (int i = 0; i < count; i++)
                {
                    bool same = files[i].NameLength == nameLength;
                    for (int k = 0; same && k < nameLength; k++)
                        same = files[i].Name[k] == text[at + k];
                    if (same)
                        return FwCfgRefused("names a file twice", text + at, nameLength);
                }
                if (count == PcPlatform.MaxUserFwCfgFiles)
                    return FwCfgRefused("is a file too many (at most 8)", text + at, end - at);
                if (!KvmGlue.FindModule(text + colon + 1, end - colon - 1, out byte* data, out ulong size))
                {
                    NoSuchModule("vm: fwcfg= names no boot module '", text + colon + 1, end - colon - 1);
                    return false;
                }
                if (size > PcPlatform.MaxUserFwCfgBytes)
                    return FwCfgRefused("names a module larger than 1 MiB", text + colon + 1, end - colon - 1);
                ref FwCfgFile f = ref files[count++];
                f.Name = text + at;
                f.NameLength = nameLength;
                f.Data = data;
                f.Length = (int)size;
                at = end + 1;
            }
            return true;
        }

        private static bool FwCfgRefused(string what, byte* text, int length)
        {
            Log.Info($"vm: fwcfg= '{new System.ReadOnlySpan<byte>(text, length)}' {what}; vm not started");
            return false;
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

        public static void Report(Vm vm) => VmThreads.Report(vm);
    }
}
