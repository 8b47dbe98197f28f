using System;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// <c>--lookaround</c>: the entries an aging pass touches with look-around (and the dense-table
/// filter it feeds, MGLRU's Bloom filter) against without (every pass walks every table), on a
/// clustered working set: 64 last-level tables (128 MiB of anonymous memory, 32 Ki pages), 8 of
/// them hot (every page touched each epoch, in the primary and in a lockless secondary), the
/// rest cold. The hot tables and 16 cold ones start resident. Each epoch touches the hot set,
/// faults in the next cold table in rotation (a scan: 512 pages that are not used again) and
/// evicts 512 pages (aging whenever eviction needs a new generation): steady pressure. The count
/// is deterministic (no timing). "Entries" are primary leaf entries read plus secondary entries
/// examined by the fast-only calls, of the aging walk and (with) of look-around; the exact
/// checks of eviction are reported beside. Goal: entries per aging pass, with / without ≤ 0.3.
/// Exit status 1 when missed.
/// </summary>
public static unsafe class LookAroundBench
{
    private const int Spans = 64;
    private const int HotEvery = 8; // span k is hot when k % 8 == 3
    private const int Pages = Spans * 512;
    private const int Epochs = 240;
    private const int Warmup = 40;
    private const int EvictPerEpoch = 512;
    private static readonly VirtAddr Base = new VirtAddr(0x4000_0000);

    private readonly struct Result
    {
        public readonly long Passes, WalkEntries, LookAroundEntries, SecondaryEntries, Evictions, KeptYoung, Promotions, Skipped, Exact;
        public Result(long p, long w, long l, long s, long e, long k, long pr, long sk, long x)
        {
            Passes = p; WalkEntries = w; LookAroundEntries = l; SecondaryEntries = s; Evictions = e; KeptYoung = k; Promotions = pr; Skipped = sk; Exact = x;
        }
        public long Entries => WalkEntries + LookAroundEntries + SecondaryEntries;
    }

    public static int Run()
    {
        Result without = RunOne(lookAround: false);
        Result with = RunOne(lookAround: true);
        Print("without look-around", without);
        Print("with look-around   ", with);
        double total = (double)with.Entries / without.Entries;
        double ratio = ((double)with.Entries / with.Passes) / ((double)without.Entries / without.Passes);
        Console.WriteLine($"lookaround: entries touched per aging pass, with / without: {ratio:F3} (goal <= 0.3) {(ratio <= 0.3 ? "ok" : "MISSED")}; all entries over the run (same evictions): {total:F3}");
        return ratio <= 0.3 ? 0 : 1;
    }

    private static void Print(string name, Result r)
    {
        Console.WriteLine($"lookaround: {name}: {r.Passes} aging passes, entries {r.Entries:N0} (walk {r.WalkEntries:N0}, look-around {r.LookAroundEntries:N0}, secondary {r.SecondaryEntries:N0}), " +
            $"{(double)r.Entries / r.Passes:N0} per pass, tables skipped {r.Skipped:N0}; exact-check entries {r.Exact:N0}; evictions {r.Evictions:N0}, kept young {r.KeptYoung:N0}, look-around promotions {r.Promotions:N0}");
    }

    private static Result RunOne(bool lookAround)
    {
        using BenchMachine machine = new BenchMachine((ulong)(Pages + 4096) * 4096, 1, 64);
        MemoryManager<BenchMmPlatform> mm = new MemoryManager<BenchMmPlatform>(machine.MmPlatform, machine.FrameCount, 16, machine.FrameCount);
        mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        mm.Lru.LookAround = lookAround;
        mm.Lru.FilteredWalk = lookAround;
        AddressSpace<BenchMmPlatform> space = mm.CreateAddressSpace()!;
        space.AddRegion(Region.Anonymous(Base, (ulong)Pages * 4096, PageProt.Write | PageProt.User));
        space.Activate(0);
        CountingSecondary sec = new CountingSecondary(Pages);
        space.Notifiers.Register(sec, MmuNotifierFlags.LocklessAging);
        for (int span = 0; span < Spans; span++)
        {
            if (span % HotEvery == 3 || span < 16)
                FaultSpan(space, span);
        }
        int nextCold = 16;
        long p0 = 0, w0 = 0, l0 = 0, s0 = 0, e0 = 0, k0 = 0, pr0 = 0, sk0 = 0, x0 = 0;
        for (int epoch = 0; epoch < Epochs; epoch++)
        {
            if (epoch == Warmup)
            {
                LruStats st = mm.Lru.Stats;
                (p0, w0, l0, s0, e0, k0, pr0, sk0, x0) = (st.AgingPasses, st.WalkEntries, st.LookAroundEntries, sec.Entries, st.Evictions, st.EvictionsKeptYoung, st.LookAroundPromotions, st.WalkTablesSkipped, sec.ExactEntries);
            }
            for (int span = 0; span < Spans; span++)
            {
                if (span % HotEvery != 3)
                    continue;
                for (int i = span * 512; i < span * 512 + 512; i++)
                {
                    TouchPrimary(machine, space, Base + (ulong)i * 4096);
                    sec.Young[i] = 1;
                }
            }
            while (nextCold % HotEvery == 3)
                nextCold = (nextCold + 1) % Spans;
            FaultSpan(space, nextCold);
            nextCold = (nextCold + 1) % Spans;
            int evicted = 0;
            for (int round = 0; evicted < EvictPerEpoch && round < 64; round++)
            {
                int got = mm.Evict(EvictPerEpoch - evicted);
                evicted += got;
                if (got == 0)
                    mm.AgingPass();
            }
        }
        LruStats s = mm.Lru.Stats;
        return new Result(s.AgingPasses - p0, s.WalkEntries - w0, s.LookAroundEntries - l0, sec.Entries - s0, s.Evictions - e0,
            s.EvictionsKeptYoung - k0, s.LookAroundPromotions - pr0, s.WalkTablesSkipped - sk0, sec.ExactEntries - x0);
    }

    private static void FaultSpan(AddressSpace<BenchMmPlatform> space, int span)
    {
        for (int i = span * 512; i < span * 512 + 512; i++)
            space.HandleFault(Base + (ulong)i * 4096, true);
    }

    /// <summary>The CPU's access: sets A in the present leaf (a page evicted meanwhile is faulted back first).</summary>
    private static void TouchPrimary(BenchMachine machine, AddressSpace<BenchMmPlatform> space, VirtAddr va)
    {
        for (int attempt = 0; attempt < 2; attempt++)
        {
            foreach (PteSlot slot in new PageTableWalker<BenchMmPlatform>(machine.MmPlatform, space.Root, va, va + 1))
            {
                if (slot.Level == 1 && slot.Value.IsPresent)
                {
                    Interlocked.Or(ref *slot.Pointer, PageTableEntry.Accessed);
                    return;
                }
            }
            space.HandleFault(va, true);
        }
    }

    /// <summary>A lockless secondary that answers aging with one bitmap call per span and counts the entries it examines.</summary>
    private sealed class CountingSecondary : IMmuNotifier, IBitmapAgingNotifier
    {
        public readonly int[] Young;
        public long Entries, ExactEntries;

        public CountingSecondary(int pages) { Young = new int[pages]; }

        private int Index(VirtAddr va) => (int)((va.Value - Base.Value) >> 12);

        private bool Age(VirtAddr start, VirtAddr end, bool exact = false)
        {
            bool young = false;
            for (ulong va = start.Value; va < end.Value; va += 4096)
            {
                if (exact)
                    ExactEntries++;
                else
                    Entries++;
                young |= Interlocked.Exchange(ref Young[Index(new VirtAddr(va))], 0) != 0;
            }
            return young;
        }

        public void InvalidateRangeStart(in MmuNotifierRange range) { }
        public void InvalidateRangeEnd(in MmuNotifierRange range) { }
        public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => Age(start, end, exact: true);
        public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => Age(start, end, exact: true);
        public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => Age(start, end);
        public void Release(IAddressSpace space) { }

        public void TestClearYoungFastOnlyBitmap(IAddressSpace space, VirtAddr start, int pages, ulong* ask, ulong* young)
        {
            for (int p = 0; p < pages; p++)
            {
                if ((ask[p >> 6] & (1UL << (p & 63))) == 0)
                    continue;
                VirtAddr va = start + (ulong)p * 4096;
                if (Age(va, va + 4096))
                    young[p >> 6] |= 1UL << (p & 63);
            }
        }
    }
}
