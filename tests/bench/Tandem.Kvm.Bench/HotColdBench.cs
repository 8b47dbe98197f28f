using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Threading;
using Tandem.Benchmarks;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// <c>--hotcold</c> (issue 11, "Benchmarks"): a guest with a hot set that fits under the resident
/// limit and a cold set that does not, against the same guest with no limit, both in one run. The
/// guest's RAM is <see cref="HotPages"/> hot pages (16 MiB) and <see cref="ColdPages"/> cold pages
/// (64 MiB), filled once with swapfill32's contents (each page compresses about 4:1). One round
/// reads every word of every hot page, then every word of the next <see cref="ChunkPages"/> cold
/// pages in turn (a stream that wraps: 90 % of the page reads go to the hot set, 10 % stream
/// through the cold set). Each guest read goes through a TLB model over the EPT: a miss walks the
/// EPT, sets the leaf's accessed bit as the CPU's page walker does, and on an EPT violation calls
/// <see cref="EptMmu{TPlatform}.HandleViolation"/> (demand fault or swap-in); every INVEPT or
/// remote flush empties the TLB. The limited side (A) has <see cref="MemoryManager{TPlatform}.ResidentLimit"/>
/// = <see cref="LimitPages"/> (32 MiB: the hot set and a quarter of the cold one), the compressed
/// swap pool attached as the kernel attaches it, direct reclaim in its faults, and a
/// <see cref="Reclaimer{TPlatform}"/> run once per round (the kernel's thread wakes every 10 ms)
/// on the guest's own thread, so every cycle of reclaim is charged to the guest's throughput. The
/// free side (B) is the same with no limit. Throughput is page reads per thread CPU second; each
/// of <see cref="Iterations"/> iterations runs <see cref="RoundsPerIteration"/> rounds of each side,
/// alternating which goes first. Goal: the median over iterations of throughput A / B ≥ 0.7.
/// Fails loudly (exit 1) when the limited side evicted, swapped in or refaulted nothing, or the
/// two sides read different words.
/// </summary>
public static unsafe class HotColdBench
{
    public const int HotPages = 4096;
    public const int ColdPages = 16384;
    /// <summary>Cold pages read per round: a ninth of the hot set, so 10 % of a round's page reads.</summary>
    public const int ChunkPages = HotPages / 9;
    /// <summary>The limited side's resident limit: the hot set and a quarter of the cold set.</summary>
    public const int LimitPages = HotPages + ColdPages / 4;
    public const int Iterations = 25;
    public const int RoundsPerIteration = 8;
    public const double Goal = 0.7;
    /// <summary>Entries of the TLB model (direct-mapped by guest frame).</summary>
    private const int TlbEntries = 1536;

    /// <summary>The measured figures of one run (<see cref="Measure"/>).</summary>
    public sealed class Result
    {
        public double Ratio, TotalRatio, NsPerPageA, NsPerPageB, WallRatio;
        public long Evictions, SwapIns, SwapOuts, Refaults, CleanEvictions, CacheHits, DirectReclaims, ReclaimerEvictions, AgingPasses, PoolFrames, PoolPages;
        public long ResidentA, ResidentB, Faults;
        public double FaultShare, ReclaimerShare, NsPerFault, LoadShare, StoreShare;
        public string? Problem;

        public bool Met => Problem == null && Ratio >= Goal;

        public string Detail =>
            string.Create(CultureInfo.InvariantCulture, $"hot {HotPages} pages, cold {ColdPages}, {ChunkPages} cold per round, limit {LimitPages}; ") +
            string.Create(CultureInfo.InvariantCulture, $"CPU ns per page read: limited {NsPerPageA:F1}, free {NsPerPageB:F1}; whole-run ratio {TotalRatio:F3}, wall-clock {WallRatio:F3}; ") +
            $"limited side: evictions {Evictions}, swap-outs {SwapOuts}, swap-ins {SwapIns}, refaults {Refaults}, clean evictions {CleanEvictions}, " +
            $"swap-cache hits {CacheHits}, direct reclaims {DirectReclaims}, reclaimer evictions {ReclaimerEvictions}, aging passes {AgingPasses}, " +
            $"resident {ResidentA} (free side {ResidentB}), pool {PoolPages} pages in {PoolFrames} frames; " +
            (!Profile ? $"EPT violations {Faults}" : string.Create(CultureInfo.InvariantCulture, $"PROFILED (clock reads around the parts: the ratio is lowered by them): EPT violations {Faults}, {NsPerFault:F0} CPU ns each (direct reclaim included), {FaultShare:P1} of the limited side's CPU time, the reclaimer {ReclaimerShare:P1}, in them the pool's loads (LZ4 decompression) {LoadShare:P1} and stores {StoreShare:P1}"));
    }

    /// <summary>
    /// <c>--hotcold profile</c>: the limited side also reads the thread CPU clock around each EPT
    /// violation, each reclaimer run and each load and store of the pool, and prints their shares.
    /// The clock reads are system calls, so they lower the ratio itself: the goal is judged on a
    /// run without them.
    /// </summary>
    public static bool Profile;

    /// <summary><c>--hotcold [profile]</c>: measures and prints the goal line; exit status 1 when missed or broken.</summary>
    public static int Run(bool profile)
    {
        Profile = profile;
        Result r = Measure();
        Print(r);
        return r.Met ? 0 : 1;
    }

    public static void Print(Result r)
    {
        Console.WriteLine("hotcold: " + r.Detail);
        if (r.Problem != null)
            Console.WriteLine("hotcold: FAILED: " + r.Problem);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"hotcold: throughput with the limit / without: {r.Ratio:F3} (median of {Iterations} iterations; goal >= {Goal:F1}) {(r.Met ? "ok" : "MISSED")}"));
    }

    public static Result Measure()
    {
        using Guest limited = new Guest(LimitPages);
        using Guest free = new Guest(0);
        Console.WriteLine("hotcold: filling both guests (hot and cold sets written once) and one warm-up cycle through the cold set");
        limited.Fill();
        free.Fill();
        int warmRounds = ColdPages / ChunkPages + 1;
        for (int i = 0; i < warmRounds; i++)
        {
            limited.Round();
            free.Round();
        }
        LruStats s0 = limited.Mm.Lru.Stats;
        long ev0 = s0.Evictions, rf0 = s0.Refaults, ag0 = s0.AgingPasses;
        long in0 = limited.Swap.SwapIns, out0 = limited.Swap.SwapOuts, cl0 = limited.Swap.CleanEvictions, ch0 = limited.Swap.CacheHits;
        long dr0 = limited.Mm.LimitReclaims, re0 = limited.ReclaimerEvictions;
        long f0 = limited.Faults, fns0 = limited.FaultNs, rns0 = limited.ReclaimerNs, lns0 = limited.Device.LoadNs, sns0 = limited.Device.StoreNs;
        limited.Sum = free.Sum = 0;
        List<double> ratios = new List<double>();
        long cpuA = 0, cpuB = 0, wallA = 0, wallB = 0;
        for (int it = 0; it < Iterations; it++)
        {
            long a = 0, b = 0;
            for (int round = 0; round < RoundsPerIteration; round++)
            {
                bool aFirst = ((it * RoundsPerIteration + round) & 1) == 0;
                for (int k = 0; k < 2; k++)
                {
                    Guest g = aFirst == (k == 0) ? limited : free;
                    long w0 = Stopwatch.GetTimestamp();
                    long c0 = ThreadCpuClock.Now();
                    g.Round();
                    long c = ThreadCpuClock.Now() - c0;
                    long w = Stopwatch.GetTimestamp() - w0;
                    if (g == limited)
                    {
                        a += c;
                        wallA += w;
                    }
                    else
                    {
                        b += c;
                        wallB += w;
                    }
                }
            }
            cpuA += a;
            cpuB += b;
            // Same work on both sides: throughput A / B = CPU time B / A.
            ratios.Add((double)b / a);
        }
        ratios.Sort();
        LruStats s1 = limited.Mm.Lru.Stats;
        double pages = (double)Iterations * RoundsPerIteration * (HotPages + ChunkPages);
        CompressedSwapPoolStatistics pool = limited.Pool.ReadStatistics();
        Result r = new Result
        {
            Ratio = ratios[ratios.Count / 2],
            TotalRatio = (double)cpuB / cpuA,
            WallRatio = (double)wallB / wallA,
            NsPerPageA = cpuA / pages,
            NsPerPageB = cpuB / pages,
            Evictions = s1.Evictions - ev0,
            Refaults = s1.Refaults - rf0,
            AgingPasses = s1.AgingPasses - ag0,
            SwapIns = limited.Swap.SwapIns - in0,
            SwapOuts = limited.Swap.SwapOuts - out0,
            CleanEvictions = limited.Swap.CleanEvictions - cl0,
            CacheHits = limited.Swap.CacheHits - ch0,
            DirectReclaims = limited.Mm.LimitReclaims - dr0,
            ReclaimerEvictions = limited.ReclaimerEvictions - re0,
            Faults = limited.Faults - f0,
            FaultShare = (double)(limited.FaultNs - fns0) / cpuA,
            ReclaimerShare = (double)(limited.ReclaimerNs - rns0) / cpuA,
            LoadShare = (double)(limited.Device.LoadNs - lns0) / cpuA,
            StoreShare = (double)(limited.Device.StoreNs - sns0) / cpuA,
            NsPerFault = (double)(limited.FaultNs - fns0) / Math.Max(1, limited.Faults - f0),
            ResidentA = limited.Mm.Lru.Listed,
            ResidentB = free.Mm.Lru.Listed,
            PoolFrames = pool.FramesInUse,
            PoolPages = pool.CompressedPages + pool.RawPages + pool.ZeroPages + pool.SameFilledPages,
        };
        if (r.Evictions == 0 || r.SwapIns == 0 || r.Refaults == 0)
            r.Problem = $"the limited side evicted {r.Evictions}, swapped in {r.SwapIns}, refaulted {r.Refaults} pages while measured: the limit did not bite, the bench proves nothing";
        else if (limited.Sum != free.Sum)
            r.Problem = $"the two guests read different words (sums {limited.Sum:x} and {free.Sum:x}): a page came back wrong";
        else if (free.Mm.Lru.Stats.Evictions != 0)
            r.Problem = "the free side evicted pages: it is not the no-limit baseline";
        return r;
    }

    /// <summary>The pool as the swap device, with the thread CPU time spent in its loads (decompression) counted.</summary>
    private sealed class TimedDevice : ISwapDevice
    {
        private readonly ISwapDevice _inner;
        public long LoadNs, StoreNs;
        public TimedDevice(ISwapDevice inner) { _inner = inner; }

        public bool TryStore(byte* page, out ulong handle)
        {
            long c0 = ThreadCpuClock.Now();
            bool ok = _inner.TryStore(page, out handle);
            StoreNs += ThreadCpuClock.Now() - c0;
            return ok;
        }

        public bool TryLoad(ulong handle, byte* page)
        {
            long c0 = ThreadCpuClock.Now();
            bool ok = _inner.TryLoad(handle, page);
            LoadNs += ThreadCpuClock.Now() - c0;
            return ok;
        }

        public void Free(ulong handle) => _inner.Free(handle);
    }

    /// <summary>swapfill32's value of the dword at guest-physical <paramref name="gpa"/> (tools/StubGen/Guests/SwapFillGuest.cs).</summary>
    private static uint Value(uint gpa) => (gpa & 0xFFF) < 0xC00 ? (gpa >> 12) | 0x5A00_0000u : unchecked(gpa * 0x9E3779B1u);

    /// <summary>One side: a machine, an mm with the compressed swap pool, a VM's address space and EPT, and the guest's TLB.</summary>
    private sealed class Guest : IDisposable
    {
        private static readonly VirtAddr RamBase = new VirtAddr(0x40_0000_0000);
        private const int Pages = HotPages + ColdPages;

        public readonly BenchMachine Machine;
        public readonly MemoryManager<BenchMmPlatform> Mm;
        public readonly CompressedSwapPool<BenchMmPlatform> Pool;
        public readonly SwapMap<BenchMmPlatform> Swap;
        public readonly TimedDevice Device;
        private readonly AddressSpace<BenchMmPlatform> _space;
        private readonly EptMmu<BenchEptPlatform> _ept;
        private readonly Reclaimer<BenchMmPlatform>? _reclaimer;
        private readonly ulong[] _tlbGfn = new ulong[TlbEntries];
        private readonly nint[] _tlbPage = new nint[TlbEntries];
        private readonly bool[] _tlbDirty = new bool[TlbEntries];
        private long _flushesSeen;
        private int _nextCold;
        public ulong Sum;
        public long ReclaimerEvictions;
        /// <summary>EPT violations handled, and the thread CPU time spent in them (direct reclaim included) and in the reclaimer.</summary>
        public long Faults, FaultNs, ReclaimerNs;

        public Guest(int limit)
        {
            // Frames for the guest's RAM, the pool (at most half of the cold set's frames) and slack.
            int poolFrames = ColdPages / 2;
            Machine = new BenchMachine((ulong)(Pages + poolFrames + 4096) * PageSizes.Size4K, cpus: 1, tablePages: Pages / 512 + 64);
            Mm = new MemoryManager<BenchMmPlatform>(Machine.MmPlatform, Machine.FrameCount, 16, Machine.FrameCount);
            Pool = new CompressedSwapPool<BenchMmPlatform>(Machine.MmPlatform, Mm.Frames, (long)poolFrames * 4096);
            // As the kernel sizes the map: a slot per page the pool could hold at 4:1.
            Device = new TimedDevice(Pool);
            Swap = Mm.AttachSwap(Profile ? Device : Pool, poolFrames * 4);
            _space = Mm.CreateAddressSpace() ?? throw new InvalidOperationException("address space");
            if (!_space.AddRegion(Region.Anonymous(RamBase, (ulong)Pages * PageSizes.Size4K, PageProt.Write | PageProt.User)))
                throw new InvalidOperationException("ram region");
            _space.Activate(0);
            _ept = EptMmu<BenchEptPlatform>.Create(Machine.EptPlatform, _space) ?? throw new InvalidOperationException("ept");
            if (!_ept.AddMemslot(new Memslot(new Gfn(0), Pages, RamBase, true)))
                throw new InvalidOperationException("memslot");
            _ept.RegisterWith(_space.Notifiers);
            _ept.Activate(0);
            if (limit != 0)
            {
                Mm.ResidentLimit = limit;
                // The kernel's watermarks are 1/64 and 1/32 of its mm pool; here of the limit.
                _reclaimer = new Reclaimer<BenchMmPlatform>(Mm, limit / 64, limit / 32);
            }
        }

        /// <summary>The guest writes every page once (swapfill32's contents), as its boot would.</summary>
        public void Fill()
        {
            for (int p = 0; p < Pages; p++)
            {
                uint* d = (uint*)Page(p, true);
                uint gpa = (uint)p * 4096;
                for (int k = 0; k < 1024; k++)
                    d[k] = Value(gpa + (uint)k * 4);
                if ((p & 255) == 255)
                    RunReclaimer();
            }
        }

        /// <summary>One round: every word of the hot set, then every word of the next chunk of the cold set.</summary>
        public void Round()
        {
            ulong sum = 0;
            for (int p = 0; p < HotPages; p++)
                sum += ReadPage(p);
            for (int i = 0; i < ChunkPages; i++)
            {
                sum += ReadPage(HotPages + _nextCold);
                _nextCold = _nextCold + 1 == ColdPages ? 0 : _nextCold + 1;
            }
            Sum += sum;
            RunReclaimer();
        }

        private void RunReclaimer()
        {
            if (_reclaimer == null)
                return;
            long c0 = Profile ? ThreadCpuClock.Now() : 0;
            ReclaimerEvictions += _reclaimer.RunOnce();
            if (Profile)
                ReclaimerNs += ThreadCpuClock.Now() - c0;
        }

        private ulong ReadPage(int page)
        {
            ulong* q = (ulong*)Page(page, false);
            ulong s = 0;
            for (int k = 0; k < 512; k++)
                s += q[k];
            return s;
        }

        /// <summary>
        /// The guest's access to page <paramref name="page"/>: a TLB hit, or the page walker (sets A,
        /// and D for a write, in the EPT leaf) after an EPT violation was handled if needed.
        /// </summary>
        private byte* Page(int page, bool write)
        {
            long flushes = Volatile.Read(ref Machine.InvEpts) + Volatile.Read(ref Machine.RemoteFlushes);
            if (flushes != _flushesSeen)
            {
                Array.Clear(_tlbGfn);
                _flushesSeen = flushes;
            }
            int slot = page % TlbEntries;
            ulong tag = (ulong)page + 1;
            if (_tlbGfn[slot] == tag && (!write || _tlbDirty[slot]))
                return (byte*)_tlbPage[slot];
            GuestPhysAddr gpa = new Gfn((ulong)page).Address;
            for (int attempt = 0; attempt < 1000; attempt++)
            {
                foreach (EptSlot s in new EptWalker<BenchEptPlatform>(_ept.Platform, _ept.Root, gpa, new GuestPhysAddr(gpa.Value + 1)))
                {
                    if (!s.Value.IsLeaf(s.Level) || (write && !s.Value.IsWritable))
                        break;
                    Interlocked.Or(ref *s.Pointer, EptEntry.Accessed | (write ? EptEntry.Dirty : 0));
                    ulong pa = s.Value.LeafAddress(s.Level).Value + (gpa.Value - s.Address.Value);
                    byte* p = Machine.Memory + pa;
                    _tlbGfn[slot] = tag;
                    _tlbPage[slot] = (nint)p;
                    _tlbDirty[slot] = write;
                    return p;
                }
                long c0 = Profile ? ThreadCpuClock.Now() : 0;
                FaultStatus status = _ept.HandleViolation(gpa, write);
                if (Profile)
                    FaultNs += ThreadCpuClock.Now() - c0;
                Faults++;
                if (status != FaultStatus.Ok && status != FaultStatus.Exists)
                    throw new InvalidOperationException("hotcold: EPT violation at page " + page + " failed: " + status);
            }
            throw new InvalidOperationException("hotcold: EPT violation livelock at page " + page);
        }

        public void Dispose() => Machine.Dispose();
    }
}
