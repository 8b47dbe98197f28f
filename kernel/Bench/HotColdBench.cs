using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Bench
{
    /// <summary>
    /// The hot/cold figure of issue 11 (command line <c>bench</c>, after the SMP figures, or alone
    /// with <c>bench=hotcold</c>): hotcold32 (tools/StubGen/Guests/HotColdGuest.cs: 4 MiB hot,
    /// 16 MiB cold, each round reads the hot set and the next 113 cold pages) runs twice, the same
    /// measured rounds each time: first with no resident limit, then with
    /// <see cref="MemoryManager{TPlatform}.ResidentLimit"/> at <see cref="LimitPages"/> (16 MiB,
    /// between the hot set and hot + cold) with the kernel's swap pool and reclaimer thread as they
    /// are. Figures are TSC units per page read between the guest's phases 1 and 2 (instructions
    /// under Bochs with <c>clock: sync=none</c>), and the throughput ratio limited / free, goal ≥ 0.7.
    /// The kernel's reclaimer keeps its high watermark (1/32 of the mm pool: 8 MiB with a 256 MiB
    /// pool) of headroom under the limit, so the limit leaves the hot set that much room above it.
    /// </summary>
    public static unsafe class HotColdBench
    {
        private const ulong GuestRam = 24UL << 20;
        /// <summary>The limited run's resident limit: 16 MiB.</summary>
        private const int LimitPages = 4096;
        // tools/StubGen/Guests/HotColdGuest.cs
        private const ulong HotPages = 1024, ChunkPages = HotPages / 9, Rounds = 32;
        private const ulong PagesRead = Rounds * (HotPages + ChunkPages);
        /// <summary>The goal of the throughput ratio, in hundredths.</summary>
        private const ulong GoalHundredths = 70;

        private static ulong s_start, s_end;
        private static long s_evictions0, s_swapIns0, s_refaults0, s_evictions1, s_swapIns1, s_refaults1;
        private static ulong s_faults0, s_faults1, s_faultTsc0, s_faultTsc1;

        private struct Figure
        {
            public ulong PerPage;
            public long Evictions, SwapIns, Refaults;
            /// <summary>EPT violations handled while measured, and the TSC units spent in their handler.</summary>
            public ulong Faults, FaultTsc;
        }

        private static void Phase(Vm vm, ulong phase)
        {
            MemoryManager<KernelMmPlatform> mm = KernelMm.Manager!;
            if (phase == 1)
            {
                s_evictions0 = mm.Lru.Stats.Evictions;
                s_refaults0 = mm.Lru.Stats.Refaults;
                s_swapIns0 = mm.Swap!.SwapIns;
                s_faults0 = vm.Memory.FaultsHandled;
                s_faultTsc0 = ((MmGuestMemory)vm.Memory).ViolationTsc;
                s_start = Native.Rdtsc();
            }
            else if (phase == 2)
            {
                s_end = Native.Rdtsc();
                s_evictions1 = mm.Lru.Stats.Evictions;
                s_refaults1 = mm.Lru.Stats.Refaults;
                s_swapIns1 = mm.Swap!.SwapIns;
                s_faults1 = vm.Memory.FaultsHandled;
                s_faultTsc1 = ((MmGuestMemory)vm.Memory).ViolationTsc;
            }
        }

        /// <summary>Returns 0 when the figure ran (a missed goal is for the driver to judge), 1 when it broke or proved nothing.</summary>
        public static int Run()
        {
            var f = KernelMain.Features;
            if (!f.Vmx || !f.Ept || !f.UnrestrictedGuest)
            {
                Log.Line("bench: SKIP hotcold: no VT-x with EPT and unrestricted guest");
                return 0;
            }
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null || mm.Swap == null || KernelReclaim.Pool == null)
            {
                Log.Line("bench: SKIP hotcold: swap is off (swap=off on the command line)");
                return 0;
            }
            if (mm.ResidentLimit != 0)
            {
                Log.Line("bench: SKIP hotcold: mem.limit= is set; the figure compares no limit with its own");
                return 0;
            }
            Figure free = default, limited = default;
            if (!RunOnce(mm, 0, ref free) || !RunOnce(mm, LimitPages, ref limited))
                return 1;
            KernelReclaim.PrintStats("bench: hotcold mmstats");
            ulong hundredths = limited.PerPage == 0 ? 0 : (free.PerPage * 100 + limited.PerPage / 2) / limited.PerPage;
            Log.Info($"bench: hotcold free_per_page={free.PerPage} limited_per_page={limited.PerPage} evictions={(ulong)limited.Evictions} swapins={(ulong)limited.SwapIns} refaults={(ulong)limited.Refaults} free_evictions={(ulong)free.Evictions} ratio={hundredths / 100}.{hundredths % 100:d2} (tsc units per page read, instructions under Bochs; 4 MiB hot, 16 MiB cold, limit 16 MiB; throughput limited / free; goal ratio >= 0.{GoalHundredths})");
            // Where the limited run's extra cost goes: the EPT violations' handler (fault, swap-in
            // with its LZ4 decompression, direct reclaim) against everything else.
            ulong perFault = limited.Faults == 0 ? 0 : limited.FaultTsc / limited.Faults;
            ulong extra = limited.PerPage > free.PerPage ? (limited.PerPage - free.PerPage) * PagesRead : 0;
            ulong inHandler = extra == 0 ? 0 : limited.FaultTsc * 100 / extra;
            ulong load = PoolLoadCost(KernelReclaim.Pool!);
            Log.Info($"bench: hotcold breakdown: limited run while measured: {limited.Faults} EPT violations, {perFault} tsc units each in the handler; the handler is {inHandler}% of the limited run's extra over the free run; a swap pool load of a page like the guest's {load} tsc units");
            if (limited.Evictions == 0 || limited.SwapIns == 0)
            {
                Log.Line("bench: hotcold FAILED: the limited run evicted or swapped in nothing while measured: the limit did not bite, the figure proves nothing");
                return 1;
            }
            return 0;
        }

        /// <summary>
        /// TSC units of one <see cref="ISwapDevice.TryLoad"/> from the kernel's pool (lookup, checksum,
        /// LZ4 decompression) of a page filled as hotcold32 fills one (3 KiB of its page number, 1 KiB
        /// of address × golden ratio), the median-free mean of 64 loads; 0 when the pool is full.
        /// </summary>
        private static ulong PoolLoadCost(ISwapDevice pool)
        {
            byte* page = stackalloc byte[4096];
            uint* w = (uint*)page;
            const uint pageNumber = 0x1234;
            for (int i = 0; i < 768; i++)
                w[i] = 0x5A00_0000u | pageNumber;
            for (int i = 768; i < 1024; i++)
                w[i] = (uint)(pageNumber * 4096 + (uint)i * 4) * 0x9E3779B1u;
            if (!pool.TryStore(page, out ulong handle))
                return 0;
            const int loads = 64;
            ulong t0 = Native.Rdtsc();
            for (int i = 0; i < loads; i++)
                pool.TryLoad(handle, page);
            ulong t1 = Native.Rdtsc();
            pool.Free(handle);
            return (t1 - t0) / loads;
        }

        private static bool RunOnce(MemoryManager<KernelMmPlatform> mm, int limit, ref Figure figure)
        {
            if (!KvmGlue.FindModule("hotcold32", out byte* image, out ulong length))
            {
                Log.Line("bench: the hotcold32 guest is not on the boot image");
                return false;
            }
            Vm? vm = GuestRunner.Create(GuestRam, image, length, out string? problem);
            if (vm == null)
            {
                Log.Write("bench: hotcold: ");
                Log.Line(problem ?? "VM creation failed");
                return false;
            }
            s_start = s_end = 0;
            vm.PhaseHandler = &Phase;
            vm.MaxQuanta = VmcsSetup.BudgetUnits(1200);
            mm.ResidentLimit = limit;
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            mm.ResidentLimit = 0;
            bool ok = vm.ExitStatus == 0 && s_end > s_start && s_start != 0;
            vm.Release();
            if (!ok)
            {
                Log.Line("bench: hotcold: the guest did not complete its rounds");
                return false;
            }
            figure.PerPage = (s_end - s_start) / PagesRead;
            figure.Evictions = s_evictions1 - s_evictions0;
            figure.SwapIns = s_swapIns1 - s_swapIns0;
            figure.Refaults = s_refaults1 - s_refaults0;
            figure.Faults = s_faults1 - s_faults0;
            figure.FaultTsc = s_faultTsc1 - s_faultTsc0;
            return true;
        }
    }
}
