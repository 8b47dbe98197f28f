using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>Issue 11 on Bochs: guests running with more memory than the host lets them keep resident.</summary>
    internal static unsafe class ReclaimTests
    {
        // tools/StubGen/Guests/SwapFillGuest.cs: 28 MiB of pages, the VM needs 32 MiB.
        private const ulong FillBytes = 7168UL * 4096;
        private const ulong GuestMiB = 32;

        /// <summary>
        /// swapfill32 fills 28 MiB with checksummed pages and reads them back twice while the host
        /// lets guest memory keep only 14 MiB resident (half of it): pages are aged, compressed into
        /// the swap pool, evicted through the EPT and the primary MMU, and faulted back in through
        /// EPT violations. The guest checks every word (exit 1 at the first wrong one); the host
        /// checks that evictions, swap-outs and swap-ins happened and prints the counters, with the
        /// compression ratio.
        /// </summary>
        public static void GuestFillsTwiceItsLimit(TestContext t) => FillTwiceTheLimit(t, huge: false);

        /// <summary>
        /// As <see cref="GuestFillsTwiceItsLimit"/> with the guest's RAM backed by tracked 2 MiB
        /// pages (<c>thp=on</c>'s backing): the fill maps whole 2 MiB pages while the limit leaves
        /// room for them (4 KiB pages after that), eviction finds old 2 MiB pages and splits each
        /// through the notifiers (the EPT's 2 MiB leaf goes) before its pages are swapped out, and
        /// every word still reads back right, through the guest and through the inspector view.
        /// </summary>
        public static void HugePagesFillTwiceTheirLimit(TestContext t) => FillTwiceTheLimit(t, huge: true);

        private static void FillTwiceTheLimit(TestContext t, bool huge)
        {
            if (VmxTests.Unavailable(t))
                return;
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null || mm.Swap == null || KernelReclaim.Pool == null)
            {
                t.Skip("swap is off (swap=off on the command line)");
                return;
            }
            if (!KvmGlue.FindModule("swapfill32", out byte* image, out ulong length))
            {
                t.Fail("the swapfill32 module is not on the boot image");
                return;
            }
            Vm? vm = GuestRunner.Create(GuestMiB << 20, image, length, out string? problem, hugeBacked: huge);
            if (vm == null)
            {
                t.Fail(problem ?? "VM creation failed");
                return;
            }
            vm.MaxQuanta = VmcsSetup.BudgetUnits(1200);
            long outs = mm.Swap.SwapOuts, ins = mm.Swap.SwapIns, evictions = mm.Lru.Stats.Evictions;
            int oldLimit = mm.ResidentLimit;
            mm.ResidentLimit = (int)(FillBytes / 2 / 4096);
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            // The VM's own count (a VM of an earlier test may have 2 MiB pages evicted meanwhile).
            LruStats vmLru = ((MmGuestMemory)vm.Memory).Space.Lru.Stats;
            // An inspector view of the guest's pages (a mirror, its own notifier) reads all of
            // them while the limit still holds: its reads swap pages in, and the evictions they
            // cause zap the view's older entries; every word must agree with what the guest wrote.
            long viewMismatches = -1, zapped = 0;
            if (vm.ExitStatus == 0)
                viewMismatches = ReadThroughAView((MmGuestMemory)vm.Memory, out zapped);
            mm.ResidentLimit = oldLimit;
            KernelReclaim.PrintStats("reclaim: after swapfill32:");
            int slotsBefore = mm.Swap.SlotsInUse;
            vm.Release();                   // its 28 MiB of frames and swap slots go back for the tests after
            Tandem.Kernel.Console.Log.Info($"reclaim: swapfill32 released: swap slots in use {(ulong)slotsBefore} -> {(ulong)mm.Swap.SlotsInUse}");
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "swapfill32 read a word back wrong (1) or had too little RAM (3)", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(mm.Lru.Stats.Evictions - evictions > 0, "nothing was evicted: the limit did not bite"))
                return;
            if (!t.Check(mm.Swap.SwapOuts - outs > 0, "no page was swapped out", (ulong)(mm.Swap.SwapOuts - outs)))
                return;
            if (!t.Check(mm.Swap.SwapIns - ins > 0, "no page was swapped back in", (ulong)(mm.Swap.SwapIns - ins)))
                return;
            Tandem.Kernel.Console.Log.Info($"reclaim: the inspector view read 28 MiB: mismatches {(ulong)viewMismatches}, view entries zapped by evictions {(ulong)zapped}");
            if (!t.Check(viewMismatches == 0, "the inspector view disagrees with what the guest wrote", (ulong)viewMismatches))
                return;
            if (!t.Check(zapped > 0, "no eviction zapped the view: it did not follow the primary MMU"))
                return;
            long split = vmLru.HugeSplits;
            if (huge)
            {
                Tandem.Kernel.Console.Log.Info($"reclaim: 2 MiB pages split by eviction: {(ulong)split}");
                t.Check(split > 0, "no 2 MiB page was split by eviction: the RAM was not backed by tracked 2 MiB pages");
            }
            else
            {
                t.Check(split == 0, "a 2 MiB page was split in a VM without huge pages", (ulong)split);
            }
        }

        /// <summary>swapfill32's value of the dword at guest-physical <paramref name="gpa"/> (tools/StubGen/Guests/SwapFillGuest.cs).</summary>
        private static uint SwapFillValue(uint gpa) => (gpa & 0xFFF) < 0xC00 ? (gpa >> 12) | 0x5A00_0000u : unchecked(gpa * 0x9E3779B1u);

        /// <summary>Reads swapfill32's pages through a <see cref="MirrorView{TPlatform}"/>; returns the words that differ.</summary>
        private static long ReadThroughAView(MmGuestMemory memory, out long zapped)
        {
            zapped = 0;
            const uint Base = 0x20_0000;
            MirrorView<KernelMmPlatform>? view = MirrorView<KernelMmPlatform>.Create(default, memory.Space, memory.Space.Notifiers,
                memory.HostAddress(Base), (int)(FillBytes / 4096));
            if (view == null)
                return -1;
            long bad = 0;
            uint* page = stackalloc uint[1024];
            for (uint p = 0; p < FillBytes / 4096; p++)
            {
                uint gpa = Base + p * 4096;
                Sched.Scheduler.PreemptDisable();
                FaultStatus status = view.TryRead(memory.HostAddress(gpa), new System.Span<byte>(page, 4096));
                Sched.Scheduler.PreemptEnable();
                if (status != FaultStatus.Ok)
                    return -2;
                for (uint k = 0; k < 1024; k++)
                {
                    if (page[k] != SwapFillValue(gpa + k * 4))
                        bad++;
                }
            }
            zapped = view.PagesZapped;
            view.Destroy();
            return bad;
        }

        // tools/StubGen/Guests/StringIoGuest.cs (ksm32)
        private const ulong KsmBase = 0x20_0000, KsmPages = 256;

        private static void PauseAtPhase(Vm vm, ulong phase) => vm.PauseRequested = true;

        /// <summary>
        /// Two VMs run ksm32: each fills 1 MiB with the same 256 pages and pauses at phase 1. The
        /// merge scanner (the kernel's with ksm=on, else one made here) merges the pairs into
        /// shared read-only frames. Then each guest writes its VM id into every page (a
        /// copy-on-write break each, through an EPT write violation) and checks every page; the host
        /// checks that the pairs were merged, that each write broke the sharing for that VM only (A's
        /// pages hold A's id, B's hold B's), and the counters. An inspector view of A's pages (a
        /// mirror with its own notifier) maps the merged frame after the merge and A's private copy
        /// after the break.
        /// </summary>
        public static void TwoVmsShareIdenticalPages(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null)
                return;
            Vm? a = VmxTests.Start(t, "ksm32");
            Vm? b = VmxTests.Start(t, "ksm32");
            if (a == null || b == null)
                return;
            a.PhaseHandler = &PauseAtPhase;
            b.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(b.Vcpu!);
            if (!t.Check(a.LastPhase == 1 && b.LastPhase == 1 && !a.Stopped && !b.Stopped, "the guests did not both reach phase 1"))
                return;
            var ma = (MmGuestMemory)a.Memory;
            var mb = (MmGuestMemory)b.Memory;
            MergeScanner<KernelMmPlatform> scanner = KernelReclaim.Scanner ?? new MergeScanner<KernelMmPlatform>(mm, KernelReclaim.MergeTableSize);
            long merges = mm.MergeStats.Merges, breaks = mm.MergeStats.CowBreaks;
            // The scanner walks every live address space (earlier tests' VMs too): scan until the
            // pairs are merged or three full passes went by (a pair merges within two).
            long passes = mm.MergeStats.FullScans;
            int shared = 0;
            for (int round = 0; round < 4096 && shared < (int)KsmPages && mm.MergeStats.FullScans - passes < 3; round++)
            {
                Sched.Scheduler.PreemptDisable();
                scanner.ScanStep(4096);
                Sched.Scheduler.PreemptEnable();
                shared = 0;
                for (ulong p = 0; p < KsmPages; p++)
                {
                    bool ia = ma.Space.TranslateFrame(ma.HostAddress(KsmBase + p * 4096), out Pfn fa);
                    bool ib = mb.Space.TranslateFrame(mb.HostAddress(KsmBase + p * 4096), out Pfn fb);
                    if (ia && ib && fa == fb)
                        shared++;
                }
            }
            long merged = mm.MergeStats.Merges - merges;
            // An inspector view of A's pages: after the merge it maps the shared frames.
            MirrorView<KernelMmPlatform>? view = MirrorView<KernelMmPlatform>.Create(default, ma.Space, ma.Space.Notifiers, ma.HostAddress(KsmBase), (int)KsmPages);
            if (!t.Check(view != null, "could not register an inspector view on VM A"))
                return;
            uint first = 0, viewFirst = 0;
            view!.TryRead(ma.HostAddress(KsmBase), new System.Span<byte>(&viewFirst, 4));
            ma.Space.TranslateFrame(ma.HostAddress(KsmBase), out Pfn sharedFrame);
            bool viewOnShared = view.TryGetMapped(ma.HostAddress(KsmBase), out Pfn viewFrame) && viewFrame == sharedFrame;
            a.PhaseHandler = null;
            b.PhaseHandler = null;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            long broke = mm.MergeStats.CowBreaks - breaks;
            Tandem.Kernel.Console.Log.Info($"merge: pages shared by the two VMs {(ulong)shared} of 256, merges {(ulong)merged}, full scans {(ulong)(mm.MergeStats.FullScans - passes)}, copy-on-write breaks {(ulong)broke}");
            if (!t.Check(shared == (int)KsmPages, "the identical pages of the two VMs were not all merged", (ulong)shared))
                return;
            if (!t.Check(a.ExitStatus == 0 && b.ExitStatus == 0, "a guest found a wrong word after its writes (the sharing was not broken for it alone)"))
                return;
            if (!t.Check(broke >= 2 * (long)KsmPages, "fewer copy-on-write breaks than writes to merged pages", (ulong)broke))
                return;
            uint ida = 0, idb = 0;
            a.Memory.Read(KsmBase, (byte*)&ida, 4);
            b.Memory.Read(KsmBase, (byte*)&idb, 4);
            if (!t.Check(ida != idb, "the two VMs see the same word after writing their own ids", ida))
                return;
            // The view followed A's copy-on-write: it now reads A's id, from A's private frame.
            view.TryRead(ma.HostAddress(KsmBase), new System.Span<byte>(&first, 4));
            ma.Space.TranslateFrame(ma.HostAddress(KsmBase), out Pfn privateFrame);
            bool viewOnPrivate = view.TryGetMapped(ma.HostAddress(KsmBase), out Pfn after) && after == privateFrame && privateFrame != sharedFrame;
            view.Destroy();
            a.Release();
            b.Release();
            if (!t.Check(viewOnShared && viewFirst == 1, "the inspector view did not map the merged frame with the pattern", viewFirst))
                return;
            t.Check(viewOnPrivate && first == ida, "the inspector view did not follow the copy-on-write break", first);
        }
    }
}
