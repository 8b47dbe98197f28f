using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Sched;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// Debian's Linux kernel as a guest (issue 10), booted from the modules <c>linux</c> and
    /// <c>linux-initrd</c> that the build driver makes from Debian's packages (docs/guests.md,
    /// "Linux guest"), with 2 vCPUs and 256 MiB, through the same <c>vm=</c> path a user takes. The
    /// initramfs's /init prints <c>TANDEM-SHELL-READY</c> before its shell; with
    /// <c>tandem.selftest</c> it runs /selftest instead, which prints one <c>TANDEM-SELFTEST</c> line
    /// and powers off (ACPI S5: status 0).
    /// </summary>
    internal static unsafe class LinuxTests
    {
        private const string Kernel = "linux", Initrd = "linux-initrd";
        private const int Cpus = 2;
        private const ulong MemoryMiB = 256;

        /// <summary>Guest time (per vCPU, running or halted) before the host stops a Linux test VM as stuck.</summary>
        private const ulong BudgetSeconds = 600;

        private static bool Unavailable(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return true;
            if (Cpu.Count < 2)
            {
                t.Skip("the Linux tests run on 2 physical CPUs (the bochs-tigerlake-2cpu configuration)");
                return true;
            }
            if (!KvmGlue.FindModule(Kernel, out _, out _) || !KvmGlue.FindModule(Initrd, out _, out _))
            {
                t.Skip("the Linux guest is not on the boot image (the build driver makes it from Debian's packages; out/obj/linux/UNAVAILABLE says why it could not)");
                return true;
            }
            return false;
        }

        private static byte* Ascii(string s)
        {
            byte* p = (byte*)KernelHeap.Alloc((ulong)s.Length + 1);
            for (int i = 0; i < s.Length; i++)
                p[i] = (byte)s[i];
            p[s.Length] = 0;
            return p;
        }

        /// <summary>Creates the VM as <c>vm=linux,cmdline="..."</c> would: the defaults, then <paramref name="cmdline"/>.</summary>
        private static Vm? Create(TestContext t, string? cmdline)
        {
            CommandLine.VmSpec spec = default;
            spec.Module = Ascii(Kernel);
            spec.ModuleLength = Kernel.Length;
            spec.Cpus = Cpus;
            spec.MemoryMiB = MemoryMiB;
            spec.BudgetSeconds = BudgetSeconds;
            if (cmdline != null)
            {
                spec.Cmdline = Ascii(cmdline);
                spec.CmdlineLength = cmdline.Length;
            }
            Vm? vm = GuestRunner.CreateFromSpec(ref spec);
            if (vm == null)
                t.Fail("the Linux VM could not be created (see the lines above)");
            return vm;
        }

        /// <summary>Waits until <paramref name="watch"/> saw its marker's line or the VM stopped; true if seen.</summary>
        private static bool WaitFor(Vm vm, ConsoleWatch watch)
        {
            while (Volatile.Read(ref watch.Seen) == 0)
            {
                if (Volatile.Read(ref vm.RunningVcpus) == 0)
                    return Volatile.Read(ref watch.Seen) != 0;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 20);
            }
            return true;
        }

        /// <summary>Types <paramref name="text"/> into the guest's COM1, as the host console would.</summary>
        private static void Type(Vm vm, string text)
        {
            for (int i = 0; i < text.Length; i++)
            {
                // The UART keeps 256 bytes for the guest: wait while it is full.
                while (true)
                {
                    vm.Platform.Lock.Enter();
                    bool taken = vm.Platform.Com1.Receive((byte)text[i]);
                    vm.Platform.Lock.Exit();
                    vm.Kick(0);
                    if (taken || vm.Stopped)
                        break;
                    Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
                }
            }
        }

        private static void Finish(Vm vm)
        {
            VmThreads.WaitAndReport(vm);
            vm.Release();
        }

        /// <summary>
        /// Boots to the shell: the banner of /init and its ready marker appear, a command typed into
        /// the guest's 16550 runs (its output comes back, computed by the guest's shell), and
        /// <c>poweroff</c> (busybox signals /init, PID 1) ends the VM with status 0 through ACPI S5.
        /// </summary>
        public static void BootsToShell(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Create(t, null);
            if (vm == null)
                return;
            var ready = new ConsoleWatch("TANDEM-SHELL-READY");
            vm.Watch = ready;
            VmThreads.Start(vm, 0);
            bool up = WaitFor(vm, ready);
            bool echoed = false;
            if (up)
            {
                // The answer is not in the typed line (which the shell echoes): only the shell's
                // arithmetic makes it.
                var echo = new ConsoleWatch("tandem-42-answer");
                Volatile.Write(ref vm.Watch, echo);
                Type(vm, "echo tandem-$((6*7))-answer\n");
                echoed = WaitFor(vm, echo);
                Type(vm, "poweroff\n");          // busybox signals PID 1 (/init), which powers off
            }
            Finish(vm);
            if (!t.Check(up, "no TANDEM-SHELL-READY from the guest's /init before the VM stopped", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(echoed, "a command typed into COM1 did not come back with the shell's answer (tandem-42-answer)"))
                return;
            t.Check(vm.ExitStatus == 0, "poweroff did not end the VM with status 0", (ulong)vm.ExitStatus);
        }

        /// <summary>Runs the guest's self-test; checks its verdict, what Linux saw, and the power-off.</summary>
        private static void SelfTest(TestContext t, bool pressure)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Create(t, "tandem.selftest");
            if (vm == null)
                return;
            var result = new ConsoleWatch("TANDEM-SELFTEST ");
            vm.Watch = result;
            VmThreads.Start(vm, 0);
            Pressure* p = null;
            if (pressure)
                p = StartPressure((MmGuestMemory)vm.Memory);
            Vm[] one = new Vm[1];
            one[0] = vm;
            VmThreads.WaitAll(one, 1);
            if (p != null)
                StopPressure(p);
            VmThreads.Report(vm);
            vm.Release();
            if (!t.Check(Volatile.Read(ref result.Seen) != 0, "the guest printed no TANDEM-SELFTEST line", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(result.FieldIs("result", "PASS"), "the guest's self-test failed (its line is above)"))
                return;
            if (!t.Check(result.FieldNumber("cpus") == Cpus, "Linux did not see 2 CPUs", (ulong)result.FieldNumber("cpus")))
                return;
            long kb = result.FieldNumber("mem_kb");
            // MemTotal is RAM less what the kernel keeps for itself: between 3/4 of it and all of it.
            if (!t.Check(kb > (long)(MemoryMiB * 1024 * 3 / 4) && kb <= (long)(MemoryMiB * 1024), "Linux saw the wrong memory size (MemTotal kB)", (ulong)kb))
                return;
            if (!t.Check(vm.ExitStatus == 0, "the self-test's poweroff did not end the VM with status 0", (ulong)vm.ExitStatus))
                return;
            if (p != null)
            {
                if (!t.Check(p->Passes >= 2, "the host finished fewer than 2 aging and write-protect passes while the guest ran", (ulong)p->Passes))
                    return;
                if (!t.Check(p->Protected > 0 && p->Young > 0, "the passes write-protected or found young no guest page", (ulong)p->Protected))
                    return;
                Log.Info($"linux: pressure: {p->Passes} passes, {p->Young} young frames, {p->Protected} entries protected, {p->WritableChecked} EPT leaves writable again checked, {p->Refaults} guest faults handled");
                if (!t.Check(p->MorePermissive == 0, "an EPT leaf was writable while the primary entry was not (a protect did not zap the EPT)", p->MorePermissive))
                    return;
                t.Check(p->WritableChecked > 0, "the guest wrote no page again after the host protected it: nothing was checked", p->WritableChecked);
            }
        }

        public static void SelfTestPasses(TestContext t) => SelfTest(t, pressure: false);

        /// <summary>
        /// The self-test's file and memory workload while a host thread keeps aging every guest
        /// frame through the reverse map (primary and EPT accessed bits, exact) and write-protecting
        /// all guest RAM in 1 MiB steps through the primary MMU, so that the notifier zaps the EPT
        /// under the running vCPUs over and over. The guest must see no wrong byte: its checksums
        /// still match.
        /// </summary>
        public static void ReclaimUnderLoad(TestContext t) => SelfTest(t, pressure: true);

        private struct Pressure
        {
            public ulong Memory;          // GCHandle-free: the MmGuestMemory is kept alive by the VM
            public int StopRequested, Stopped;
            public ulong Passes, Protected, Young, Refaults, WritableChecked, MorePermissive;
        }

        private static MmGuestMemory? s_pressureMemory;

        private static Pressure* StartPressure(MmGuestMemory memory)
        {
            var p = (Pressure*)KernelHeap.Alloc((ulong)sizeof(Pressure));
            *p = default;
            s_pressureMemory = memory;
            if (Scheduler.Spawn("pressure", &PressureMain, (ulong)p) == null)
            {
                p->Stopped = 1;
                return p;
            }
            return p;
        }

        private static void StopPressure(Pressure* p)
        {
            Volatile.Write(ref p->StopRequested, 1);
            while (Volatile.Read(ref p->Stopped) == 0)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            s_pressureMemory = null;
        }

        /// <summary>The EPT leaf (4 KiB, 2 MiB or 1 GiB) that maps <paramref name="gpa"/>, or 0 (a lockless read, as the CPU walks it).</summary>
        private static ulong EptLeaf(MmGuestMemory memory, ulong gpa)
        {
            ulong table = memory.Ept.Root.Value;
            for (int level = 4; level >= 1; level--)
            {
                ulong entry = Volatile.Read(ref ((ulong*)table)[(gpa >> (12 + 9 * (level - 1))) & 511]);
                if ((entry & Tandem.Kvm.Ept.EptEntry.PermissionMask) == 0)
                    return 0;
                if (level == 1 || (entry & Tandem.Kvm.Ept.EptEntry.LargePage) != 0)
                    return entry;
                table = entry & 0x000F_FFFF_FFFF_F000UL;
            }
            return 0;
        }

        private static void PressureMain(ulong arg)
        {
            var p = (Pressure*)arg;
            MmGuestMemory memory = s_pressureMemory!;
            const ulong Step = 1UL << 20;
            ulong faultsBefore = memory.FaultsHandled;
            int step = 0;
            while (Volatile.Read(ref p->StopRequested) == 0)
            {
                for (ulong gpa = 0; gpa < memory.Size && Volatile.Read(ref p->StopRequested) == 0; gpa += Step)
                {
                    // Aging as the reclaim walk does it: the fast-only notifier call (no flush, no
                    // lock a vCPU holds), and every 8th step the exact one that eviction makes.
                    bool exact = (step++ & 7) == 0;
                    VirtAddr start = memory.HostAddress(gpa);
                    // The mm locks are taken with interrupts on: no preemption while one is held,
                    // or a vCPU on this CPU could spin on it with interrupts off (docs/locking.md, 5).
                    Scheduler.PreemptDisable();
                    for (ulong page = 0; page < Step; page += 4096)
                    {
                        if (memory.Space.TranslateFrame(start + page, out Pfn frame) && KernelMm.Manager!.AgeFrame(frame, exact))
                            p->Young++;
                    }
                    int changed = memory.Space.Protect(start, start + Step, PageProt.Read);
                    Scheduler.PreemptEnable();
                    // The secondary MMU is never more permissive than the primary: an EPT leaf
                    // that is writable now (read first) means the primary entry is writable
                    // too, because only this thread takes write access away. A missing zap in
                    // the protect path shows here while the guest keeps writing.
                    for (ulong page = 0; page < Step; page += 4096)
                    {
                        ulong leaf = EptLeaf(memory, gpa + page);
                        if ((leaf & Tandem.Kvm.Ept.EptEntry.Writable) == 0)
                            continue;
                        p->WritableChecked++;
                        if (!memory.Space.Translate(start + page, out PageTableEntry pte, out _) || !pte.IsWritable)
                            p->MorePermissive++;
                    }
                    if (changed > 0)
                        p->Protected += (ulong)changed;
                    // 1 MiB per 2 ms: a pass over 256 MiB takes about half a second of host time.
                    Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 500);
                }
                p->Passes++;
                // Write faults on protected pages come back through the EPT and the primary's
                // write-protect fault: the count of faults handled grows.
                p->Refaults = memory.FaultsHandled - faultsBefore;
            }
            Volatile.Write(ref p->Stopped, 1);
        }
    }
}
