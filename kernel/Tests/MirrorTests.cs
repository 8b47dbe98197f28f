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
    /// <summary>
    /// Issue 11 §5 on Bochs: mirrors of a VM's memory (invariant 7) follow eviction and merging while
    /// guests run: memory shared between two VMs through a foreign memslot, and an inspector view.
    /// </summary>
    internal static unsafe class MirrorTests
    {
        // tools/StubGen/Guests/SharedMemGuest.cs (sharedmem32): a control page and 16 data pages.
        private const uint DataPages = 16, SharedPages = DataPages + 1;
        private const uint Mismatches = 0x7400, RoundDone = 0x7404, Yields = 0x7408;

        /// <summary>The shared pages in VM A's RAM, and where VM B's foreign memslot shows them.</summary>
        private const uint SharedInA = 0x20_0000, SharedInB = 0x1000_0000;

        /// <summary>Rounds of the guests (half written by each).</summary>
        private const uint Rounds = 96;

        /// <summary>The host gives up (stops both VMs and fails) after this many seconds (a run takes about 1.5 s on Bochs).</summary>
        private const ulong DeadlineSeconds = 30;

        /// <summary>sharedmem32's value of the dword at <paramref name="offset"/> from the first data page in round <paramref name="round"/>.</summary>
        private static uint Value(uint round, uint offset) =>
            unchecked(round * 0x9E3779B1u + (offset >> 13) * 0x0100_0193u + (offset & 0xFFF) + 1);

        /// <summary>
        /// VM A and VM B run sharedmem32 over the same 17 pages: A's RAM at 2 MiB, and B's foreign
        /// memslot at 256 MiB, above B's 16 MiB of RAM (where a PCI BAR of shared memory would be:
        /// the EPT violation exit sends an address above RAM to the foreign slot before the bus). Odd
        /// rounds A writes checksummed pages and B reads them through its EPT's foreign leaves;
        /// even rounds B writes through them and A reads. Meanwhile this thread evicts the shared
        /// pages to swap (forced, and through the exact aging check), ages them (one frame and
        /// whole aging passes), runs the merge scanner (data pages come in identical pairs, so
        /// they merge, and the next round's write breaks the sharing), and reads them through an
        /// inspector <see cref="MirrorView{TPlatform}"/> of A's RAM, checked as a seqlock by the
        /// control page's sequence. The rounds are paced by this thread's steps (the control
        /// page's dword 2), so each round meets at least one step on 1 and 2 CPUs. Checks: both
        /// guests ran every round and read no wrong dword; every consistent inspector read held
        /// its round's values; evictions, refaults of evicted
        /// shared pages, swap-ins, merges of shared pairs, copy-on-write breaks, foreign-slot
        /// invalidations and inspector zaps all happened; at the end the inspector and B's EPT map
        /// what A's primary maps, and after both VMs are released every mm frame and swap slot is back.
        /// </summary>
        public static void SharedMemoryFollowsEvictionAndMerging(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null || mm.Swap == null)
            {
                t.Skip("swap is off (swap=off on the command line)");
                return;
            }
            // The scanner first: a new one takes its shared zero frame before the count.
            MergeScanner<KernelMmPlatform>? own = KernelReclaim.Scanner == null ? new MergeScanner<KernelMmPlatform>(mm, KernelReclaim.MergeTableSize) : null;
            MergeScanner<KernelMmPlatform> scanner = KernelReclaim.Scanner ?? own!;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            int slotsBefore = mm.Swap.SlotsInUse;
            Vm? a = VmxTests.Start(t, "sharedmem32");
            Vm? b = VmxTests.Start(t, "sharedmem32");
            if (a == null || b == null)
                return;
            var ma = (MmGuestMemory)a.Memory;
            var mb = (MmGuestMemory)b.Memory;
            ForeignMemslot<KernelEptPlatform>? maybeForeign = ShareIntoB(ma, mb);
            MirrorView<KernelMmPlatform>? maybeView = MirrorView<KernelMmPlatform>.Create(default, ma.Space, ma.Space.Notifiers, ma.HostAddress(SharedInA), (int)SharedPages);
            if (!t.Check(maybeForeign != null, "could not give VM B a foreign memslot over VM A's RAM") || !t.Check(maybeView != null, "could not register an inspector view on VM A"))
                return;
            ForeignMemslot<KernelEptPlatform> foreign = maybeForeign!;
            MirrorView<KernelMmPlatform> view = maybeView!;
            a.Vcpu!.Registers->Rcx = SharedInA;
            a.Vcpu!.Registers->Rdx = 0;
            a.Vcpu!.Registers->Rsi = Rounds;
            b.Vcpu!.Registers->Rcx = SharedInB;
            b.Vcpu!.Registers->Rdx = 1;
            b.Vcpu!.Registers->Rsi = Rounds;
            long swapOuts = mm.Swap.SwapOuts, swapIns = mm.Swap.SwapIns, merges = mm.MergeStats.Merges, breaks = mm.MergeStats.CowBreaks;
            Vm[] both = new Vm[2];
            both[0] = a;
            both[1] = b;
            VmThreads.Start(a, 0);
            VmThreads.Start(b, 0);
            Churn churn = default;
            churn.Run(mm, scanner, ma, view, a, b);
            VmThreads.WaitAll(both, 2);
            VmThreads.Report(a);
            VmThreads.Report(b);

            uint missA = 0, missB = 0, roundA = 0, roundB = 0, yieldsA = 0, yieldsB = 0;
            a.Memory.Read(Mismatches, (byte*)&missA, 4);
            b.Memory.Read(Mismatches, (byte*)&missB, 4);
            a.Memory.Read(RoundDone, (byte*)&roundA, 4);
            b.Memory.Read(RoundDone, (byte*)&roundB, 4);
            a.Memory.Read(Yields, (byte*)&yieldsA, 4);
            b.Memory.Read(Yields, (byte*)&yieldsB, 4);
            long finalWrong = FinalContents(view, ma);
            int stale = StaleViews(view, ma, mb);
            long foreignInvalidations = foreign.Invalidations, foreignRetries = foreign.Retries;
            Log.Info($"mirror: {(ulong)Rounds} rounds, guest mismatches A {(ulong)missA} B {(ulong)missB}, rounds done A {(ulong)roundA} B {(ulong)roundB}, yields A {(ulong)yieldsA} B {(ulong)yieldsB}; host steps {(ulong)churn.Steps}");
            Log.Info($"mirror: on the shared pages: forced evictions {(ulong)churn.Evictions}, evictions after the exact aging check {(ulong)churn.Reclaims} (kept young {(ulong)churn.KeptYoung}), refaults of evicted pages {(ulong)churn.Refaults}, merged pairs seen {(ulong)churn.MergedPairs}, frame agings {(ulong)churn.Agings} (young {(ulong)churn.Young}), aging passes {(ulong)churn.AgingPasses}");
            Log.Info($"mirror: global: swap-outs {(ulong)(mm.Swap.SwapOuts - swapOuts)}, swap-ins {(ulong)(mm.Swap.SwapIns - swapIns)}, merges {(ulong)(mm.MergeStats.Merges - merges)}, copy-on-write breaks {(ulong)(mm.MergeStats.CowBreaks - breaks)}");
            Log.Info($"mirror: foreign slot invalidations {(ulong)foreignInvalidations}, retries {(ulong)foreignRetries}; inspector: consistent reads {(ulong)churn.Consistent} (torn, skipped {(ulong)churn.Torn}), mismatches {(ulong)churn.ViewMismatches}, zapped {(ulong)view.PagesZapped}, populated {(ulong)view.PagesPopulated}, retries {(ulong)view.Retries}; final contents wrong {(ulong)finalWrong}, views mapping another frame than A's {(ulong)stale}");

            // A first: its address space's teardown releases the foreign slot and the view.
            a.Release();
            bool foreignReleased = foreign.IsReleased, viewReleased = view.IsReleased;
            mb.Ept.RemoveForeignMemslot(foreign, ma.Space.Notifiers);
            view.Destroy();
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            int freeAfter = FuzzCampaign.MmFreeFrames();
            int slotsAfter = mm.Swap.SlotsInUse;
            Log.Info($"mirror: after both VMs: free frames {(ulong)freeAfter} (before {(ulong)freeBefore}), swap slots {(ulong)slotsAfter} (before {(ulong)slotsBefore})");
            if (own != null)
                own.ReleaseZeroFrame();

            t.Check(!churn.TimedOut, "the guests did not finish in time (the host stopped them)", DeadlineSeconds);
            t.Check(a.ExitStatus == 0, a.StopReason ?? "VM A read a wrong dword through its own EPT", (ulong)a.ExitStatus);
            t.Check(b.ExitStatus == 0, b.StopReason ?? "VM B read a wrong dword through its foreign memslot", (ulong)b.ExitStatus);
            t.Check(missA == 0 && missB == 0, "a guest counted wrong dwords in the shared pages", (ulong)missA + missB);
            t.Check(roundA == Rounds && roundB == Rounds, "a guest did not run every round", (ulong)roundA);
            t.Check(churn.ViewMismatches == 0, "the inspector view read dwords that disagree with the guests", (ulong)churn.ViewMismatches);
            t.Check(churn.Consistent > 0, "the inspector never read a page between two rounds: it checked nothing");
            t.Check(finalWrong == 0, "after the last round the inspector does not read what the guests wrote", (ulong)finalWrong);
            t.Check(stale == 0, "a view maps a frame that VM A's primary MMU does not map there", (ulong)stale);
            t.Check(churn.Evictions + churn.Reclaims > 0 && churn.Refaults > 0 && mm.Swap.SwapIns - swapIns > 0,
                "the shared pages were not evicted and faulted back in", (ulong)churn.Refaults);
            t.Check(churn.MergedPairs > 0 && mm.MergeStats.CowBreaks - breaks > 0, "no pair of shared pages was merged and broken by a write", (ulong)churn.MergedPairs);
            t.Check(churn.AgingPasses > 0 && churn.Agings > 0, "the shared pages were not aged");
            t.Check(foreignInvalidations > 0, "no invalidation reached VM B's foreign memslot");
            t.Check(view.PagesZapped > 0, "no invalidation zapped the inspector view");
            t.Check(foreignReleased && viewReleased, "VM A's teardown did not release the foreign slot and the view");
            t.Check(slotsAfter <= slotsBefore, "swap slots of the two VMs were not freed", (ulong)(slotsAfter - slotsBefore));
            t.Check(freeAfter >= freeBefore, "frames of the two VMs did not come back", (ulong)(freeBefore - freeAfter));
        }

        /// <summary>
        /// Maps <see cref="SharedPages"/> pages of A's
        /// RAM from <see cref="SharedInA"/> at <see cref="SharedInB"/> in B (a foreign memslot,
        /// writable). Before B runs: no EPT leaf exists yet. Null when a step is refused.
        /// </summary>
        private static ForeignMemslot<KernelEptPlatform>? ShareIntoB(MmGuestMemory ma, MmGuestMemory mb)
        {
            return mb.Ept.AddForeignMemslot(new Memslot(new Gfn(SharedInB >> 12), SharedPages, ma.HostAddress(SharedInA), writable: true),
                ma.Space, ma.Space.Notifiers);
        }

        /// <summary>The host's side while the guests run, in the test's thread: one step, then a yield, until both VMs stopped.</summary>
        private struct Churn
        {
            public long Steps, Evictions, Reclaims, KeptYoung, Refaults, MergedPairs, Agings, Young, AgingPasses;
            public long Consistent, Torn, ViewMismatches;
            public bool TimedOut;

            public void Run(MemoryManager<KernelMmPlatform> mm, MergeScanner<KernelMmPlatform> scanner, MmGuestMemory ma, MirrorView<KernelMmPlatform> view, Vm a, Vm b)
            {
                bool* evicted = stackalloc bool[(int)SharedPages];
                ulong* sharedFrame = stackalloc ulong[(int)(DataPages / 2)];
                uint* page = stackalloc uint[1024];
                for (uint p = 0; p < SharedPages; p++)
                    evicted[p] = false;
                for (uint j = 0; j < DataPages / 2; j++)
                    sharedFrame[j] = 0;
                ulong deadline = Native.Rdtsc() + DeadlineSeconds * Timer.TscPerSecond;
                uint cursor = 0;
                while (Volatile.Read(ref a.RunningVcpus) != 0 || Volatile.Read(ref b.RunningVcpus) != 0)
                {
                    if (!TimedOut && Native.Rdtsc() > deadline)
                    {
                        TimedOut = true;
                        a.Stop(255, "the mirror test's deadline passed");
                        b.Stop(255, "the mirror test's deadline passed");
                    }
                    // A VM that failed leaves the other waiting for its next round for ever.
                    if (a.Stopped && a.ExitStatus != 0)
                        b.Stop(255, "VM A stopped with a failure: B would wait for it for ever");
                    if (b.Stopped && b.ExitStatus != 0)
                        a.Stop(255, "VM B stopped with a failure: A would wait for it for ever");
                    Steps++;
                    Sched.Scheduler.PreemptDisable();
                    Inspect(view, ma, (uint)(Steps % DataPages), page);
                    // Two pages forced out to swap, one through the exact aging check, one aged fast.
                    for (int k = 0; k < 2; k++)
                    {
                        uint p = cursor++ % SharedPages;
                        if (ma.Space.TranslateFrame(ma.HostAddress(SharedInA + p * 4096), out Pfn f) && mm.TrySwapOut(f) == SwapOutResult.Evicted)
                        {
                            Evictions++;
                            evicted[p] = true;
                        }
                    }
                    uint q = (uint)((Steps * 7) % SharedPages);
                    if (ma.Space.TranslateFrame(ma.HostAddress(SharedInA + q * 4096), out Pfn g))
                    {
                        if (mm.TryReclaim(g))
                        {
                            Reclaims++;
                            evicted[q] = true;
                        }
                        else
                            KeptYoung++;
                    }
                    uint r = (uint)((Steps * 5) % SharedPages);
                    if (ma.Space.TranslateFrame(ma.HostAddress(SharedInA + r * 4096), out Pfn h))
                    {
                        Agings++;
                        if (mm.AgeFrame(h, false))
                            Young++;
                    }
                    if (Steps % 8 == 0 && mm.AgingPass())
                        AgingPasses++;
                    scanner.ScanStep(2048);
                    Observe(mm, ma, evicted, sharedFrame);
                    // The step count paces the guests (a round is written only after as many
                    // steps): with 2 CPUs the guests would otherwise outrun this thread. Written
                    // through A's primary MMU: a fault, a swap-in or a copy-on-write break of its
                    // own. Preemption stays off: a vCPU faulting on a slot this thread is loading
                    // spins for it with interrupts off, for ever on one CPU if we were preempted.
                    uint steps = (uint)Steps;
                    ma.Write(SharedInA + 8, (byte*)&steps, 4);
                    Sched.Scheduler.PreemptEnable();
                    Sched.Scheduler.Yield();
                }
            }

            /// <summary>Counts evicted shared pages that are resident again, and pairs of data pages that newly share one frame.</summary>
            private void Observe(MemoryManager<KernelMmPlatform> mm, MmGuestMemory ma, bool* evicted, ulong* sharedFrame)
            {
                for (uint p = 0; p < SharedPages; p++)
                {
                    if (evicted[p] && ma.Space.TranslateFrame(ma.HostAddress(SharedInA + p * 4096), out _))
                    {
                        Refaults++;
                        evicted[p] = false;
                    }
                }
                for (uint j = 0; j < DataPages / 2; j++)
                {
                    uint first = SharedInA + (1 + 2 * j) * 4096;
                    if (ma.Space.TranslateFrame(ma.HostAddress(first), out Pfn x) && ma.Space.TranslateFrame(ma.HostAddress(first + 4096), out Pfn y)
                        && x == y && x.Value != sharedFrame[j])
                    {
                        MergedPairs++;
                        sharedFrame[j] = x.Value;
                    }
                }
            }

            /// <summary>
            /// Reads data page <paramref name="p"/> through the inspector view between two reads of
            /// the sequence; when they are equal and even, every dword must hold that round's value.
            /// </summary>
            private void Inspect(MirrorView<KernelMmPlatform> view, MmGuestMemory ma, uint p, uint* page)
            {
                uint s1 = 0, s2 = 0;
                if (view.TryRead(ma.HostAddress(SharedInA), new System.Span<byte>(&s1, 4)) != FaultStatus.Ok || s1 == 0 || (s1 & 1) != 0)
                {
                    Torn++;
                    return;
                }
                if (view.TryRead(ma.HostAddress(SharedInA + (1 + p) * 4096), new System.Span<byte>(page, 4096)) != FaultStatus.Ok
                    || view.TryRead(ma.HostAddress(SharedInA), new System.Span<byte>(&s2, 4)) != FaultStatus.Ok || s2 != s1)
                {
                    Torn++;
                    return;
                }
                Consistent++;
                for (uint k = 0; k < 1024; k++)
                {
                    if (page[k] != Value(s1 / 2, p * 4096 + k * 4))
                        ViewMismatches++;
                }
            }
        }

        /// <summary>After the last round, through the inspector view: the control page's sequence and acknowledgement, and every data dword; the wrong ones.</summary>
        private static long FinalContents(MirrorView<KernelMmPlatform> view, MmGuestMemory ma)
        {
            uint* page = stackalloc uint[1024];
            long wrong = 0;
            Sched.Scheduler.PreemptDisable();
            if (view.TryRead(ma.HostAddress(SharedInA), new System.Span<byte>(page, 4096)) != FaultStatus.Ok)
                wrong++;
            else if (page[0] != 2 * Rounds || page[1] != Rounds)
                wrong++;
            for (uint p = 0; p < DataPages; p++)
            {
                if (view.TryRead(ma.HostAddress(SharedInA + (1 + p) * 4096), new System.Span<byte>(page, 4096)) != FaultStatus.Ok)
                {
                    wrong += 1024;
                    continue;
                }
                for (uint k = 0; k < 1024; k++)
                {
                    if (page[k] != Value(Rounds, p * 4096 + k * 4))
                        wrong++;
                }
            }
            Sched.Scheduler.PreemptEnable();
            return wrong;
        }

        /// <summary>
        /// With both VMs stopped: the shared pages the inspector view or B's EPT map that A's
        /// primary does not map to the same frame (a view that missed an invalidation). A
        /// difference is looked at again twice after 10 ms, in case a host thread's invalidation
        /// (the kernel's reclaimer or merge thread) was between its zap and its end.
        /// </summary>
        private static int StaleViews(MirrorView<KernelMmPlatform> view, MmGuestMemory ma, MmGuestMemory mb)
        {
            int stale = 0;
            for (int attempt = 0; attempt < 3; attempt++)
            {
                stale = 0;
                Sched.Scheduler.PreemptDisable();
                for (uint p = 0; p < SharedPages; p++)
                {
                    VirtAddr hva = ma.HostAddress(SharedInA + p * 4096);
                    bool primary = ma.Space.TranslateFrame(hva, out Pfn frame);
                    if (view.TryGetMapped(hva, out Pfn viewFrame) && (!primary || viewFrame != frame))
                        stale++;
                    GuestPhysAddr gpa = new GuestPhysAddr(SharedInB + p * 4096);
                    foreach (EptSlot s in new EptWalker<KernelEptPlatform>(default, mb.Ept.Root, gpa, new GuestPhysAddr(gpa.Value + PageSizes.Size4K)))
                    {
                        EptEntry e = EptOps.Read(s.Pointer);
                        if (e.IsLeaf(s.Level) && (!primary || e.LeafAddress(s.Level).Pfn != frame))
                            stale++;
                    }
                }
                Sched.Scheduler.PreemptEnable();
                if (stale == 0)
                    break;
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
            return stale;
        }
    }
}
