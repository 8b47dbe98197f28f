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
        /// <summary>hostpages32's pattern (tools/StubGen/Guests/HostPagesGuest.cs): four dwords, the n-th this + n.</summary>
        private const uint HostPagesPattern = 0x7A5E_D000;

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

        /// <summary>
        /// hostpages32 gets the host-physical addresses of its own VMCS, EPT root, register page and
        /// the frame behind its guest-physical 0, and writes a 16-byte pattern at each (and at its
        /// page's start) as the only thing a guest can: a guest-physical address. Its own RAM or
        /// nothing answers (the guest checks what it reads back); no host page holds the pattern
        /// afterwards; the VM then runs on to exit 0 (its VMCS and EPT still work); the kernel's
        /// code is unchanged. An address in the guest's own code or stack page is skipped by the guest.
        /// </summary>
        public static void GuestCannotReachHostPagesByTheirAddresses(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            ulong code = FuzzCampaign.CodeChecksum();
            Vm? vm = VmxTests.Start(t, "hostpages32");
            if (vm == null)
                return;
            var memory = (MmGuestMemory)vm.Memory;
            Vcpu v = vm.Vcpu!;
            byte first = 0;
            memory.Read(0, &first, 1);                      // makes guest-physical 0 resident
            memory.Space.TranslateFrame(memory.HostAddress(0), out Tandem.Mm.Pfn frame0);
            ulong* targets = stackalloc ulong[4];
            targets[0] = v.VmcsPhysical;
            targets[1] = memory.Ept.Root.Value;
            targets[2] = (ulong)v.Registers;
            targets[3] = frame0.Address.Value;
            for (int i = 0; i < 4; i++)
            {
                if (targets[i] >= 1UL << 32)
                {
                    t.Skip("a host page is above 4 GiB, out of a 32-bit guest's reach");
                    vm.Release();
                    return;
                }
            }
            v.Registers->Rcx = targets[0];
            v.Registers->Rdx = targets[1];
            v.Registers->Rsi = targets[2];
            v.Registers->Rdi = targets[3];
            vm.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(v);
            if (!t.Check(vm.LastPhase == 1 && !vm.Stopped, vm.StopReason ?? "the guest did not reach phase 1 (exit status = 1 + the index of the address that read back wrong)", (ulong)vm.ExitStatus))
            {
                GuestRunner.Report(vm);
                vm.Release();
                return;
            }
            for (int i = 0; i < 4; i++)
            {
                uint* page = (uint*)(targets[i] & ~0xFFFUL);
                uint* at = (uint*)(targets[i] & ~0xFUL);
                for (int pass = 0; pass < 2; pass++)
                {
                    uint* p = pass == 0 ? page : at;
                    bool pattern = true;
                    for (uint k = 0; k < 4; k++)
                        pattern &= p[k] == HostPagesPattern + k;
                    t.Check(!pattern, "a host page holds what the guest wrote at its address", targets[i]);
                }
            }
            vm.PhaseHandler = null;
            RunLoop.Run(v);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "the guest did not run on to exit 0 after the host looked", (ulong)vm.ExitStatus);
            t.Check(FuzzCampaign.CodeChecksum() == code, "the kernel's code changed");
            vm.Release();
        }
    }
}
