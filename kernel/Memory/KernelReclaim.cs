using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Sched;
using Tandem.Mm;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// Overcommit in the kernel (docs/reclaim.md): the compressed swap pool attached to the mm core,
    /// the resident limit for guest memory, and the reclaimer thread that keeps free memory (or the
    /// room under the limit) between its watermarks, aging and evicting through every MMU. Command
    /// line: <c>swap=SIZE|off</c> (default a quarter of the mm pool), <c>mem.limit=SIZE</c> (resident
    /// guest memory; default none), <c>mmstats=SECONDS</c> (a key=value statistics line at that
    /// interval; default off), <c>ksm=on|off</c> (the page-merging thread; default off).
    /// </summary>
    public static unsafe class KernelReclaim
    {
        /// <summary>The swap device, or null with <c>swap=off</c>.</summary>
        public static CompressedSwapPool<KernelMmPlatform>? Pool;

        /// <summary>The reclaimer thread's watermarks (frames of headroom).</summary>
        public static int LowWatermark, HighWatermark;

        /// <summary>Pages the reclaimer thread evicted, its runs, and aging passes it ran.</summary>
        public static long ThreadEvictions, ThreadRuns, ThreadAgingPasses;

        private static ulong s_statsEveryTsc, s_nextStatsTsc, s_bootTsc;

        /// <summary>The TSC that the t_ms of <see cref="PrintStats"/> counts from (the monitor's stats lines use it too).</summary>
        public static ulong StatsEpochTsc => s_bootTsc;

        /// <summary>After <see cref="KernelMm.Initialize"/> and the scheduler: pool, limit, thread.</summary>
        public static void Initialize()
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null)
                return;
            ulong poolBytes = KernelMm.PoolPages * FrameAllocator.PageSize;
            ulong swapBytes = CommandLine.SwapMiB == CommandLine.Unset ? poolBytes / 4 : CommandLine.SwapMiB << 20;
            if (swapBytes > poolBytes / 2)
            {
                Log.Info($"reclaim: swap= is larger than half the mm pool; using half{poolBytes / 2 >> 20}");
                swapBytes = poolBytes / 2;
            }
            if (swapBytes > 0)
            {
                Pool = new CompressedSwapPool<KernelMmPlatform>(default, mm.Frames, (long)swapBytes);
                // A slot per page the pool could hold at 4:1, at most 2^17 (about 2 MiB of map).
                ulong slots = swapBytes / FrameAllocator.PageSize * 4;
                mm.AttachSwap(Pool, (int)(slots > 1UL << 17 ? 1UL << 17 : slots));
            }
            if (CommandLine.MemLimitMiB != CommandLine.Unset)
                mm.ResidentLimit = (int)((CommandLine.MemLimitMiB << 20) / FrameAllocator.PageSize);
            int frames = (int)KernelMm.PoolPages;
            LowWatermark = frames / 64;
            HighWatermark = frames / 32;
            if (CommandLine.WatermarkHighMiB != CommandLine.Unset)
            {
                ulong low = (CommandLine.WatermarkLowMiB << 20) / FrameAllocator.PageSize;
                ulong high = (CommandLine.WatermarkHighMiB << 20) / FrameAllocator.PageSize;
                if (high > (ulong)frames / 2)
                    Log.Info($"reclaim: watermarks= ignored (the defaults stay): the high one must be at most half the mm pool, in MiB {(ulong)frames / 2 * FrameAllocator.PageSize >> 20}");
                else
                {
                    LowWatermark = (int)low;
                    HighWatermark = (int)high;
                }
            }
            if (CommandLine.MmStatsSeconds != CommandLine.Unset && CommandLine.MmStatsSeconds > 0)
                s_statsEveryTsc = CommandLine.MmStatsSeconds * Timer.TscPerSecond;
            s_bootTsc = Native.Rdtsc();
            s_nextStatsTsc = s_bootTsc + s_statsEveryTsc;
            // Two optional parts, each with its own number ("256 MiB compressed" or "off (...)", "64
            // MiB" or "none"): as Log.Info lines that is four variants of one long line; kept as a chain.
            ulong f = Log.Begin();
            Log.Write("reclaim: swap ");
            if (Pool == null)
                Log.Write("off (guest pages are never evicted: their contents have nowhere to go)");
            else
            {
                Log.Write(swapBytes >> 20);
                Log.Write(" MiB compressed (LZ4) in RAM");
            }
            Log.Write(", guest memory limit ");
            if (mm.ResidentLimit == 0)
                Log.Write("none");
            else
            {
                Log.Write(CommandLine.MemLimitMiB);
                Log.Write(" MiB");
            }
            Log.Write(", watermarks ");
            Log.Write((ulong)LowWatermark);
            Log.WriteChar('/');
            Log.Write((ulong)HighWatermark);
            Log.Write(" frames\n");
            Log.End(f);
            if (Scheduler.Spawn("reclaim", &Run, 0) == null)
                Log.Line("reclaim: no memory for the reclaimer thread; reclaim is direct only");
            if (CommandLine.Ksm)
            {
                Scanner = new MergeScanner<KernelMmPlatform>(mm, MergeTableSize);
                if (Scheduler.Spawn("ksm", &Merge, 0) == null)
                    Log.Line("reclaim: no memory for the merge thread; ksm=on has no effect");
                else
                    Log.Line("reclaim: page merging on (ksm=on): guest RAM is scanned for identical pages");
            }
        }

        /// <summary>The page-merging scanner (<c>ksm=on</c>), or null.</summary>
        public static MergeScanner<KernelMmPlatform>? Scanner;

        /// <summary>Candidate-table entries of the kernel's merge scanner.</summary>
        public const int MergeTableSize = 1 << 14;

        /// <summary>Pages the merge thread scans per step (then it sleeps 20 ms).</summary>
        public const int MergePagesPerStep = 256;

        /// <summary>The merge thread: a scan step with preemption off, then 20 ms asleep.</summary>
        private static void Merge(ulong argument)
        {
            MergeScanner<KernelMmPlatform> scanner = Scanner!;
            while (true)
            {
                Scheduler.PreemptDisable();
                scanner.ScanStep(MergePagesPerStep);
                Scheduler.PreemptEnable();
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 50);
            }
        }

        /// <summary>
        /// The reclaimer thread: every 10 ms, when the headroom is below the low watermark, evict
        /// (and age when eviction finds nothing old) until it is above the high one, in batches with
        /// preemption off (the mm locks are taken with interrupts on: docs/locking.md), preemption on
        /// between batches. It never waits on a lock a running vCPU holds: aging uses the fast-only
        /// notifier call, and eviction's exact check takes an EPT's MMU lock only for the moment its
        /// holders keep it (docs/reclaim.md).
        /// </summary>
        private static void Run(ulong argument)
        {
            MemoryManager<KernelMmPlatform> mm = KernelMm.Manager!;
            while (true)
            {
                if (mm.Headroom < LowWatermark)
                {
                    ThreadRuns++;
                    int idle = 0;
                    while (mm.Headroom < HighWatermark && idle < 8)
                    {
                        Scheduler.PreemptDisable();
                        int got = mm.Evict(Reclaimer<KernelMmPlatform>.Batch);
                        if (got == 0)
                        {
                            mm.AgingPass();
                            ThreadAgingPasses++;
                        }
                        Scheduler.PreemptEnable();
                        ThreadEvictions += got;
                        idle = got == 0 ? idle + 1 : 0;
                        Scheduler.Yield();
                    }
                }
                ReportFullPool(mm);
                if (s_statsEveryTsc != 0 && Native.Rdtsc() >= s_nextStatsTsc)
                {
                    // From now, not from the missed deadline: a late thread prints one line, not a burst.
                    s_nextStatsTsc = Native.Rdtsc() + s_statsEveryTsc;
                    PrintStats("mmstats");
                }
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
        }

        private static long s_fullSeen;
        private static bool s_fullReported;

        /// <summary>
        /// The swap pool refused a page since the last look: one line says so (the page stayed in
        /// memory, in the swap cache: nothing is lost, but eviction of anonymous memory stalls).
        /// Said again only after the pool has had room again.
        /// </summary>
        private static void ReportFullPool(MemoryManager<KernelMmPlatform> mm)
        {
            SwapMap<KernelMmPlatform>? swap = mm.Swap;
            if (swap == null || Pool == null)
                return;
            long full = swap.DeviceFullRefusals;
            bool refused = full != s_fullSeen;
            s_fullSeen = full;
            if (!refused)
            {
                if (Pool.FramesInUse < Pool.LimitFrames - Pool.LimitFrames / 16)
                    s_fullReported = false;
                return;
            }
            if (s_fullReported)
                return;
            s_fullReported = true;
            Log.Info($"reclaim: the swap pool is full ({(ulong)Pool.LimitFrames * FrameAllocator.PageSize >> 20} MiB): pages it refused stay in memory, nothing is lost, but eviction of guest memory stalls; a larger swap= helps");
        }

        /// <summary>
        /// One line of key=value pairs (a program can parse it): time, free frames, resident guest
        /// pages and the limit, pages per generation (oldest first), aging passes, pages aged,
        /// look-around promotions, evictions, refaults, swap-outs, swap-ins, clean evictions, swap
        /// cache hits, device-full refusals, slots in use, pages in the pool by kind, pool frames and
        /// the compression ratio (pages stored per pool frame, to two decimals).
        /// </summary>
        public static void PrintStats(string prefix)
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null)
                return;
            LruStats s = mm.Lru.Stats;
            // Kept as a chain: the generations are a variable number of figures on the one line.
            ulong f = Log.Begin();
            Log.Write(prefix);
            Pair(" t_ms", (Native.Rdtsc() - s_bootTsc) / (Timer.TscPerSecond / 1000));
            Pair(" free", (ulong)mm.Frames.BuddyFreeFrames);
            Pair(" resident", (ulong)mm.Lru.Listed);
            Pair(" limit", (ulong)mm.ResidentLimit);
            Log.Write(" gens=");
            for (int seq = mm.Lru.MinSeq; seq <= mm.Lru.MaxSeq; seq++)
            {
                if (seq != mm.Lru.MinSeq)
                    Log.WriteChar('/');
                Log.Write((ulong)mm.Lru.PagesIn(seq));
            }
            Pair(" aging_passes", (ulong)s.AgingPasses);
            Pair(" aged", (ulong)s.PagesAged);
            Pair(" lookaround_promotions", (ulong)s.LookAroundPromotions);
            Pair(" evictions", (ulong)s.Evictions);
            Pair(" refaults", (ulong)s.Refaults);
            Pair(" huge_splits", (ulong)s.HugeSplits);
            MergeStats m = mm.MergeStats;
            Pair(" merges", (ulong)m.Merges);
            Pair(" zero_merges", (ulong)m.ZeroMerges);
            Pair(" cow_breaks", (ulong)m.CowBreaks);
            SwapMap<KernelMmPlatform>? swap = mm.Swap;
            if (swap != null && Pool != null)
            {
                CompressedSwapPoolStatistics p = Pool.ReadStatistics();
                Pair(" swapouts", (ulong)swap.SwapOuts);
                Pair(" swapins", (ulong)swap.SwapIns);
                Pair(" clean", (ulong)swap.CleanEvictions);
                Pair(" cache_hits", (ulong)swap.CacheHits);
                Pair(" device_full", (ulong)swap.DeviceFullRefusals);
                Pair(" slots", (ulong)swap.SlotsInUse);
                Pair(" zero", (ulong)p.ZeroPages);
                Pair(" same", (ulong)p.SameFilledPages);
                Pair(" compressed", (ulong)p.CompressedPages);
                Pair(" raw", (ulong)p.RawPages);
                Pair(" pool_frames", (ulong)p.FramesInUse);
                ulong stored = (ulong)(p.CompressedPages + p.RawPages);
                ulong hundredths = p.FramesInUse == 0 ? 0 : stored * 100 / (ulong)p.FramesInUse;
                Log.Write(" ratio=");
                Log.Write(hundredths / 100);
                Log.WriteChar('.');
                if (hundredths % 100 < 10)
                    Log.WriteChar('0');
                Log.Write(hundredths % 100);
            }
            Log.WriteChar('\n');
            Log.End(f);
        }

        private static void Pair(string key, ulong value)
        {
            Log.Write(key);
            Log.WriteChar('=');
            Log.Write(value);
        }
    }
}
