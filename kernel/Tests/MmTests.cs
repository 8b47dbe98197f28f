using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Memory;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>The portable mm core on real hardware (or QEMU): real page faults, real TLBs, real IPIs.</summary>
    internal static unsafe class MmTests
    {
        /// <summary>Test address spaces use PML4 slot 1 (512 GiB): slot 0 is shared with the kernel's identity map.</summary>
        private static readonly VirtAddr Base = new VirtAddr(1UL << 39);
        private const int Pages = 64;

        private static AddressSpace<KernelMmPlatform>? s_faultSpace;
        private static int s_faults;

        /// <summary>#PF hook: faults inside the test region are demand faults of the test address space.</summary>
        private static bool OnPageFault(InterruptFrame* frame, ulong address)
        {
            AddressSpace<KernelMmPlatform>? space = Volatile.Read(ref s_faultSpace);
            if (space == null || address < Base.Value || address >= Base.Value + Pages * 4096UL)
                return false;
            bool write = (frame->ErrorCode & 2) != 0;
            if (space.HandleFault(new VirtAddr(address), write) != FaultStatus.Ok)
                return false;
            Interlocked.Increment(ref s_faults);
            return true;
        }

        /// <summary>A test address space whose root also maps the kernel (PML4[0]), so it can be loaded in CR3.</summary>
        private static AddressSpace<KernelMmPlatform>? CreateSpace(TestContext t)
        {
            AddressSpace<KernelMmPlatform>? space = KernelMm.Manager?.CreateAddressSpace();
            if (space == null)
            {
                t.Fail("could not create an address space");
                return null;
            }
            if (!space.AddRegion(Region.Anonymous(Base, Pages * 4096UL, PageProt.Write)))
            {
                t.Fail("could not add the anonymous region");
                return null;
            }
            ulong* kernelRoot = (ulong*)(Native.ReadCr3() & ~0xFFFUL);
            ((ulong*)space.Root.Value)[0] = kernelRoot[0];
            return space;
        }

        private static void DestroySpace(AddressSpace<KernelMmPlatform> space)
        {
            ((ulong*)space.Root.Value)[0] = 0;   // the kernel's tables are not the space's to free
            space.Destroy();
        }

        public static void DemandFaults(TestContext t)
        {
            AddressSpace<KernelMmPlatform>? space = CreateSpace(t);
            if (space == null)
                return;
            s_faults = 0;
            Volatile.Write(ref s_faultSpace, space);
            Interrupts.PageFaultHook = &OnPageFault;
            ulong flags = Native.ReadRflags();
            Native.Cli();
            ulong kernelCr3 = Native.ReadCr3();
            space.Activate(Cpu.CurrentIndex);
            Native.WriteCr3(space.Root.Value);
            bool zeroed = true, kept = true;
            for (int i = 0; i < Pages; i++)
            {
                ulong* p = (ulong*)(Base.Value + (ulong)i * 4096);
                zeroed &= *p == 0;                          // first touch: a read fault maps a zero page
                *p = 0x7A4D_0000UL + (ulong)i;              // then a write (a write fault if mapped read-only)
            }
            for (int i = 0; i < Pages; i++)
                kept &= *(ulong*)(Base.Value + (ulong)i * 4096) == 0x7A4D_0000UL + (ulong)i;
            Native.WriteCr3(kernelCr3);
            space.Deactivate(Cpu.CurrentIndex);
            if ((flags & 0x200) != 0)
                Native.Sti();
            Volatile.Write(ref s_faultSpace, null);
            int faults = s_faults;
            DestroySpace(space);
            t.Check(zeroed, "a demand-zero page was not zero");
            t.Check(kept, "a page lost what was written to it");
            if (faults < Pages)
                t.Fail("fewer page faults than pages touched", (ulong)faults);
        }

        // --- Unmap with a shootdown of another CPU that caches the translation ------------------

        private static AddressSpace<KernelMmPlatform>? s_shared;
        private static int s_stage;
        private static ulong s_firstRead, s_secondRead;

        private static void RemoteReader(ulong unused)
        {
            AddressSpace<KernelMmPlatform> space = s_shared!;
            ulong kernelCr3 = Native.ReadCr3();
            space.Activate(Cpu.CurrentIndex);
            Native.WriteCr3(space.Root.Value);
            s_firstRead = *(ulong*)Base.Value;              // now cached in this CPU's TLB
            Volatile.Write(ref s_stage, 1);                 // pairs with the wait in UnmapShootdown
            // We run inside the call-function IPI; open interrupts so the shootdown IPI gets in.
            Native.Sti();
            while (Volatile.Read(ref s_stage) != 2)         // pairs with the write after Unmap
                Native.Pause();
            Native.Cli();
            s_secondRead = *(ulong*)Base.Value;             // must not use the stale translation
            Native.WriteCr3(kernelCr3);
            space.Deactivate(Cpu.CurrentIndex);
            Volatile.Write(ref s_stage, 3);
        }

        public static void UnmapShootdown(TestContext t)
        {
            if (Cpu.Count < 2)
            {
                t.Skip("needs a second CPU to shoot down");
                return;
            }
            AddressSpace<KernelMmPlatform>? space = CreateSpace(t);
            if (space == null)
                return;
            if (space.HandleFault(Base, write: true) != FaultStatus.Ok || !space.TranslateFrame(Base, out Pfn frame))
            {
                t.Fail("could not fault the shared page in");
                return;
            }
            *(ulong*)frame.Address.Value = 0x5EED;
            s_shared = space;
            s_stage = 0;
            s_faults = 0;
            Volatile.Write(ref s_faultSpace, space);
            Interrupts.PageFaultHook = &OnPageFault;
            long before = Volatile.Read(ref KernelMmPlatform.Shootdowns);
            Smp.Post(1, &RemoteReader, 0);
            for (long spin = 0; Volatile.Read(ref s_stage) != 1 && spin < 2_000_000_000L; spin++)
                Native.Pause();
            space.Unmap(Base, Base + 4096);                 // must shoot down CPU 1
            long shootdowns = Volatile.Read(ref KernelMmPlatform.Shootdowns) - before;
            Volatile.Write(ref s_stage, 2);
            for (long spin = 0; Volatile.Read(ref s_stage) != 3 && spin < 2_000_000_000L; spin++)
                Native.Pause();
            Volatile.Write(ref s_faultSpace, null);
            DestroySpace(space);
            t.Check(s_firstRead == 0x5EED, "the other CPU did not see the page before the unmap");
            if (shootdowns != 1)
                t.Fail("expected exactly one shootdown IPI for the unmap", (ulong)shootdowns);
            t.Check(s_secondRead == 0, "the other CPU read the unmapped page through a stale TLB entry");
            t.Check(s_faults == 1, "the other CPU did not fault the page back in");
        }

        // --- Reverse map and a registered test notifier -----------------------------------------

        private sealed class CountingNotifier : IMmuNotifier
        {
            public int Starts, Ends, Releases;
            public ulong LastStart, LastEnd;

            public void InvalidateRangeStart(in MmuNotifierRange range)
            {
                Starts++;
                LastStart = range.Start.Value;
                LastEnd = range.End.Value;
            }

            public void InvalidateRangeEnd(in MmuNotifierRange range) => Ends++;

            public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;

            public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;

            public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;

            public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;

            public void Release(IAddressSpace space) => Releases++;
        }

        public static void ReverseMapAndNotifier(TestContext t)
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            AddressSpace<KernelMmPlatform>? a = CreateSpace(t);
            AddressSpace<KernelMmPlatform>? b = CreateSpace(t);
            if (mm == null || a == null || b == null)
                return;
            if (!mm.Frames.TryAllocate(0, out Pfn frame))
            {
                t.Fail("no frame");
                return;
            }
            var notifier = new CountingNotifier();
            b.Notifiers.Register(notifier, MmuNotifierFlags.None);
            VirtAddr va = Base + 5 * 4096UL;
            t.Check(a.MapFrame(Base, frame, PageProt.Write) == MapStatus.Ok, "mapping into A failed");
            t.Check(b.MapFrame(va, frame, PageProt.Write) == MapStatus.Ok, "mapping into B failed");
            mm.Frames.PutRef(frame);                       // the mappings hold the frame now
            int found = 0;
            bool sawA = false, sawB = false;
            RmapCursor cursor = default;
            for (int i = 0; i < 8 && mm.Rmap.TryGetNext(frame, ref cursor, out AddressSpace<KernelMmPlatform>? space, out VirtAddr where); i++)
            {
                found++;
                sawA |= space == a && where == Base;
                sawB |= space == b && where == va;
            }
            t.Check(found == 2 && sawA && sawB, "the reverse-map walk did not find exactly the two mappings");
            t.Check(mm.TryToUnmap(frame), "TryToUnmap left a mapping behind");
            t.Check(!a.TranslateFrame(Base, out _) && !b.TranslateFrame(va, out _), "a primary entry survived TryToUnmap");
            t.Check(notifier.Starts == 1 && notifier.Ends == 1 && notifier.LastStart == va.Value && notifier.LastEnd == va.Value + 4096,
                "the registered notifier did not see exactly B's range invalidated");
            DestroySpace(a);
            DestroySpace(b);
            t.Check(notifier.Releases == 1, "the notifier was not released when its address space died");
        }

        /// <summary>Page merging in the kernel build: two equal pages of two spaces share one
        /// read-only frame; a write copies it for that space only (docs/reclaim.md, "Page merging").</summary>
        public static void MergeAndCopyOnWrite(TestContext t)
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            AddressSpace<KernelMmPlatform>? a = CreateSpace(t);
            AddressSpace<KernelMmPlatform>? b = CreateSpace(t);
            if (mm == null || a == null || b == null)
                return;
            MergeScanner<KernelMmPlatform> scanner = new MergeScanner<KernelMmPlatform>(mm, 64);
            bool faulted = true;
            for (int i = 0; i < 2; i++)
            {
                AddressSpace<KernelMmPlatform> s = i == 0 ? a : b;
                faulted &= s.HandleFault(Base, true) == FaultStatus.Ok && s.TranslateFrame(Base, out Pfn f);
                s.TranslateFrame(Base, out Pfn frame);
                ulong* p = (ulong*)mm.Platform.PhysToVirt(frame.Address);
                for (int w = 0; w < 512; w++)
                    p[w] = 0x4B53_4D00UL + (ulong)w;
            }
            scanner.ScanStep(4 * Pages);
            a.TranslateFrame(Base, out Pfn fa);
            b.TranslateFrame(Base, out Pfn fb);
            bool merged = faulted && fa == fb && mm.Frames.MapCountOf(fa) == 2;
            bool broke = a.HandleFault(Base, true) == FaultStatus.Ok;
            a.TranslateFrame(Base, out Pfn copy);
            broke &= copy != fb && ((ulong*)mm.Platform.PhysToVirt(copy.Address))[7] == 0x4B53_4D07UL;
            DestroySpace(a);
            DestroySpace(b);
            t.Check(merged, "two equal pages were not merged into one frame");
            t.Check(broke, "a write to a merged page did not get a private copy with the same contents");
        }

        // --- userfault: a fault waits (sleeping) for a handler thread ------------------------------

        private sealed class KernelQueueHandler : IUserfaultHandler
        {
            public ulong Page;       // the last missing page asked for, 0 when none
            public void OnMissing(IAddressSpace space, VirtAddr page, bool write) => Volatile.Write(ref Page, page.Value);
        }

        private static KernelQueueHandler? s_handler;
        private static AddressSpace<KernelMmPlatform>? s_userfaultSpace;
        private static int s_fills;

        /// <summary>The handler thread: waits (sleeping) for a request, fills the page with a marker, and ends.</summary>
        private static void FillOnRequest(ulong argument)
        {
            ulong deadline = Native.Rdtsc() + 10 * Timer.TscPerSecond;
            while (Native.Rdtsc() < deadline)
            {
                ulong page = Volatile.Read(ref s_handler!.Page);
                if (page != 0)
                {
                    byte* data = stackalloc byte[8];
                    *(ulong*)data = 0x0055_FF00_C0DE_0001UL;
                    if (s_userfaultSpace!.UserfaultCopy(new VirtAddr(page), new System.ReadOnlySpan<byte>(data, 8)) == FaultStatus.Ok)
                        Interlocked.Increment(ref s_fills);
                    return;
                }
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            }
        }

        /// <summary>
        /// A fault on a userfault region waits until a handler thread fills the page (invariant 6).
        /// The handler thread is pinned to the faulting thread's own CPU and the fault runs with
        /// interrupts off, as a vCPU's EPT violation does, so the wait must sleep (a spinning fault
        /// would keep the handler from ever running there: a hang): the fault returns Ok,
        /// the page holds the handler's marker, and it was filled once.
        /// </summary>
        public static void UserfaultWaitSleepsForAHandlerThread(TestContext t)
        {
            AddressSpace<KernelMmPlatform>? space = KernelMm.Manager?.CreateAddressSpace();
            if (space == null)
            {
                t.Fail("could not create an address space");
                return;
            }
            s_handler = new KernelQueueHandler();
            s_userfaultSpace = space;
            s_fills = 0;
            VirtAddr start = new VirtAddr(1UL << 39);
            if (!t.Check(space.AddRegion(Region.UserfaultAnonymous(start, 16 * 4096UL, PageProt.Write, s_handler)), "could not add the userfault region"))
                return;
            ulong here = 1UL << Cpu.CurrentIndex;
            if (!t.Check(Sched.Scheduler.Spawn("uffd", &FillOnRequest, 0, allowed: here) != null, "could not spawn the handler thread"))
                return;
            // Interrupts off, as in a vCPU thread's EPT violation: nothing preempts a spinning wait.
            ulong flags = Native.ReadRflags();
            Native.Cli();
            FaultStatus status = space.HandleFault(start + 3 * 4096, false);
            if ((flags & 0x200) != 0)
                Native.Sti();
            bool filled = space.TranslateFrame(start + 3 * 4096, out Pfn frame) && *(ulong*)KernelMm.Manager!.Platform.PhysToVirt(frame.Address) == 0x0055_FF00_C0DE_0001UL;
            space.Destroy();
            if (!t.Check(status == FaultStatus.Ok, "the fault did not end Ok after the handler's fill", (ulong)status))
                return;
            t.Check(filled && Volatile.Read(ref s_fills) == 1, "the page does not hold the handler's fill");
        }
    }
}
