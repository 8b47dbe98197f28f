using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

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

        private static bool Unavailable(TestContext t)
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

        private static Vm? Start(TestContext t, string module)
        {
            if (!KvmGlue.FindModule(module, out byte* image, out ulong length))
            {
                t.Fail("the guest module is not on the boot image");
                return null;
            }
            Vm? vm = GuestRunner.Create(GuestRam, image, length, out string? problem);
            if (vm == null)
                t.Fail(problem ?? "VM creation failed");
            return vm;
        }

        // --- hello32: exits, demand faults, invalidation while running ---------------------------

        private static Vm? s_hello;
        private static ulong s_faultsBeforeInvalidate;
        private static int s_zapped;

        private static void HelloPhase(Vm vm, ulong phase)
        {
            var memory = (StaticGuestMemory)vm.Memory;
            s_faultsBeforeInvalidate = memory.FaultsHandled;
            // Invalidate every other checksum page while the guest is between filling and verifying.
            for (uint page = 0; page < ChecksumPages; page += 2)
                s_zapped += memory.Invalidate(ChecksumBase + page * 4096UL, ChecksumBase + (page + 1) * 4096UL);
        }

        private static Vm? Hello(TestContext t)
        {
            if (s_hello != null)
                return s_hello;
            Vm? vm = Start(t, "hello32");
            if (vm == null)
                return null;
            vm.PhaseHandler = &HelloPhase;
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

        public static void CpuidIoHltExitsSeen(TestContext t)
        {
            if (Unavailable(t))
                return;
            Vm? vm = Hello(t);
            if (vm == null)
                return;
            Vcpu v = vm.Vcpu!;
            t.Check(v.ExitCount(Tandem.Arch.X86.ExitReason.Cpuid) >= 1, "no CPUID exit");
            t.Check(v.ExitCount(Tandem.Arch.X86.ExitReason.Hlt) >= 1, "no HLT exit");
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
            var memory = (StaticGuestMemory)vm.Memory;
            if (!t.Check(s_zapped == (int)ChecksumPages / 2, "not every other checksum page was mapped and zapped"))
                return;
            ulong refaults = memory.FaultsHandled - s_faultsBeforeInvalidate;
            if (refaults != (ulong)s_zapped)
                t.Fail("invalidated pages did not fault back in exactly once each", refaults);
            t.Check(memory.DirtyPagesSeen >= (ulong)s_zapped, "the zapped pages the guest wrote did not carry the dirty bit");
            t.Check(vm.ExitStatus == 0, "the guest's checksums did not verify after the invalidation");
        }

        // --- aging64: accessed bits set by the hardware ------------------------------------------

        private static int s_agingFailures;
        private static string? s_agingProblem;

        private static void AgingPhase(Vm vm, ulong phase)
        {
            var memory = (StaticGuestMemory)vm.Memory;
            ulong hotEnd = HotBase + HotPages * 4096UL, coldEnd = ColdBase + ColdPages * 4096UL;
            switch (phase)
            {
                case 1:
                    // The cold set was just written: it must be young; then forget all of it.
                    if (memory.ClearYoung(ColdBase, coldEnd) != (int)ColdPages)
                        Fail("the cold set was not young after the guest wrote it");
                    memory.ClearYoung(HotBase, hotEnd);
                    break;
                case 2:
                    for (uint i = 0; i < HotPages; i++)
                    {
                        if (!memory.TestYoung(HotBase + i * 4096UL))
                            Fail("a hot page is not young after the guest read it");
                    }
                    for (uint i = 0; i < ColdPages; i++)
                    {
                        if (memory.TestYoung(ColdBase + i * 4096UL))
                            Fail("a cold page is young although the guest did not touch it");
                    }
                    if (memory.ClearYoung(HotBase, hotEnd) != (int)HotPages)
                        Fail("clearing young did not find every hot page young");
                    break;
                case 3:
                    for (uint i = 0; i < HotPages; i++)
                    {
                        if (!memory.TestYoung(HotBase + i * 4096UL))
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
            var ma = (StaticGuestMemory)a.Memory;
            var mb = (StaticGuestMemory)b.Memory;
            t.Check(ma.HostPhysical(0x50_0000) != mb.HostPhysical(0x50_0000), "the two VMs share host frames");
        }
    }
}
