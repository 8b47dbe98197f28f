using System;
using System.Collections.Concurrent;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// The generational LRU (mm/Reclaim, docs/reclaim.md "Generations, the aging walk, look-around,
/// eviction"): generations, the aging walk, look-around, eviction's exact check, and a concurrent
/// run checked for leaks and list invariants.
/// </summary>
public class LruTests
{
    private readonly ITestOutputHelper _out;

    public LruTests(ITestOutputHelper output) { _out = output; }

    private static void FaultAll(TestBed b, int pages)
    {
        for (int i = 0; i < pages; i++)
            Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(i), true));
    }

    private static Pfn FrameOf(TestBed b, int i)
    {
        Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn f));
        return f;
    }

    private static int Gen(TestBed b, int i) => b.Mm.Lru.GenerationOf(FrameOf(b, i));

    [Fact]
    public void TouchedPagesStayYoungUntouchedSinkAndEvictionTakesTheOldestFirst()
    {
        using TestBed b = new TestBed(windowPages: 64);
        FaultAll(b, 64);
        Assert.Equal(64, b.Mm.Lru.PagesIn(0));
        for (int pass = 0; pass < 3; pass++)
        {
            for (int i = 0; i < 16; i++)
                Assert.True(b.HardwareTouch(i, false, out _));
            Assert.True(b.Mm.AgingPass());
        }
        // Four generations 0..3: the window is full, aging waits for eviction.
        Assert.Equal(3, b.Mm.Lru.MaxSeq);
        Assert.Equal(0, b.Mm.Lru.MinSeq);
        Assert.False(b.Mm.AgingPass());
        for (int i = 0; i < 64; i++)
            Assert.Equal(i < 16 ? 2 : 0, Gen(b, i));
        Span<int> perGen = stackalloc int[4];
        Assert.Equal(64, b.Space.CountGenerations(perGen));
        Assert.Equal(new[] { 0, 16, 0, 48 }, perGen.ToArray());
        Assert.Equal(3, b.Mm.Lru.Stats.AgingPasses);
        Assert.Equal(48, b.Mm.Lru.Stats.PagesAged); // 16 per pass
        // Oldest first: generation 0, and inside it the page that entered first (16) first.
        Assert.Equal(8, b.Mm.Evict(8));
        for (int i = 0; i < 64; i++)
            Assert.Equal(i < 16 || i >= 24, b.Space.TranslateFrame(b.Page(i), out _));
        Assert.Equal(8, b.Mm.Lru.Stats.Evictions);
        Assert.Equal(8, b.Space.Lru.Stats.Evictions);
        Assert.Equal(56, b.Mm.Lru.Validate());
        // A refault of an evicted page: distance in generations from its eviction (gen 0) to now (3).
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(20), false));
        Assert.Equal(1, b.Mm.Lru.Stats.Refaults);
        Assert.Equal(3, b.Mm.Lru.Stats.RefaultGenerationDistance);
        Assert.Equal(0, b.Mm.Lru.Stats.RefaultEvictionDistance - 4); // 4 evictions after page 20's
        Assert.Equal(3, Gen(b, 20));
    }

    [Fact]
    public void AgingWalkMakesOneFastOnlyCallPerLastLevelTable()
    {
        using TestBed b = new TestBed(windowPages: 1024); // two 2 MiB spans
        AgingProbeNotifier probe = new AgingProbeNotifier(TestBed.WindowBase, 1024);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.LocklessAging);
        FaultAll(b, 1024);
        for (int pass = 0; pass < 3; pass++)
        {
            for (int i = 0; i < 1024; i += 4)
                probe.Young[i] = 1; // only the secondary saw these
            int calls = probe.BitmapCalls;
            Assert.True(b.Mm.AgingPass());
            Assert.Equal(2, probe.BitmapCalls - calls); // one call per 2 MiB table
        }
        Assert.Equal(0, probe.PageFastCalls);
        Assert.Equal(3 * 1024, b.Mm.Lru.Stats.WalkEntries);
        for (int i = 0; i < 1024; i++)
            Assert.Equal(i % 4 == 0 ? 2 : 0, Gen(b, i));
    }

    [Fact]
    public void LookAroundPromotesTheYoungNeighboursWithOneFastOnlyCall()
    {
        using TestBed b = new TestBed(windowPages: 64);
        AgingProbeNotifier probe = new AgingProbeNotifier(TestBed.WindowBase, 64);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.LocklessAging);
        FaultAll(b, 64);
        Assert.True(b.Mm.AgingPass());
        Assert.True(b.Mm.AgingPass()); // generations 0..2, everything in 0
        Assert.True(b.HardwareTouch(0, false, out _));      // the page eviction looks at first
        for (int i = 16; i < 32; i++)
            Assert.True(b.HardwareTouch(i, false, out _));  // young in the primary
        for (int i = 40; i < 48; i++)
            probe.Young[i] = 1;                             // young in the secondary only
        int bitmapCalls = probe.BitmapCalls;
        int pageCalls = probe.PageFastCalls;
        Assert.Equal(1, b.Mm.Evict(1));
        Assert.Equal(1, probe.BitmapCalls - bitmapCalls);
        Assert.Equal(0, probe.PageFastCalls - pageCalls);
        Assert.Equal(1, b.Mm.Lru.Stats.LookArounds);
        Assert.Equal(24, b.Mm.Lru.Stats.LookAroundPromotions);
        Assert.Equal(24, b.Space.Lru.Stats.LookAroundPromotions);
        Assert.Equal(1, b.Mm.Lru.Stats.EvictionsKeptYoung);
        Assert.False(b.Space.TranslateFrame(b.Page(1), out _)); // the next oldest, old: evicted
        for (int i = 0; i < 64; i++)
        {
            if (i == 1)
                continue;
            bool young = i == 0 || (i >= 16 && i < 32) || (i >= 40 && i < 48);
            Assert.Equal(young ? 2 : 0, Gen(b, i));
        }
    }

    [Fact]
    public void EvictionKeepsAPageThatASecondaryHoldsYoungInTheExactCheck()
    {
        using TestBed b = new TestBed(windowPages: 64);
        AgingProbeNotifier probe = new AgingProbeNotifier(TestBed.WindowBase, 64);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.LocklessAging);
        FaultAll(b, 64);
        Assert.True(b.Mm.AgingPass());
        Assert.True(b.Mm.AgingPass());
        probe.HeldYoung[5] = true; // the fast-only answer says old; only the exact check sees it
        Assert.Equal(63, b.Mm.Evict(64));
        for (int i = 0; i < 64; i++)
            Assert.Equal(i == 5, b.Space.TranslateFrame(b.Page(i), out _));
        Assert.Equal(b.Mm.Lru.MaxSeq, Gen(b, 5));
        Assert.Equal(1, b.Mm.Lru.Stats.EvictionsKeptYoung);
        Assert.Equal(64, b.Mm.Lru.Stats.EvictionScans);
        Assert.True(probe.ExactCalls >= 64);
    }

    /// <summary>
    /// The isolate/unmap/putback window, taken step by step: eviction has the oldest page off its
    /// list when an unmap drops the page's last mapping (its Remove finds nothing listed). Putting
    /// the page back must not list it: a listed free frame would be evicted again once reused.
    /// A page still mapped goes back on its generation.
    /// </summary>
    [Fact]
    public void APageUnmappedWhileIsolatedIsNotPutBack()
    {
        using TestBed b = new TestBed(windowPages: 64);
        FaultAll(b, 64);
        Assert.True(b.Mm.AgingPass());
        Assert.True(b.Mm.AgingPass());
        Assert.True(b.Mm.Lru.TryIsolateOldest(out Pfn gone, out int goneSeq));
        Assert.True(b.Mm.Lru.TryIsolateOldest(out Pfn kept, out int keptSeq));
        Assert.Equal(62, b.Mm.Lru.Listed);
        int goneIndex = -1;
        for (int i = 0; i < 64; i++)
            if (b.Space.TranslateFrame(b.Page(i), out Pfn f) && f.Value == gone.Value)
                goneIndex = i;
        Assert.True(goneIndex >= 0);
        b.Space.Unmap(b.Page(goneIndex), b.Page(goneIndex + 1));
        Assert.Equal(0, b.Mm.Frames.MapCountOf(gone));
        b.Mm.Lru.Putback(gone, goneSeq);
        b.Mm.Lru.Putback(kept, keptSeq);
        Assert.True(b.Mm.Lru.GenerationOf(gone) < 0, "an unmapped page was put back on generation " + b.Mm.Lru.GenerationOf(gone));
        Assert.Equal(keptSeq, b.Mm.Lru.GenerationOf(kept));
        Assert.Equal(63, b.Mm.Lru.Listed);
        Assert.Equal(63, b.Mm.Lru.Validate());
        b.Mm.Frames.PutRef(gone);
        b.Mm.Frames.PutRef(kept);
    }

    [Fact]
    public void AnIncompleteFastAnswerCountsAsYoung()
    {
        using TestBed b = new TestBed(windowPages: 64);
        AgingProbeNotifier slow = new AgingProbeNotifier(TestBed.WindowBase, 64);
        b.Space.Notifiers.Register(slow, MmuNotifierFlags.None); // no lockless aging: never asked fast
        FaultAll(b, 64);
        Assert.True(b.Mm.AgingPass());
        Assert.True(b.Mm.AgingPass());
        Assert.Equal(0, slow.BitmapCalls + slow.PageFastCalls);
        Assert.Equal(128, b.Mm.Lru.Stats.PagesAged);
        for (int i = 0; i < 64; i++)
            Assert.Equal(1, Gen(b, i)); // nothing sank: the unknown answer kept every page young
        Assert.Equal(0, b.Mm.Evict(8)); // and eviction finds nothing old enough
    }

    [Fact]
    public void DirectReclaimLetsAFaultSucceedWhenMemoryIsFull()
    {
        // 1 MiB of "RAM": 256 frames, 16 reserved, a few for tables; the window is larger.
        using TestBed b = new TestBed(windowPages: 512, memory: 1UL << 20);
        int faulted = 0;
        for (int i = 0; i < 512; i++)
        {
            if (b.Space.HandleFault(b.Page(i), true) == FaultStatus.Ok)
                faulted++;
        }
        Assert.Equal(512, faulted);
        Assert.True(b.Mm.Lru.Stats.Evictions > 0);
        Assert.True(b.Mm.Lru.Validate() > 0);
    }

    [Fact]
    public void ReclaimerRunsOnlyBelowTheLowWatermarkAndStopsAtTheHigh()
    {
        using TestBed b = new TestBed(windowPages: 900, memory: 4UL << 20);
        Reclaimer<HostPlatform> r = new Reclaimer<HostPlatform>(b.Mm, 100, 200);
        FaultAll(b, 100);
        Assert.Equal(0, r.RunOnce()); // plenty free
        FaultAll(b, 900);
        Assert.True(r.FreeFrames < 100, "free " + r.FreeFrames);
        int got = r.RunOnce();
        Assert.True(got > 0);
        Assert.True(r.FreeFrames >= 200, "free " + r.FreeFrames);
        Assert.True(r.FreeFrames < 200 + Reclaimer<HostPlatform>.Batch + 64, "free " + r.FreeFrames);
    }

    /// <summary>
    /// Aging walk, faulting threads (primary and secondary), the background reclaimer, direct
    /// reclaim, unmap and the old single-frame reclaim at once, in a memory smaller than the
    /// working set. At the end: the secondary never mapped a freed page, the lists are consistent,
    /// every mapped anonymous page is on exactly one list and no other frame is, and after the
    /// teardown every frame is free again (no leak).
    /// </summary>
    [Fact]
    public void ConcurrentAgingFaultsEvictionAndUnmapLeakNothingAndKeepTheLists()
    {
        int seed = TestSeed.FromEnvironment() is string s ? int.Parse(s) : 1111;
        _out.WriteLine("seed " + seed + "; replay: TANDEM_SEED=" + seed + " dotnet test --filter " + nameof(ConcurrentAgingFaultsEvictionAndUnmapLeakNothingAndKeepTheLists));
        const int pages = 2048;
        using TestBed b = new TestBed(windowPages: pages, memory: 4UL << 20);
        RecordingSecondaryMmu sec = b.AddSecondary();
        Reclaimer<HostPlatform> reclaimer = new Reclaimer<HostPlatform>(b.Mm, 96, 192);
        ConcurrentQueue<Exception> errors = new();
        int stop = 0;
        long ops = 0;
        void Run(int id, Action<Random> body, int iterations)
        {
            HostMachine.ThreadCpu = id;
            Random rng = new Random(seed * 31 + id);
            try
            {
                for (int n = 0; n < iterations && Volatile.Read(ref stop) == 0; n++)
                {
                    body(rng);
                    Interlocked.Increment(ref ops);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
                Volatile.Write(ref stop, 1);
            }
        }
        Thread[] threads =
        {
            new Thread(() => Run(0, rng => b.Space.HandleFault(b.Page(rng.Next(pages)), rng.Next(2) == 0), 40000)),
            new Thread(() => Run(1, rng =>
            {
                int i = rng.Next(pages);
                if (rng.Next(2) == 0) sec.Access(b.Page(i), rng.Next(3) == 0);
                else b.HardwareTouch(i, false, out _);
            }, 40000)),
            new Thread(() => Run(2, rng => { b.Mm.AgingPass(); Thread.Yield(); }, 400)),
            new Thread(() => Run(3, rng => { reclaimer.RunOnce(); Thread.Yield(); }, 4000)),
            new Thread(() => Run(4, rng =>
            {
                int i = rng.Next(pages);
                if (rng.Next(4) == 0 && b.Space.TranslateFrame(b.Page(i), out Pfn f))
                    b.Mm.TryReclaim(f);
                else
                    b.Space.Unmap(b.Page(i), b.Page(Math.Min(pages, i + 1 + rng.Next(8))));
            }, 8000)),
        };
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            t.Join();
        _out.WriteLine("ops " + ops + ", aging passes " + b.Mm.Lru.Stats.AgingPasses + ", evictions " + b.Mm.Lru.Stats.Evictions
            + ", kept young " + b.Mm.Lru.Stats.EvictionsKeptYoung + ", look-around promotions " + b.Mm.Lru.Stats.LookAroundPromotions
            + ", refaults " + b.Mm.Lru.Stats.Refaults + ", listed " + b.Mm.Lru.Listed);
        Assert.True(errors.IsEmpty, string.Join("\n", errors));
        Assert.True(sec.Violations == 0, string.Join("\n", sec.Messages));
        Assert.True(b.Mm.Lru.Stats.Evictions > 0 && b.Mm.Lru.Stats.AgingPasses > 0);
        int listed = b.Mm.Lru.Validate();
        Assert.True(listed >= 0, "list invariant broken: code " + listed);
        int mappedAnonymous = 0;
        for (int f = HostMachine.FirstUsableFrame; f < b.Machine.FrameCount; f++)
        {
            Pfn frame = new Pfn((ulong)f);
            bool anonymousMapped = (b.Mm.Frames.FlagsOf(frame) & FrameFlags.Anonymous) != 0 && b.Mm.Frames.MapCountOf(frame) > 0;
            if (anonymousMapped)
                mappedAnonymous++;
            Assert.True(anonymousMapped == (b.Mm.Lru.GenerationOf(frame) >= 0), "frame " + f + ": mapped anonymous " + anonymousMapped + ", generation " + b.Mm.Lru.GenerationOf(frame));
        }
        Assert.Equal(mappedAnonymous, listed);
        Span<int> perGen = stackalloc int[LruGenerations<HostPlatform>.MaxGenerations];
        Assert.Equal(listed, b.Space.CountGenerations(perGen));
        int sum = 0;
        foreach (int n in perGen) sum += n;
        Assert.Equal(listed, sum);
        // Teardown: every frame comes back.
        for (int c = 0; c < b.Machine.Cpus; c++)
            b.Space.Deactivate(c);
        b.Space.Destroy();
        Assert.Equal(0, b.Mm.Lru.Listed);
        Assert.Empty(b.Mm.Spaces);
        b.Mm.Frames.DrainCaches();
        Assert.Equal(b.Machine.FrameCount - HostMachine.FirstUsableFrame, b.Mm.Frames.BuddyFreeFrames);
    }
}
