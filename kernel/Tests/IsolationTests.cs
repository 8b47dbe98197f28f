using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Ept;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

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

        /// <summary>Lets two VMs held at a phase run to their ends (A first), reports both, and checks that each exited 0 (<paramref name="failure"/>: what another status means).</summary>
        private static void FinishBoth(TestContext t, Vm a, Vm b, string failure)
        {
            a.PhaseHandler = null;
            b.PhaseHandler = null;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            t.Check(a.ExitStatus == 0, a.StopReason ?? failure, (ulong)a.ExitStatus);
            t.Check(b.ExitStatus == 0, b.StopReason ?? failure, (ulong)b.ExitStatus);
        }

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
            FinishBoth(t, a, b, "a marker check failed (exit status = its number: 2 own count, 3 found the other's)");
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
            ulong code = FuzzCampaign.CodeChecksum(), tables = FuzzCampaign.PageTableChecksum();
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
            t.Check(FuzzCampaign.PageTableChecksum() == tables, "the host's page tables changed");
            WaitForFrames(freeBefore);
            int freeAfter = FuzzCampaign.MmFreeFrames();
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
            ulong code = FuzzCampaign.CodeChecksum(), tables = FuzzCampaign.PageTableChecksum();
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
            t.Check(FuzzCampaign.PageTableChecksum() == tables, "the host's page tables changed");
            vm.Release();
        }

        // --- a VM stopped in the middle of the host's work on its memory -----------------------

        private static int s_churnStop, s_churnDone;
        private static long s_churnSteps, s_churnSwapOuts;
        private static MergeScanner<KernelMmPlatform>? s_churnScanner;
        private static ulong* s_churnFrames;
        private static int s_churnFrameCount;

        /// <summary>
        /// The host's work on a VM's memory, in a kernel thread, until told to stop: merge-scanner
        /// steps and swap-outs of the VM's frames (by frame number, as eviction works, so after
        /// the VM's release they meet freed or reused frames).
        /// </summary>
        private static void Churn(ulong argument)
        {
            MemoryManager<KernelMmPlatform> mm = KernelMm.Manager!;
            int next = s_churnFrameCount / 3;             // from the marker pages on (A's RAM in guest-physical order)
            while (Volatile.Read(ref s_churnStop) == 0)
            {
                Sched.Scheduler.PreemptDisable();
                s_churnScanner!.ScanStep(64);
                Sched.Scheduler.PreemptEnable();
                for (int k = 0; k < 32 && s_churnFrameCount > 0; k++)
                {
                    if (mm.TrySwapOut(new Pfn(s_churnFrames[next])) == SwapOutResult.Evicted)
                        s_churnSwapOuts++;
                    next = (next + 1) % s_churnFrameCount;
                }
                Interlocked.Increment(ref s_churnSteps);
                Sched.Scheduler.Yield();
            }
            Volatile.Write(ref s_churnDone, 1);
        }

        /// <summary>Waits up to a second for the mm core's free frames to reach <paramref name="freeBefore"/> (a teardown another thread holds up finishes a little later).</summary>
        internal static void WaitForFrames(int freeBefore)
        {
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond;
            while (FuzzCampaign.MmFreeFrames() < freeBefore && Native.Rdtsc() < deadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
        }

        /// <summary>
        /// Issue 13 §2: VM A (markerscan32) writes its marker into 16 pages and reads all its 16 MiB,
        /// and is held at phase 2. The host then works on its memory: half its marker pages swapped
        /// out, the rest mapped by a mirror view, and a kernel thread merging (the zero pages) and
        /// swapping out A's frames. A is stopped and released while that thread runs. Then: the view
        /// was released with A's address space, every swap slot and frame came back, and VM B
        /// (markerscan32 again), given A's id as the other's, scans all of its RAM and finds none
        /// of A's markers although it runs on A's old frames (counted: the check would prove nothing
        /// without them). Every page a guest gets is zeroed when it is faulted in; with that zeroing
        /// removed B finds A's markers.
        /// </summary>
        public static void StoppedVmMidReclaimMergeMirrorLeavesNothing(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null || mm.Swap == null)
            {
                t.Skip("swap is off (swap=off on the command line)");
                return;
            }
            // The scanner first: a new one takes its shared zero frame, which is not A's.
            MergeScanner<KernelMmPlatform>? own = KernelReclaim.Scanner == null ? new MergeScanner<KernelMmPlatform>(mm, KernelReclaim.MergeTableSize) : null;
            s_churnScanner = KernelReclaim.Scanner ?? own;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            int slotsBefore = mm.Swap.SlotsInUse;
            Vm? a = VmxTests.Start(t, "markerscan32");
            if (a == null)
                return;
            a.Vcpu!.Registers->Rcx = (ulong)a.Id + 1000;    // an id no VM has: none of "the other's"
            a.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(a.Vcpu!);
            if (!t.Check(a.LastPhase == 2 && !a.Stopped, "VM A did not reach phase 2"))
                return;
            var ma = (MmGuestMemory)a.Memory;
            const ulong pages = 16UL << 20 >> 12;
            s_churnFrames = (ulong*)KernelHeap.Alloc(pages * 8);
            s_churnFrameCount = 0;
            for (ulong p = 0; p < pages; p++)
            {
                if (ma.Space.TranslateFrame(ma.HostAddress(p << 12), out Pfn f))
                    s_churnFrames[s_churnFrameCount++] = f.Value;
            }
            // Half the marker pages to swap, a view over all 16.
            const uint markerBase = 0x60_0000, markerStride = 4096 + 16;
            int swapped = 0;
            for (uint i = 0; i < 16; i += 2)
            {
                if (ma.Space.TranslateFrame(ma.HostAddress(markerBase + i * markerStride), out Pfn f) && mm.TrySwapOut(f) == SwapOutResult.Evicted)
                    swapped++;
            }
            MirrorView<KernelMmPlatform>? view = MirrorView<KernelMmPlatform>.Create(default, ma.Space, ma.Space.Notifiers,
                ma.HostAddress(markerBase & ~0xFFFu), 17);
            if (!t.Check(view != null, "could not register a mirror view on VM A"))
                return;
            uint word = 0;
            for (uint i = 1; i < 16; i += 2)
            {
                Sched.Scheduler.PreemptDisable();
                view!.TryRead(ma.HostAddress(markerBase + i * markerStride), new System.Span<byte>(&word, 4));
                Sched.Scheduler.PreemptEnable();
            }
            long viewMapped = view!.PagesPopulated;
            // The churn runs; A is stopped and released in the middle of it.
            s_churnStop = s_churnDone = 0;
            s_churnSteps = s_churnSwapOuts = 0;
            long zeroMerges = mm.MergeStats.ZeroMerges;
            if (!t.Check(Sched.Scheduler.Spawn("churn", &Churn, 0) != null, "could not start the churn thread"))
                return;
            // A few churn steps first (up to 2 s), so the release meets work under way.
            ulong churnDeadline = Native.Rdtsc() + 2 * Timer.TscPerSecond;
            while (Volatile.Read(ref s_churnSteps) < 4 && Native.Rdtsc() < churnDeadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            long stepsBeforeStop = Volatile.Read(ref s_churnSteps);
            a.Stop(255, "stopped by the test in the middle of reclaim, merge and a mirror");
            a.Release();
            Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 20);
            Volatile.Write(ref s_churnStop, 1);
            while (Volatile.Read(ref s_churnDone) == 0)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            bool viewReleased = view.IsReleased;
            view.Destroy();
            WaitForFrames(freeBefore);
            int slotsAfter = mm.Swap.SlotsInUse;
            int freeAfterA = FuzzCampaign.MmFreeFrames();
            Log.Info($"isolation: VM A stopped mid-work: {(ulong)swapped} marker pages swapped out, {(ulong)viewMapped} mapped by a view, churn {(ulong)s_churnSteps} steps with {(ulong)s_churnSwapOuts} swap-outs and {(ulong)(mm.MergeStats.ZeroMerges - zeroMerges)} zero merges; after its release swap slots {(ulong)slotsAfter} (before {(ulong)slotsBefore}), free frames {(ulong)freeAfterA} (before {(ulong)freeBefore})");
            t.Check(swapped > 0 && viewMapped > 0, "the host's work did not reach VM A's memory (nothing swapped out or mapped by the view)");
            t.Check(stepsBeforeStop >= 4 && s_churnSwapOuts + (mm.MergeStats.ZeroMerges - zeroMerges) > 0,
                "the churn thread did not work on VM A's memory before the stop", (ulong)stepsBeforeStop);
            t.Check(viewReleased, "the mirror view was not released with VM A's address space");
            t.Check(slotsAfter <= slotsBefore, "swap slots of the released VM were not freed", (ulong)(slotsAfter - slotsBefore));
            t.Check(freeAfterA >= freeBefore, "frames of the released VM did not come back", (ulong)(freeBefore - freeAfterA));

            // B scans all its RAM for A's markers, on A's old frames.
            Vm? b = VmxTests.Start(t, "markerscan32");
            if (b == null)
                return;
            b.Vcpu!.Registers->Rcx = (ulong)a.Id;
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(b);
            var mb = (MmGuestMemory)b.Memory;
            int reused = 0;
            for (ulong p = 0; p < pages; p++)
            {
                if (!mb.Space.TranslateFrame(mb.HostAddress(p << 12), out Pfn f))
                    continue;
                for (int k = 0; k < s_churnFrameCount; k++)
                {
                    if (s_churnFrames[k] == f.Value)
                    {
                        reused++;
                        break;
                    }
                }
            }
            Log.Info($"isolation: VM B runs on {(ulong)reused} of VM A's {(ulong)s_churnFrameCount} old frames");
            t.Check(b.ExitStatus == 0, b.StopReason ?? "VM B found VM A's markers (3) or not its own (2)", (ulong)b.ExitStatus);
            t.Check(reused > 0, "VM B got none of VM A's old frames: the check proves nothing here");
            b.Release();
            if (own != null)
                own.ReleaseZeroFrame();                 // refused (nothing freed) while another VM still maps it
            KernelHeap.Free(s_churnFrames);
            s_churnFrames = null;
            s_churnFrameCount = 0;
        }

        /// <summary>
        /// debugregs32 twice on one CPU: each writes DR0-DR3 with values made from its VM id and
        /// checks them at phase 1 and again after the other VM wrote its own (and that they start at
        /// 0, and DR6, DR7, DR4 and the #UD for DR4 under CR4.DE). MOV DR exits and the registers
        /// are kept per vCPU: before that, a VM read what the last one left in the CPU's DR0-DR3.
        /// </summary>
        public static void DebugRegistersAreEachVmsOwn(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? a = VmxTests.Start(t, "debugregs32");
            Vm? b = VmxTests.Start(t, "debugregs32");
            if (a == null || b == null)
                return;
            a.PhaseHandler = &PauseAtPhase;
            b.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);          // A writes its values, pauses at phase 1
            RunLoop.Run(b.Vcpu!);          // B starts from zeros, writes its own, pauses
            if (!t.Check(a.LastPhase == 1 && b.LastPhase == 1 && !a.Stopped && !b.Stopped, "the guests did not both reach phase 1 (the value: the exit status of the one that stopped = the check that failed)", (ulong)(b.Stopped ? b.ExitStatus : a.ExitStatus)))
                return;
            FinishBoth(t, a, b, "a debug-register check failed (exit status = its number)");
            t.Check(a.Vcpu!.DebugRegisterAccesses >= 16 && b.Vcpu!.DebugRegisterAccesses >= 16, "MOV DR did not exit to the host", a.Vcpu!.DebugRegisterAccesses);
            a.Release();
            b.Release();
        }
    }
}
