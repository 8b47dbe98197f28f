using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// The overcommit torture of issue 11: everything at once, against a model of every page's
/// contents. One address space with an anonymous mergeable window and a userfault window, a
/// resident limit of half the pages, a compressed swap pool, a lockless and a locking recording
/// secondary MMU, and a <see cref="MirrorView{TPlatform}"/> over both windows. Threads:
/// <list type="bullet">
/// <item>4 workers, each the only writer (and reader) of its pages (page i belongs to worker
/// i % 4): writes through the primary (the CPU's page walker sets A/D; the bytes are written while
/// the worker holds its "CPU", which every TLB flush waits for) or through a secondary (under the
/// secondary's MMU lock, which its zap waits for; D set in the secondary entry only, so only the
/// zap's dirty transfer tells the frame), reads through the primary, a secondary or the mirror,
/// each checked against the model; unmaps (the page is then zero, or the postcopy source again
/// in the userfault window), evicts and ages their own pages;</item>
/// <item>a reclaimer (watermarks over the resident limit: aging with generations, look-around,
/// eviction through every MMU into swap), a merge scanner (values are drawn from a small set, so
/// pages merge, and break on write), and a userfault handler that fills missing pages of the
/// userfault window from the "source" (postcopy), racing with eviction.</item>
/// </list>
/// Each write stamps (page, version) or one of a few shared values into the page, in three shapes
/// (uniform, patterned, scrambled: the pool's marker, LZ4 and raw paths). At the end every page is
/// read back through every view, everything is torn down, and there must be 0 mismatches, 0 leaked
/// frames, 0 frames in use, an empty swap pool, and every counter above 0. The seed is printed;
/// TANDEM_SEED replays it (the interleaving differs from run to run); TANDEM_OVERCOMMIT_OPS sets
/// the number of operations.
/// </summary>
public unsafe class OvercommitTortureTests
{
    private readonly ITestOutputHelper _out;
    public OvercommitTortureTests(ITestOutputHelper output) { _out = output; }

    private const int Workers = 4;
    private const int AnonPages = 192;
    private const int UfPages = 64;
    private const int Pages = AnonPages + UfPages;
    private static readonly VirtAddr Base = new VirtAddr(0x4000_0000);

    private static VirtAddr Va(int i) => Base + (ulong)i * 4096;
    private static bool IsUserfault(int i) => i >= AnonPages;

    /// <summary>The postcopy source's contents of page <paramref name="i"/> (what the handler fills).</summary>
    private static ulong Source(int i) => 0x5005_0000_0000UL + (ulong)i * 0x1_0001UL;

    /// <summary>A few values many pages share (merge candidates); their shapes differ (v % 3).</summary>
    private static ulong Shared(int k) => 0x7000_0000_0000_0000UL + (ulong)k;

    private static ulong Mix(ulong x)
    {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53UL;
        x ^= x >> 33;
        return x;
    }

    /// <summary>Word <paramref name="k"/> of a page holding value <paramref name="v"/>: 0 is a zero page; else uniform, patterned or scrambled by v % 3.</summary>
    private static ulong Word(ulong v, int k)
    {
        if (v == 0)
            return 0;
        switch (v % 3)
        {
            case 0: return v;
            case 1: return v ^ ((ulong)(k & 15) * 0x0101010101010101UL);
            default: return Mix(v + (ulong)k);
        }
    }

    private static void FillPage(byte* p, ulong v)
    {
        ulong* w = (ulong*)p;
        for (int k = 0; k < 512; k++)
            w[k] = Word(v, k);
    }

    /// <summary>-1 when the page holds <paramref name="v"/>, else the first word that differs.</summary>
    private static int FirstDifference(byte* p, ulong v)
    {
        ulong* w = (ulong*)p;
        for (int k = 0; k < 512; k++)
        {
            if (w[k] != Word(v, k))
                return k;
        }
        return -1;
    }

    private sealed class Handler : IUserfaultHandler
    {
        public readonly BlockingCollection<VirtAddr> Requests = new BlockingCollection<VirtAddr>();
        public void OnMissing(IAddressSpace space, VirtAddr page, bool write) => Requests.Add(page);
    }

    /// <summary>What one run saw.</summary>
    public sealed class Result
    {
        public long Ops, Mismatches, Evictions, SwapIns, Merges, CowBreaks, PostcopyFills, MirrorZaps;
        public long SecondaryWrites, PrimaryWrites, MirrorReads, ReclaimerEvicted, LookAroundPromotions, AgingPasses;
        public long LeakedFrames, FramesInUse, SlotsInUse, PoolFramesInUse, CachedFrames, Violations;
        public double Seconds;
        public string Messages = "";
    }

    public static Result Run(long totalOps, int seed, Action<string>? log = null)
    {
        Result res = new Result();
        ConcurrentQueue<string> errors = new ConcurrentQueue<string>();
        int stop = 0;
        void Error(string m)
        {
            if (errors.Count < 20)
                errors.Enqueue(m);
            Volatile.Write(ref stop, 1);
        }

        HostMachine machine = new HostMachine(16UL << 20, Workers + 4);
        try
        {
            MemoryManager<HostPlatform> mm = machine.CreateManager();
            HostPlatform platform = machine.Platform;
            mm.Frames.DrainCaches();
            int freeAtStart = mm.Frames.BuddyFreeFrames;
            MemoryWatch freed = machine.FreedWatch;

            CompressedSwapPool<HostPlatform> pool = new CompressedSwapPool<HostPlatform>(platform, mm.Frames, 2L << 20);
            SwapMap<HostPlatform> swap = mm.AttachSwap(pool, 2 * Pages);
            MergeScanner<HostPlatform> scanner = new MergeScanner<HostPlatform>(mm, 1024);
            AddressSpace<HostPlatform> space = mm.CreateAddressSpace()!;
            Handler handler = new Handler();
            Assert.True(space.AddRegion(Region.Anonymous(Base, AnonPages * 4096UL, PageProt.Write | PageProt.User)));
            Assert.True(space.AddRegion(Region.UserfaultAnonymous(Va(AnonPages), UfPages * 4096UL, PageProt.Write | PageProt.User, handler)));
            for (int c = 0; c < machine.Cpus; c++)
                space.Activate(c);
            RecordingSecondaryMmu fast = new RecordingSecondaryMmu(space, Base, Pages);
            RecordingSecondaryMmu? slow = new RecordingSecondaryMmu(space, Base, Pages);
            Assert.True(space.Notifiers.Register(fast, MmuNotifierFlags.LocklessAging));
            Assert.True(space.Notifiers.Register(slow, MmuNotifierFlags.None));
            MirrorView<HostPlatform> view = MirrorView<HostPlatform>.Create(platform, space, space.Notifiers, Base, Pages)!;
            Assert.NotNull(view);
            // Overcommit: half the pages may be resident; the reclaimer keeps some room.
            mm.ResidentLimit = Pages / 2;
            Reclaimer<HostPlatform> reclaimer = new Reclaimer<HostPlatform>(mm, 8, 24);

            // The "CPUs" of the workers: a primary access holds its CPU's lock while it uses the
            // frame; every TLB flush waits for all of them (a shootdown that waits for in-flight
            // accesses, as the IPI does).
            object[] cpuLock = new object[Workers];
            for (int c = 0; c < Workers; c++)
                cpuLock[c] = new object();
            machine.OnFlush = _ =>
            {
                foreach (object l in cpuLock)
                    lock (l) { }
            };
            Func<PhysAddr, IntPtr> tableAt = pa => (IntPtr)platform.PhysToVirt(pa);

            ulong[] model = new ulong[Pages];
            for (int i = 0; i < Pages; i++)
                model[i] = IsUserfault(i) ? Source(i) : 0;
            long[] version = new long[Pages];

            void Mismatch(string where, int i, byte* p)
            {
                int k = FirstDifference(p, model[i]);
                Interlocked.Increment(ref res.Mismatches);
                string frame = "";
                if (p >= machine.Memory && p < machine.Memory + machine.Size)
                {
                    Pfn f = new Pfn((ulong)(p - machine.Memory) / 4096);
                    frame = "; frame " + f.Value + " flags " + mm.Frames.FlagsOf(f) + " maps " + mm.Frames.MapCountOf(f) + " refs " + mm.Frames.RefCountOf(f)
                        + " slot " + swap.SlotOf(f) + " mapped at";
                    for (int j = 0; j < Pages; j++)
                    {
                        if (space.TranslateFrame(Va(j), out Pfn g) && g == f)
                            frame += " " + j;
                    }
                }
                Error(where + ": page " + i + (IsUserfault(i) ? " (userfault)" : "") + " word " + k + " = 0x" + ((ulong*)p)[k].ToString("x")
                    + ", model 0x" + Word(model[i], k).ToString("x") + " (value 0x" + model[i].ToString("x") + ")" + frame);
            }

            // One access through the primary: the CPU walks, sets A (and D), and uses the frame
            // while its "TLB entry" is live (its CPU lock held); a fault otherwise, and again.
            void Primary(int me, int i, bool write, ulong value)
            {
                for (int attempt = 0; ; attempt++)
                {
                    bool ok;
                    lock (cpuLock[me])
                    {
                        ok = HardwareWalker.TouchPrimary(tableAt, space.Root, Va(i), write, out PhysAddr pa);
                        if (ok)
                        {
                            byte* p = platform.PhysToVirt(pa);
                            if (FirstDifference(p, model[i]) >= 0)
                                Mismatch(write ? "primary write (before)" : "primary read", i, p);
                            if (write)
                            {
                                FillPage(p, value);
                                model[i] = value;
                            }
                        }
                    }
                    if (ok)
                        return;
                    FaultStatus st = space.HandleFault(Va(i), write);
                    if (st != FaultStatus.Ok && st != FaultStatus.OutOfMemory)
                    {
                        Error("primary fault at page " + i + ": " + st);
                        return;
                    }
                    if (attempt > 100_000 || Volatile.Read(ref stop) != 0 && attempt > 100)
                    {
                        Error("primary access to page " + i + " makes no progress");
                        return;
                    }
                }
            }

            // One access through a secondary MMU: the frame is used under its MMU lock; a write
            // sets D in the secondary entry only.
            void Secondary(RecordingSecondaryMmu sec, int i, bool write, ulong value)
            {
                for (int attempt = 0; ; attempt++)
                {
                    bool ok = sec.TryAccessLocked(Va(i), write, f =>
                    {
                        byte* p = platform.PhysToVirt(f.Address);
                        if (FirstDifference(p, model[i]) >= 0)
                            Mismatch(write ? "secondary write (before)" : "secondary read", i, p);
                        if (write)
                        {
                            FillPage(p, value);
                            model[i] = value;
                        }
                    });
                    if (ok)
                        return;
                    FaultStatus st = sec.Fault(Va(i), write);
                    if (st != FaultStatus.Ok && st != FaultStatus.OutOfMemory)
                    {
                        Error("secondary fault at page " + i + ": " + st);
                        return;
                    }
                    if (attempt > 100_000 || Volatile.Read(ref stop) != 0 && attempt > 100)
                    {
                        Error("secondary access to page " + i + " makes no progress");
                        return;
                    }
                }
            }

            void Mirror(int i, byte[] buffer)
            {
                FaultStatus st = view.TryRead(Va(i), buffer);
                if (st != FaultStatus.Ok)
                {
                    if (st != FaultStatus.OutOfMemory)
                        Error("mirror read of page " + i + ": " + st);
                    return;
                }
                fixed (byte* p = buffer)
                {
                    if (FirstDifference(p, model[i]) >= 0)
                        Mismatch("mirror read", i, p);
                }
            }

            ulong NextValue(Random rng, int i)
            {
                int r = rng.Next(100);
                if (r < 8)
                    return 0;
                if (r < 45)
                    return Shared(rng.Next(6));
                return ((ulong)(i + 1) << 40) | (ulong)(++version[i]);
            }

            // The locking secondary comes and goes (registration churn): while it is registered,
            // the aging walk's fast-only call cannot ask it, so every page it might map counts as
            // young (invariant 4) and the reclaimer's eviction finds nothing old; while it is
            // away, aging and eviction through the generations run for real. Workers use it under
            // a read lock (or the lockless one when it is away or being changed).
            ReaderWriterLockSlim slowGate = new ReaderWriterLockSlim(LockRecursionPolicy.NoRecursion);
            long retiredViolations = 0, slowRegistrations = 1;
            ConcurrentQueue<string> retiredMessages = new ConcurrentQueue<string>();
            bool PickSecondary(Random rng, out RecordingSecondaryMmu sec)
            {
                if (rng.Next(2) == 0 && slowGate.TryEnterReadLock(0))
                {
                    if (slow != null)
                    {
                        sec = slow;
                        return true;
                    }
                    slowGate.ExitReadLock();
                }
                sec = fast;
                return false;
            }
            void ChurnSlowSecondary()
            {
                slowGate.EnterWriteLock();
                try
                {
                    if (slow != null)
                    {
                        space.Notifiers.Unregister(slow);
                        retiredViolations += slow.Violations;
                        foreach (string m in slow.Messages)
                            retiredMessages.Enqueue(m);
                        slow = null;
                    }
                    else
                    {
                        RecordingSecondaryMmu next = new RecordingSecondaryMmu(space, Base, Pages);
                        Assert.True(space.Notifiers.Register(next, MmuNotifierFlags.None));
                        slow = next;
                        slowRegistrations++;
                    }
                }
                finally
                {
                    slowGate.ExitWriteLock();
                }
            }

            long primaryWrites = 0, secondaryWrites = 0, mirrorReads = 0, ownEvictions = 0, postcopyFills = 0, reclaimed = 0;
            long perWorker = totalOps / Workers;
            long done = 0;
            Thread[] workers = new Thread[Workers];
            for (int t = 0; t < Workers; t++)
            {
                int me = t;
                workers[t] = new Thread(() =>
                {
                    HostMachine.ThreadCpu = me;
                    AccessMonitor.AbortSpinsAfterFailureOf = freed;
                    Random rng = new Random(seed * 100 + me);
                    byte[] buffer = new byte[4096];
                    try
                    {
                        long n = 0;
                        for (; n < perWorker && Volatile.Read(ref stop) == 0; n++)
                        {
                            int i = rng.Next(Pages / Workers) * Workers + me;
                            int dice = rng.Next(100);
                            if (dice < 26)
                            {
                                Primary(me, i, true, NextValue(rng, i));
                                Interlocked.Increment(ref primaryWrites);
                            }
                            else if (dice < 44)
                                Primary(me, i, false, 0);
                            else if (dice < 56)
                            {
                                bool gated = PickSecondary(rng, out RecordingSecondaryMmu sec);
                                try { Secondary(sec, i, true, NextValue(rng, i)); }
                                finally { if (gated) slowGate.ExitReadLock(); }
                                Interlocked.Increment(ref secondaryWrites);
                            }
                            else if (dice < 68)
                            {
                                bool gated = PickSecondary(rng, out RecordingSecondaryMmu sec);
                                try { Secondary(sec, i, false, 0); }
                                finally { if (gated) slowGate.ExitReadLock(); }
                            }
                            else if (dice < 80)
                            {
                                Mirror(i, buffer);
                                Interlocked.Increment(ref mirrorReads);
                            }
                            else if (dice < 83)
                            {
                                space.Unmap(Va(i), Va(i + 1));
                                model[i] = IsUserfault(i) ? Source(i) : 0;
                            }
                            else if (dice < 92)
                            {
                                if (space.TranslateFrame(Va(i), out Pfn f) && mm.TryReclaim(f))
                                    Interlocked.Increment(ref ownEvictions);
                            }
                            else if (space.TranslateFrame(Va(i), out Pfn f))
                                mm.AgeFrame(f, exact: rng.Next(2) == 0);
                        }
                        Interlocked.Add(ref done, n);
                    }
                    catch (Exception e)
                    {
                        Error("worker " + me + ": " + e);
                    }
                });
            }
            int workersLeft = Workers;
            Thread reclaimThread = new Thread(() =>
            {
                HostMachine.ThreadCpu = Workers;
                AccessMonitor.AbortSpinsAfterFailureOf = freed;
                try
                {
                    Stopwatch churn = Stopwatch.StartNew();
                    while (Volatile.Read(ref workersLeft) > 0 && Volatile.Read(ref stop) == 0)
                    {
                        if (churn.ElapsedMilliseconds >= 5)
                        {
                            ChurnSlowSecondary();
                            churn.Restart();
                        }
                        int got = reclaimer.RunOnce();
                        reclaimed += got;
                        if (got == 0)
                            Thread.Yield();
                    }
                }
                catch (Exception e)
                {
                    Error("reclaimer: " + e);
                }
            });
            Thread scanThread = new Thread(() =>
            {
                HostMachine.ThreadCpu = Workers + 1;
                AccessMonitor.AbortSpinsAfterFailureOf = freed;
                try
                {
                    while (Volatile.Read(ref workersLeft) > 0 && Volatile.Read(ref stop) == 0)
                    {
                        scanner.ScanStep(32);
                        Thread.Yield();
                    }
                }
                catch (Exception e)
                {
                    Error("merge scanner: " + e);
                }
            });
            Thread handlerThread = new Thread(() =>
            {
                HostMachine.ThreadCpu = Workers + 2;
                AccessMonitor.AbortSpinsAfterFailureOf = freed;
                byte[] data = new byte[4096];
                try
                {
                    foreach (VirtAddr page in handler.Requests.GetConsumingEnumerable())
                    {
                        int i = (int)((page - Base) / 4096);
                        fixed (byte* p = data)
                            FillPage(p, Source(i));
                        FaultStatus st = space.UserfaultCopy(page, data);
                        if (st == FaultStatus.Ok)
                            postcopyFills++;
                        else if (st != FaultStatus.Exists && st != FaultStatus.Dead)
                            Error("userfault fill of page " + i + ": " + st);
                    }
                }
                catch (Exception e)
                {
                    Error("userfault handler: " + e);
                }
            });

            Stopwatch clock = Stopwatch.StartNew();
            handlerThread.Start();
            reclaimThread.Start();
            scanThread.Start();
            foreach (Thread w in workers)
                w.Start();
            foreach (Thread w in workers)
            {
                if (!w.Join(TimeSpan.FromMinutes(5)))
                {
                    Error("a worker hung");
                    Volatile.Write(ref stop, 1);
                    w.Join(TimeSpan.FromSeconds(30));
                }
            }
            Volatile.Write(ref workersLeft, 0);
            reclaimThread.Join();
            scanThread.Join();
            res.Seconds = clock.Elapsed.TotalSeconds;

            // Every page read back through every view (the userfault handler still runs: a page
            // unmapped last is filled again), then the secondaries must match the primary.
            mm.ResidentLimit = 0;
            byte[] final = new byte[4096];
            HostMachine.ThreadCpu = 0;
            for (int i = 0; i < Pages && errors.IsEmpty; i++)
            {
                Primary(i % Workers, i, false, 0);
                Mirror(i, final);
                Secondary(fast, i, false, 0);
            }
            if (slow == null)
            {
                slow = new RecordingSecondaryMmu(space, Base, Pages);
                Assert.True(space.Notifiers.Register(slow, MmuNotifierFlags.None));
            }
            for (int i = 0; i < Pages && errors.IsEmpty; i++)
                Secondary(slow, i, false, 0);
            fast.CheckQuiescent("end");
            slow.CheckQuiescent("end");
            res.Violations = fast.Violations + slow.Violations + retiredViolations + freed.Failures;

            res.Ops = done;
            res.Evictions = swap.SwapOuts;
            res.SwapIns = swap.SwapIns;
            res.Merges = scanner.Stats.Merges;
            res.CowBreaks = scanner.Stats.CowBreaks;
            res.PostcopyFills = postcopyFills;
            res.MirrorZaps = view.PagesZapped;
            res.SecondaryWrites = secondaryWrites;
            res.PrimaryWrites = primaryWrites;
            res.MirrorReads = mirrorReads;
            res.ReclaimerEvicted = reclaimed;
            res.LookAroundPromotions = mm.Lru.Stats.LookAroundPromotions;
            res.AgingPasses = mm.Lru.Stats.AgingPasses;
            log?.Invoke("swap: outs " + swap.SwapOuts + ", ins " + swap.SwapIns + ", cache hits " + swap.CacheHits + ", clean evictions " + swap.CleanEvictions
                + ", refused " + swap.Refused + ", device full " + swap.DeviceFullRefusals + "; own evictions " + ownEvictions
                + "; merges " + scanner.Stats.Merges + " (zero " + scanner.Stats.ZeroMerges + "), aborted " + scanner.Stats.AbortedChanged
                + "; LRU evictions " + mm.Lru.Stats.Evictions + ", kept young " + mm.Lru.Stats.EvictionsKeptYoung + ", refaults " + mm.Lru.Stats.Refaults
                + ", eviction scans " + mm.Lru.Stats.EvictionScans + ", pages aged " + mm.Lru.Stats.PagesAged + ", limit reclaims " + mm.LimitReclaims + ", listed " + mm.Lru.Listed
                + "; mirror populated " + view.PagesPopulated + ", retries " + view.Retries + "; secondary retries " + (fast.Retries + slow.Retries) + ", locking secondary registrations " + slowRegistrations);

            // Teardown: the views go, then the space; then nothing may be left anywhere.
            view.Destroy();
            space.Notifiers.Unregister(fast);
            space.Notifiers.Unregister(slow);
            for (int c = 0; c < machine.Cpus; c++)
                space.Deactivate(c);
            space.Destroy();
            handler.Requests.CompleteAdding();
            handlerThread.Join();
            if (!scanner.ReleaseZeroFrame())
                Error("the shared zero frame is still mapped after the teardown");
            res.SlotsInUse = swap.SlotsInUse;
            res.CachedFrames = swap.CachedFrames;
            res.PoolFramesInUse = pool.FramesInUse;
            if (mm.Rmap.Used != 0 || mm.Lru.Listed != 0)
                Error("after the teardown: rmap entries " + mm.Rmap.Used + ", LRU pages " + mm.Lru.Listed);
            mm.Frames.DrainCaches();
            res.LeakedFrames = freeAtStart - mm.Frames.BuddyFreeFrames;
            for (int f = HostMachine.FirstUsableFrame; f < mm.Frames.FrameCount; f++)
            {
                if (mm.Frames.RefCountOf(new Pfn((ulong)f)) > 0)
                    res.FramesInUse++;
            }
            res.Messages = string.Join("\n", errors) + string.Join("\n", fast.Messages) + string.Join("\n", slow.Messages) + string.Join("\n", retiredMessages)
                + (freed.Failures > 0 ? "\nfreed frame accessed:\n" + freed.AllFailures : "");
            res.Violations += errors.Count;
        }
        finally
        {
            machine.OnFlush = null;
            machine.Dispose();
        }
        return res;
    }

    [Fact]
    public void AMillionOperationsOfAgingSwapMergingPostcopyAndMirrorsKeepEveryPage()
    {
        long ops = 1_000_000;
        string? env = Environment.GetEnvironmentVariable("TANDEM_OVERCOMMIT_OPS");
        if (env != null)
            ops = long.Parse(env);
        int seed = TestSeed.Pick(_out.WriteLine, nameof(AMillionOperationsOfAgingSwapMergingPostcopyAndMirrorsKeepEveryPage));
        Result r = Run(ops, seed, _out.WriteLine);
        _out.WriteLine("operations " + r.Ops + " in " + r.Seconds.ToString("F1") + " s; mismatches " + r.Mismatches + ", violations " + r.Violations
            + ", leaked frames " + r.LeakedFrames + ", frames in use " + r.FramesInUse + ", swap slots " + r.SlotsInUse + ", swap cache " + r.CachedFrames
            + ", pool frames " + r.PoolFramesInUse);
        _out.WriteLine("evictions " + r.Evictions + " (reclaimer " + r.ReclaimerEvicted + "), swap-ins " + r.SwapIns + ", merges " + r.Merges + ", COW breaks " + r.CowBreaks
            + ", postcopy fills " + r.PostcopyFills + ", mirror zaps " + r.MirrorZaps + ", writes primary " + r.PrimaryWrites + " / secondary " + r.SecondaryWrites
            + ", mirror reads " + r.MirrorReads + ", aging passes " + r.AgingPasses + ", look-around promotions " + r.LookAroundPromotions);
        string replay = " (replay: TANDEM_OVERCOMMIT_OPS=" + ops + " " + TestSeed.Variable + "=" + seed + ")";
        Assert.True(r.Mismatches == 0 && r.Violations == 0, r.Mismatches + " mismatches, " + r.Violations + " violations" + replay + "\n" + r.Messages);
        Assert.True(r.Ops >= ops - Workers, "ran " + r.Ops + replay);
        Assert.Equal(0, r.LeakedFrames);
        Assert.Equal(0, r.FramesInUse);
        Assert.Equal(0, r.SlotsInUse);
        Assert.Equal(0, r.CachedFrames);
        Assert.Equal(0, r.PoolFramesInUse);
        // Not vacuous: every mechanism ran.
        Assert.True(r.Evictions > 0, "no eviction");
        Assert.True(r.SwapIns > 0, "no swap-in");
        Assert.True(r.Merges > 0, "no merge");
        Assert.True(r.CowBreaks > 0, "no COW break");
        Assert.True(r.PostcopyFills > 0, "no postcopy fill");
        Assert.True(r.MirrorZaps > 0, "no mirror zap");
        Assert.True(r.SecondaryWrites > 0 && r.AgingPasses > 0, "no secondary write or aging pass");
        Assert.True(r.ReclaimerEvicted > 0 && r.LookAroundPromotions > 0, "the reclaimer evicted nothing through the generations, or look-around promoted nothing");
    }
}
