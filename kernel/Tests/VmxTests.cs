using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// VT-x for real (these run under Bochs tigerlake; without VT-x each reports SKIP with the reason).
    /// The guests are the generated test images (tools/StubGen/Guests) shipped as GRUB modules.
    /// </summary>
    internal static unsafe class VmxTests
    {
        private const ulong GuestRam = 16UL << 20;
        private const uint ChecksumBase = 0x20_0000, ChecksumPages = 64;
        private const uint HotBase = 0x30_0000, HotPages = 16, ColdBase = 0x40_0000, ColdPages = 32;

        internal static bool Unavailable(TestContext t)
        {
            var f = KernelMain.Features;
            if (!f.Vmx)
            {
                t.Skip("no VT-x on this CPU (QEMU's software CPU has none; Bochs tigerlake or a VT-x host has it)");
                return true;
            }
            if (!f.Ept || !f.UnrestrictedGuest)
            {
                t.Skip("VT-x without EPT or unrestricted guest");
                return true;
            }
            return false;
        }

        internal static Vm? Start(TestContext t, string module, int cpus = 1)
        {
            if (!KvmGlue.FindModule(module, out byte* image, out ulong length))
            {
                t.Fail("the guest module is not on the boot image");
                return null;
            }
            Vm? vm = GuestRunner.Create(GuestRam, image, length, out string? problem, cpus: cpus);
            if (vm == null)
                t.Fail(problem ?? "VM creation failed");
            return vm;
        }

        public static void EnabledOnEveryCpu(TestContext t)
        {
            if (Unavailable(t))
                return;
            if (KvmGlue.VmxCpus != Cpu.Count)
                t.Fail(KvmGlue.VmxProblem ?? "VMXON did not succeed on every CPU", (ulong)KvmGlue.VmxCpus);
        }

        // --- hello32: exits, demand faults, invalidation while running ---------------------------

        private static Vm? s_hello;
        private static ulong s_eptMaskBeforeRun;
        private static ulong s_faultsBeforeInvalidate;
        private static long s_inveptsForInvalidate;
        private static int s_protected;
        private static int s_dirtyAfterInvalidate;

        /// <summary>
        /// Between filling and verifying, the host write-protects the whole checksum range in the
        /// primary MMU (as KSM or dirty logging would). The notifier must zap the EPT leaves (one
        /// INVEPT for the range) and carry their dirty bits to the frames; the guest's reads then
        /// fault the pages back in.
        /// </summary>
        private static void HelloPhase(Vm vm, ulong phase)
        {
            var memory = (MmGuestMemory)vm.Memory;
            s_faultsBeforeInvalidate = memory.FaultsHandled;
            long invepts = KernelEptPlatform.Invepts;
            VirtAddr start = memory.HostAddress(ChecksumBase);
            s_protected = memory.Space.Protect(start, start + ChecksumPages * 4096UL, PageProt.Read);
            s_inveptsForInvalidate = KernelEptPlatform.Invepts - invepts;
            for (uint page = 0; page < ChecksumPages; page++)
            {
                if (memory.Space.TranslateFrame(start + page * 4096UL, out Pfn frame) &&
                    (KernelMm.Manager!.Frames.FlagsOf(frame) & FrameFlags.Dirty) != 0)
                    s_dirtyAfterInvalidate++;
            }
        }

        private static Vm? Hello(TestContext t)
        {
            if (s_hello != null)
                return s_hello;
            Vm? vm = Start(t, "hello32");
            if (vm == null)
                return null;
            vm.PhaseHandler = &HelloPhase;
            s_eptMaskBeforeRun = ((MmGuestMemory)vm.Memory).Ept.CpuMask;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            s_hello = vm;
            return vm;
        }

        public static void GuestRunsToExitStatus(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            if (vm.ExitStatus != 0)
                t.Fail("the guest did not exit with status 0", (ulong)vm.ExitStatus);
        }

        /// <summary>
        /// Issue 7, defect 6: the CPU that enters the guest must be in the EPT's CPU mask before the
        /// entry, or a remote INVEPT skips it. Creating the VM activates nothing; the run loop does,
        /// on the CPU where it runs.
        /// </summary>
        public static void EptMaskSetByTheRunLoop(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            ulong mask = ((MmGuestMemory)vm.Memory).Ept.CpuMask;
            t.Check(s_eptMaskBeforeRun == 0, "the EPT was marked active on a CPU before any vCPU ran");
            t.Check((mask & (1UL << Cpu.CurrentIndex)) != 0, "the run loop entered the guest without adding its CPU to the EPT mask");
        }

        public static void CpuidIoExitsSeen(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            Vcpu v = vm.Vcpu!;
            t.Check(v.ExitCount(Tandem.Arch.X86.ExitReason.Cpuid) >= 1, "no CPUID exit");
            t.Check(v.ExitCount(Tandem.Arch.X86.ExitReason.IoInstruction) >= 3, "too few I/O exits");
        }

        public static void EptDemandFaults(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            // The image page and the 64 checksum pages were all absent until the guest touched them.
            if (s_faultsBeforeInvalidate < ChecksumPages + 1)
                t.Fail("fewer EPT faults than pages the guest touched", s_faultsBeforeInvalidate);
        }

        public static void InvalidateWhileRunning(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            var memory = (MmGuestMemory)vm.Memory;
            if (!t.Check(s_protected == (int)ChecksumPages, "the primary MMU did not write-protect every checksum page"))
                return;
            if (s_inveptsForInvalidate != 1)
                t.Fail("expected exactly one INVEPT for the invalidated range", (ulong)s_inveptsForInvalidate);
            ulong refaults = memory.FaultsHandled - s_faultsBeforeInvalidate;
            if (refaults != ChecksumPages)
                t.Fail("invalidated pages did not fault back in exactly once each", refaults);
            if (s_dirtyAfterInvalidate != (int)ChecksumPages)
                t.Fail("the zapped EPT leaves' dirty bits did not reach every frame", (ulong)s_dirtyAfterInvalidate);
            t.Check(vm.ExitStatus == 0, "the guest's checksums did not verify after the invalidation");
        }

        // --- aging64: accessed bits set by the hardware ------------------------------------------

        private static int s_agingFailures;
        private static string? s_agingProblem;

        /// <summary>Ages the frames behind [gpa, gpa + pages) through the reverse map (primary and EPT); returns how many were young.</summary>
        private static int AgeRange(MmGuestMemory memory, uint gpa, uint pages)
        {
            int young = 0;
            for (uint i = 0; i < pages; i++)
            {
                if (memory.Space.TranslateFrame(memory.HostAddress(gpa + i * 4096UL), out Pfn frame) &&
                    KernelMm.Manager!.AgeFrame(frame, exact: true))
                    young++;
            }
            return young;
        }

        /// <summary>Young as the design defines it: the primary accessed bit OR every secondary MMU's.</summary>
        private static bool Young(MmGuestMemory memory, ulong gpa) => memory.Space.TestYoung(memory.HostAddress(gpa));

        private static void AgingPhase(Vm vm, ulong phase)
        {
            var memory = (MmGuestMemory)vm.Memory;
            switch (phase)
            {
                case 1:
                    // The cold set was just written: it must be young; then forget all of it.
                    if (AgeRange(memory, ColdBase, ColdPages) != (int)ColdPages)
                        Fail("the cold set was not young after the guest wrote it");
                    break;
                case 2:
                    for (uint i = 0; i < HotPages; i++)
                    {
                        if (!Young(memory, HotBase + i * 4096UL))
                            Fail("a hot page is not young after the guest read it");
                    }
                    for (uint i = 0; i < ColdPages; i++)
                    {
                        if (Young(memory, ColdBase + i * 4096UL))
                            Fail("a cold page is young although the guest did not touch it since it was aged");
                    }
                    if (AgeRange(memory, HotBase, HotPages) != (int)HotPages)
                        Fail("aging did not find every hot page young");
                    for (uint i = 0; i < HotPages; i++)
                    {
                        if (Young(memory, HotBase + i * 4096UL))
                            Fail("a hot page is still young right after it was aged");
                    }
                    break;
                case 3:
                    for (uint i = 0; i < HotPages; i++)
                    {
                        if (!Young(memory, HotBase + i * 4096UL))
                            Fail("a hot page did not become young again after being touched again");
                    }
                    break;
            }
        }

        private static void Fail(string problem)
        {
            s_agingFailures++;
            s_agingProblem ??= problem;
        }

        public static void AgingHotYoungColdOld(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "aging64");
            if (vm == null)
                return;
            vm.PhaseHandler = &AgingPhase;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            if (s_agingProblem != null)
                t.Fail(s_agingProblem);
            else if (vm.LastPhase != 3 || vm.ExitStatus != 0)
                t.Fail("the aging guest did not reach phase 3 and exit 0", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.Vmcall) == 1, "no VMCALL exit");
            t.Check(vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.Rdmsr) == 1, "no RDMSR exit");
        }

        // --- 2 MiB pages: primary 2 MiB mappings give 2 MiB EPT leaves ------------------------------

        public static void HugePagesBackGuestRam(TestContext t)
        {
            if (Unavailable(t))
                return;
            if (!KvmGlue.FindModule("hello32", out byte* image, out ulong length))
            {
                t.Fail("the guest module is not on the boot image");
                return;
            }
            Vm? vm = GuestRunner.Create(GuestRam, image, length, out string? problem, hugeBacked: true);
            if (vm == null)
            {
                t.Fail(problem ?? "VM creation failed");
                return;
            }
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            if (!t.Check(vm.ExitStatus == 0, "the guest on 2 MiB-backed RAM did not exit 0"))
                return;
            // 65 pages touched in two 2 MiB ranges (the image at 1 MiB, the checksum area at 2 MiB):
            // with 2 MiB leaves that is two EPT faults, with 4 KiB leaves it would be 65.
            if (vm.Memory.FaultsHandled > 2)
                t.Fail("EPT faulted more than once per 2 MiB range: not using 2 MiB leaves", vm.Memory.FaultsHandled);
        }

        // --- hostile guests: the VM stops, the host keeps running --------------------------------

        public static void TripleFaultStopsOnlyTheVm(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "crash32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 255 && vm.StopReason != null, "the crashing guest was not stopped by the host");
            t.Check(vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.TripleFault) == 1, "no triple-fault exit");
        }

        public static void RunawayGuestStopped(TestContext t)
        {
            if (Unavailable(t))
                return;
            if (!KernelMain.Features.PreemptionTimer)
            {
                t.Skip("no VMX-preemption timer on this CPU");
                return;
            }
            Vm? vm = Start(t, "spin32");
            if (vm == null)
                return;
            vm.MaxQuanta = 3;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 255 && vm.StopReason != null, "the spinning guest was not stopped");
            // The budget is time: three budget units of it end at the preemption-timer exit that
            // crosses them (one exit per 1 ms scheduling quantum; one more if a timer fired early).
            ulong quanta = vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.PreemptionTimer);
            ulong expected = 3UL * VmcsSetup.BudgetQuantum / VmcsSetup.PreemptionQuantum;
            t.Check(quanta >= expected && quanta <= expected + 2, "the preemption timer did not fire once per quantum until the budget was spent", quanta);
        }

        // --- timer32: PIC, PIT, interrupt injection, blocking HLT --------------------------------

        private const uint TimerTicks = 20;

        public static void PitInterruptsWakeHlt(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "timer32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            Vcpu v = vm.Vcpu!;
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "the timer guest did not count its interrupts and exit 0", (ulong)vm.ExitStatus);
            t.Check(vm.Platform.Pit.Irqs >= TimerTicks, "the PIT raised fewer IRQ 0 edges than the guest counted", vm.Platform.Pit.Irqs);
            t.Check(v.Injected >= TimerTicks, "fewer interrupts injected than the guest counted", v.Injected);
            t.Check(vm.Platform.Pic.Acknowledged == v.Injected, "PIC acknowledges and injections differ", vm.Platform.Pic.Acknowledged);
            t.Check(v.Halts >= TimerTicks / 2, "HLT did not block until the timer woke the vCPU", v.Halts);
            // The first delivery pushes onto a stack page the EPT does not map yet: that exit
            // interrupts the delivery, and the interrupt must be delivered again, not lost.
            t.Check(v.Reinjected >= 1, "no event was re-injected after an exit during its delivery", v.Reinjected);
        }

        public static void DevicesAnswerTheGuest(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "devices32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // The guest exits with the number of the first check that failed (see TestGuests.Devices32).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a device check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
        }

        /// <summary>tests/guests/mbtest: a multiboot ELF kernel built with gcc, linked at 4 MiB.</summary>
        public static void MultibootKernelBuiltWithGccRuns(TestContext t) => RunMbtest(t, 1);

        /// <summary>mbtest with 2 vCPUs: the C kernel starts its AP with INIT-SIPI-SIPI from its own real-mode trampoline.</summary>
        public static void MultibootKernelStartsItsAps(TestContext t) => RunMbtest(t, 2);

        private static void RunMbtest(TestContext t, int cpus)
        {
            if (Unavailable(t))
                return;
            // As vm=mbtest,mem=16M,cpus=N,cmdline="hello from the command line",fwcfg=opt/tandem/greeting:mbtest-greeting.
            CommandLine.VmSpec spec = default;
            spec.Module = Ascii("mbtest", out spec.ModuleLength);
            spec.MemoryMiB = GuestRam >> 20;
            spec.Cpus = cpus;
            spec.Cmdline = Ascii("hello from the command line", out spec.CmdlineLength);
            spec.FwCfgFiles = Ascii("opt/tandem/greeting:mbtest-greeting", out spec.FwCfgFilesLength);
            Vm? vm = GuestRunner.CreateFromSpec(ref spec);
            if (vm == null)
            {
                t.Fail("the mbtest VM could not be created (see the lines above)");
                return;
            }
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            // mbtest exits with the number of the first check that failed (tests/guests/mbtest/mbtest.c).
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a check in the multiboot kernel failed (exit status = its number)", (ulong)vm.ExitStatus))
                return;
            for (int i = 1; i < cpus; i++)
                t.Check(vm.Vcpus[i].Started, "an AP of mbtest never started", (ulong)i);
        }

        /// <summary>A NUL-terminated copy of <paramref name="s"/> on the kernel heap (kept: a VM may point at it).</summary>
        private static byte* Ascii(string s, out int length)
        {
            byte* p = (byte*)Tandem.Kernel.Memory.KernelHeap.Alloc((ulong)s.Length + 1);
            for (int i = 0; i < s.Length; i++)
                p[i] = (byte)s[i];
            p[s.Length] = 0;
            length = s.Length;
            return p;
        }

        public static void MmioFormsEmulated(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "mmio64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // mmio64 exits with the number of the first check that failed (TestGuests.Mmio64).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an MMIO check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.MmioExits >= 20, "too few MMIO exits for the forms the guest used", vm.Vcpu!.MmioExits);
            t.Check(vm.Platform.Scratch.Writes > 0 && vm.Platform.Scratch.Reads > 0, "the MMIO test page saw no access");
        }

        /// <summary>
        /// cr4hidden32: CPUID shows neither XSAVE nor PKU, and a MOV to CR4 that sets OSXSAVE or PKE
        /// gets #GP (the host switches neither XCR0 and the AVX registers nor PKRU, so a guest that
        /// set them would share that state with every other VM on its CPU); a bit the guest owns is
        /// still set. Exit status = the number of the first failed check.
        /// </summary>
        public static void Cr4BitsOfUnswitchedStateRefused(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "cr4hidden32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a CR4 check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.CrAccess) >= 2, "the MOVs to CR4 that set OSXSAVE and PKE did not exit", vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.CrAccess));
            vm.Release();
        }

        public static void UnknownMsrRaisesGpInTheGuest(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "msr32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // msr32 exits with the number of the first check that failed (TestGuests.Msr32).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an MSR check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.MsrFaults == 4, "the host did not inject exactly the four #GPs the guest expects", vm.Vcpu!.MsrFaults);
            t.Check(vm.Vcpu!.InstructionFaults == 1, "RDPMC did not exit to the host, which injects #GP", vm.Vcpu!.InstructionFaults);
        }

        /// <summary>
        /// vmxinsn32: VMXON, VMXOFF, VMREAD, VMWRITE, VMPTRST, INVEPT, MONITOR and MWAIT in a guest
        /// raise #UD in it (the guest counts them, check number = exit status), and its VM goes on.
        /// </summary>
        public static void VmxInstructionsRaiseUdInTheGuest(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "vmxinsn32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an instruction did not raise #UD in the guest (exit status = its check)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.InstructionFaults == 8, "the host did not inject exactly the eight #UDs the guest expects", vm.Vcpu!.InstructionFaults);
        }

        /// <summary>
        /// tsc64: a guest's TSC starts at 0 when its VM is made (the host's TSC, its uptime, stays
        /// its own): the first value the guest reads is below the host time since the VM was made.
        /// </summary>
        public static void GuestTscStartsAtZero(TestContext t)
        {
            if (Unavailable(t))
                return;
            ulong before = Tandem.Arch.X86.Native.Rdtsc();
            Vm? vm = Start(t, "tsc64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            ulong elapsed = Tandem.Arch.X86.Native.Rdtsc() - before;
            GuestRunner.Report(vm);
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "the tsc guest did not exit 0", (ulong)vm.ExitStatus))
                return;
            ulong guestTsc = 0;
            vm.Memory.Read(0x7300, (byte*)&guestTsc, 8);
            if (!t.Check(vm.Vcpu!.TscOffsetting, "no TSC offsetting on this CPU: the guest reads the host's TSC"))
                return;
            t.Check(guestTsc < elapsed, "the guest's first TSC is above the host time since its VM was made (it sees the host's TSC)", guestTsc);
        }

        /// <summary>cpuidmax64: basic CPUID leaves above the maximum answer like the maximum (never the host's raw answer).</summary>
        public static void CpuidAboveTheMaximumAnswersLikeTheTopLeaf(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "cpuidmax64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a leaf above the maximum answered otherwise than the maximum leaf (exit status = check)", (ulong)vm.ExitStatus);
        }

        /// <summary>
        /// cr8_64: a 64-bit guest's MOV to and from CR8 reach its virtual APIC's task priority, never
        /// the host CPU's own (which would let a guest mask the host's timer and IPIs on that CPU).
        /// </summary>
        public static void Cr8ReachesTheVirtualApicOnly(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "cr8_64");
            if (vm == null)
                return;
            uint hostTpr = Tandem.Arch.X86.Lapic.TaskPriority;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            uint hostAfter = Tandem.Arch.X86.Lapic.TaskPriority;
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "the guest read back another CR8 value than it wrote (exit status = check)", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(hostAfter == hostTpr, "the guest's CR8 write reached the host APIC's task priority", hostAfter))
                return;
            t.Check(vm.Platform.Lapics[0].TaskPriority == 0x90, "the VM's virtual APIC does not hold the task priority the guest wrote", vm.Platform.Lapics[0].TaskPriority);
        }

        /// <summary>strio32: rep outsb to COM1, rep insb and insw (DF set) from fw_cfg, rep outsw with an FS override, all emulated.</summary>
        public static void StringPortIoEmulated(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "strio32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // strio32 exits with the number of the first check that failed (TestGuests.StringIo32).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a string port I/O check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
        }

        /// <summary>
        /// reset32 resets its machine through the i8042 at every boot. With reset=restart the runner
        /// makes the VM anew and starts it again, here at most twice: three boots, two restarts,
        /// and the third reset ends the VM with status 0.
        /// </summary>
        public static void ResetRestartsTheVm(TestContext t)
        {
            if (Unavailable(t))
                return;
            CommandLine.VmSpec* spec = stackalloc CommandLine.VmSpec[1];
            spec[0] = default;
            spec[0].Module = Ascii("reset32", out spec[0].ModuleLength);
            spec[0].MemoryMiB = GuestRam >> 20;
            spec[0].Cpus = 1;
            spec[0].RestartOnReset = true;
            spec[0].MaxRestarts = 2;
            int worst = GuestRunner.RunSpecs(spec, 1);
            if (!t.Check(GuestRunner.LastRestarts == 2, "the VM was not restarted exactly twice", (ulong)GuestRunner.LastRestarts))
                return;
            t.Check(worst == 0, "the VM did not end with status 0 after its last reset", (ulong)worst);
        }

        public static void ApicTimerAndIoApicRouting(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "apic32");
            if (vm == null)
                return;
            vm.MaxQuanta = 200;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // apic32 exits with the number of the first check that failed (TestGuests.Apic32).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an APIC check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Platform.Lapic.TimerInterrupts >= 10, "the local APIC timer fired fewer than 10 times", vm.Platform.Lapic.TimerInterrupts);
            t.Check(vm.Platform.IoApic.Deliveries >= 5, "the IOAPIC delivered fewer than 5 interrupts", vm.Platform.IoApic.Deliveries);
        }

        public static void UartReceiveRaisesIrq4(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "uart32");
            if (vm == null)
                return;
            vm.MaxQuanta = 200;
            vm.Platform.Com1.Receive((byte)'T');            // what the host console would hand over
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // uart32 exits with the number of the first check that failed (TestGuests.Uart32).
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a UART check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
        }

        public static void AcpiS5PowersTheVmOff(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "s5_32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            // s5_32 exits 1 if it found no RSDP, 2 if its S5 write did not end the VM.
            t.Check(vm.ExitStatus == 0 && vm.StopReason == null && vm.Platform.Pm.PowerOffRequested,
                vm.StopReason ?? "the guest's ACPI S5 did not power the VM off (exit status = the failed check)", (ulong)vm.ExitStatus);
        }

        public static void HaltWithInterruptsOffStopsTheVm(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Start(t, "halt32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 255 && vm.StopReason != null, "cli; hlt did not stop the VM with a reason", (ulong)vm.ExitStatus);
        }

        // --- isolate32 twice: two VMs alive at once ---------------------------------------------

        private static void PauseAtPhase(Vm vm, ulong phase) => vm.PauseRequested = true;

        public static void TwoVmsIsolated(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? a = Start(t, "isolate32");
            Vm? b = Start(t, "isolate32");
            if (a == null || b == null)
                return;
            a.PhaseHandler = &PauseAtPhase;
            b.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);          // A fills its pages with its id, pauses at phase 1
            RunLoop.Run(b.Vcpu!);          // B does the same with its own id
            if (!t.Check(a.LastPhase == 1 && b.LastPhase == 1 && !a.Stopped && !b.Stopped, "the guests did not both reach phase 1"))
                return;
            a.PhaseHandler = null;
            b.PhaseHandler = null;
            RunLoop.Run(a.Vcpu!);          // A verifies its memory holds only its id
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            t.Check(a.ExitStatus == 0 && b.ExitStatus == 0, "a guest saw the other guest's data");
            var ma = (MmGuestMemory)a.Memory;
            var mb = (MmGuestMemory)b.Memory;
            bool mappedA = ma.Space.TranslateFrame(ma.HostAddress(0x50_0000), out Pfn fa);
            bool mappedB = mb.Space.TranslateFrame(mb.HostAddress(0x50_0000), out Pfn fb);
            t.Check(mappedA && mappedB && fa.Value != fb.Value, "the two VMs share host frames");
        }

        // --- VPIDs -------------------------------------------------------------------------------

        /// <summary>
        /// A live vCPU keeps its VPID and its slot while 300 other VMs are made and released (the
        /// old counter indexed by its low 8 bits gave the 256th one the live vCPU's slot, and a
        /// wrapped counter its VPID). Then the live one runs, and its release runs INVVPID on every
        /// CPU it used and gives every VPID back.
        /// </summary>
        public static void VpidsStayDistinctPast256Vcpus(TestContext t)
        {
            if (Unavailable(t))
                return;
            int before = Vcpu.VpidsInUse();
            Vm? a = Start(t, "crash32");
            if (a == null)
                return;
            Vcpu live = a.Vcpu!;
            for (int i = 0; i < 300; i++)
            {
                Vm? b = Start(t, "crash32");
                if (b == null)
                    break;
                ushort other = b.Vcpu!.Vpid;
                b.Release();
                if (!t.Check(other != live.Vpid && other != 0, "a new vCPU got the live vCPU's VPID (or VPID 0)", other) ||
                    !t.Check(Vcpu.FromVpid(live.Vpid) == live, "the live vCPU lost its VPID slot to a newer vCPU", (ulong)i))
                    break;
            }
            RunLoop.Run(live);
            t.Check(live.ExitCount(Tandem.Arch.X86.ExitReason.TripleFault) == 1, "the live vCPU did not run to its triple fault after the others");
            ulong used = live.CpusUsed;
            a.Release();
            t.Check(used != 0 && live.VpidInvalidations == (ulong)System.Numerics.BitOperations.PopCount(used),
                "the release did not run INVVPID once on every CPU the vCPU used", live.VpidInvalidations);
            t.Check(Vcpu.VpidsInUse() == before, "VPIDs were not all given back", (ulong)Vcpu.VpidsInUse());
        }
    }
}
