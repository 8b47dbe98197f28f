using Tandem.Arch.X86;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Ept;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>A hostile guest's reach (issue 13): a guest's user programs cannot call the host, and one VM cannot find another's memory.</summary>
    internal static unsafe class IsolationTests
    {
        /// <summary>
        /// ring3vmcall64: VMCALL ping at ring 0 returns 0; at ring 3 (after SYSRETQ) ping and yield
        /// each return -2 and do nothing (guest exit status = the number of the check that failed),
        /// and the host counted exactly those two refusals (Vcpu.RefusedHypercalls).
        /// </summary>
        public static void VmcallFromRing3IsRefused(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "ring3vmcall64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a VMCALL check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus))
                return;
            t.Check(vm.Vcpu!.RefusedHypercalls == 2, "the host did not refuse exactly the two ring-3 VMCALLs", vm.Vcpu!.RefusedHypercalls);
            vm.Release();
        }

        private static void PauseAtPhase(Vm vm, ulong phase) => vm.PauseRequested = true;

        /// <summary>
        /// markerscan32 twice: each VM writes a marker made from its id into 16 pages, then scans all
        /// its RAM for its own marker (exactly 16 must be found: the scan works) and the other VM's
        /// (none). Both write before either scans, and each scans while the other is alive with its
        /// markers resident (phases 1 and 2 pause them). Exit status = the number of the check that failed.
        /// </summary>
        public static void TwoVmsCannotFindEachOthersMarkers(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? a = VmxTests.Start(t, "markerscan32");
            Vm? b = VmxTests.Start(t, "markerscan32");
            if (a == null || b == null)
                return;
            a.Vcpu!.Registers->Rcx = (ulong)b.Id;          // ebx = its own id (GuestRunner), ecx = the other's
            b.Vcpu!.Registers->Rcx = (ulong)a.Id;
            a.PhaseHandler = &PauseAtPhase;
            b.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);          // A writes its markers, pauses at phase 1
            RunLoop.Run(b.Vcpu!);          // B writes its own
            if (!t.Check(a.LastPhase == 1 && b.LastPhase == 1 && !a.Stopped && !b.Stopped, "the guests did not both reach phase 1"))
                return;
            RunLoop.Run(a.Vcpu!);          // A scans while B's markers are resident, pauses at phase 2
            RunLoop.Run(b.Vcpu!);          // B scans while A's are
            if (!t.Check(a.LastPhase == 2 && b.LastPhase == 2 && !a.Stopped && !b.Stopped, "the guests did not both finish their scans (phase 2)"))
                return;
            a.PhaseHandler = null;
            b.PhaseHandler = null;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            t.Check(a.ExitStatus == 0, a.StopReason ?? "VM A: a marker check failed (exit status = its number: 2 own count, 3 found the other's)", (ulong)a.ExitStatus);
            t.Check(b.ExitStatus == 0, b.StopReason ?? "VM B: a marker check failed (exit status = its number: 2 own count, 3 found the other's)", (ulong)b.ExitStatus);
            a.Release();
            b.Release();
        }

        /// <summary>
        /// unassigned32 writes and reads outside its 16 MiB of RAM, every 4 MiB up to 4 GiB (the
        /// device window left out), across the end of RAM and across page boundaries: every read
        /// gives all ones, no write lands anywhere, and the guest runs on to its verdict (exit status
        /// = the number of the check that failed). The host checks that the accesses were counted as
        /// unassigned, that its EPT maps nothing outside RAM, that its own code is unchanged, and that
        /// every frame comes back when the VM is released.
        /// </summary>
        public static void UnassignedAddressesReadOnesAndDropWrites(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            ulong code = FuzzCampaign.CodeChecksum();
            Vm? vm = VmxTests.Start(t, "unassigned32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an unassigned-access check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus);
            // Bus accesses to unassigned addresses: samples from 16 MiB to 4 GiB every 4 MiB, less
            // the one in the device window: 1019, each a dword and a byte written and read (4) and
            // a page-crossing dword written and read a byte at a time (8); the dword across the end
            // of RAM, its two bytes past it written and read (4); the last dword below 4 GiB (2).
            const ulong expected = 1019 * 12 + 4 + 2;
            t.Check(vm.UnassignedAccesses == expected && vm.Vcpu!.UnassignedAccesses == expected,
                "the host did not count exactly the guest's unassigned accesses", vm.UnassignedAccesses);
            var memory = (MmGuestMemory)vm.Memory;
            int mapped = 0;
            foreach (EptSlot s in new EptWalker<KernelEptPlatform>(memory.Ept.Platform, memory.Ept.Root, new GuestPhysAddr(memory.Size), new GuestPhysAddr(1UL << 32)))
                mapped++;
            t.Check(mapped == 0, "the EPT maps guest-physical pages outside RAM", (ulong)mapped);
            vm.Release();
            t.Check(FuzzCampaign.CodeChecksum() == code, "the kernel's code changed");
            int freeAfter = FuzzCampaign.MmFreeFrames();
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond;
            while (freeAfter < freeBefore && Native.Rdtsc() < deadline)
            {
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
                freeAfter = FuzzCampaign.MmFreeFrames();
            }
            t.Check(freeAfter >= freeBefore, "frames of the released VM did not come back", (ulong)(freeBefore - freeAfter));
        }
    }
}
