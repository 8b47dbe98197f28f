using System;
using System.Collections.Concurrent;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Page merging (mm/Merge, docs/reclaim.md "Page merging"): two address spaces over one memory
/// manager, a merge scanner, and contents written through the frames (the host has no CPU that
/// writes through the page tables; the stress test models one with a TLB shootdown that waits).
/// </summary>
public unsafe class MergeTests
{
    private static readonly VirtAddr Base = new VirtAddr(0x4000_0000);
    private readonly ITestOutputHelper _out;

    public MergeTests(ITestOutputHelper output) { _out = output; }

    private sealed class Bed : IDisposable
    {
        public readonly HostMachine Machine;
        public readonly MemoryManager<HostPlatform> Mm;
        public readonly AddressSpace<HostPlatform> A;
        public readonly AddressSpace<HostPlatform> B;
        public readonly MergeScanner<HostPlatform> Scanner;
        public readonly int Pages;

        public Bed(int pages, ulong memory = 16UL << 20)
        {
            Pages = pages;
            Machine = new HostMachine(memory, 4);
            Mm = Machine.CreateManager();
            A = NewSpace();
            B = NewSpace();
            Scanner = new MergeScanner<HostPlatform>(Mm, 1024);
        }

        private AddressSpace<HostPlatform> NewSpace()
        {
            AddressSpace<HostPlatform> s = Mm.CreateAddressSpace()!;
            Assert.True(s.AddRegion(Region.Anonymous(Base, (ulong)Pages * 4096, PageProt.Write | PageProt.User)));
            for (int c = 0; c < 4; c++)
                s.Activate(c);
            return s;
        }

        public static VirtAddr Va(int i) => Base + (ulong)i * 4096;

        public byte* Bytes(AddressSpace<HostPlatform> s, int i)
        {
            Assert.True(s.TranslateFrame(Va(i), out Pfn f));
            return Machine.Platform.PhysToVirt(f.Address);
        }

        public Pfn Frame(AddressSpace<HostPlatform> s, int i)
        {
            Assert.True(s.TranslateFrame(Va(i), out Pfn f));
            return f;
        }

        /// <summary>Faults page i in for writing and fills it (like a CPU write after the fault).</summary>
        public void Fill(AddressSpace<HostPlatform> s, int i, byte value, int lastByte = -1)
        {
            Assert.Equal(FaultStatus.Ok, s.HandleFault(Va(i), true));
            byte* p = Bytes(s, i);
            new Span<byte>(p, 4096).Fill(value);
            if (lastByte >= 0)
                p[4095] = (byte)lastByte;
        }

        public bool Writable(AddressSpace<HostPlatform> s, int i)
        {
            Assert.True(s.Translate(Va(i), out PageTableEntry leaf, out int _));
            return leaf.IsWritable;
        }

        public void Scan() => Scanner.ScanStep(4 * 2 * Pages + 8);

        /// <summary>Destroys both spaces and checks every frame but the shared zero frame came back.</summary>
        public void DestroyAndCheckNoLeak()
        {
            foreach (AddressSpace<HostPlatform> s in new[] { A, B })
            {
                for (int c = 0; c < 4; c++)
                    s.Deactivate(c);
                s.Destroy();
            }
            Assert.Equal(0, Mm.Rmap.Used);
            Assert.Equal(0, Mm.Lru.Listed);
            Mm.Frames.DrainCaches();
            Assert.Equal(Machine.FrameCount - HostMachine.FirstUsableFrame - 1, Mm.Frames.BuddyFreeFrames);
            Assert.Equal(1, Mm.Frames.RefCountOf(Scanner.ZeroFrame));
        }

        public void Dispose() => Machine.Dispose();
    }

    private static void NoHook() => HostMachine.ThreadCheckpoint = null;

    [Fact]
    public void IdenticalPagesInTwoSpacesMergeIntoOneReadOnlyFrame()
    {
        using Bed b = new Bed(32);
        for (int i = 0; i < b.Pages; i++)
        {
            b.Fill(b.A, i, (byte)(i + 1));
            b.Fill(b.B, i, (byte)(i + 1));
        }
        b.Mm.Frames.DrainCaches();
        int freeBefore = b.Mm.Frames.BuddyFreeFrames;
        int looked = b.Scanner.ScanStep(1000);
        MergeStats ms = b.Scanner.Stats;
        _out.WriteLine("looked " + looked + " scanned " + ms.PagesScanned + " full " + ms.FullScans + " merges " + ms.Merges + " mism " + ms.CompareMismatches + " ab " + ms.AbortedChanged);
        b.Mm.Frames.DrainCaches();
        Assert.Equal(freeBefore + b.Pages, b.Mm.Frames.BuddyFreeFrames);
        for (int i = 0; i < b.Pages; i++)
        {
            Pfn f = b.Frame(b.A, i);
            Assert.Equal(f, b.Frame(b.B, i));
            Assert.True((b.Mm.Frames.FlagsOf(f) & FrameFlags.Merged) != 0);
            Assert.Equal(2, b.Mm.Frames.MapCountOf(f));
            Assert.Equal(2, b.Mm.Frames.RefCountOf(f));
            Assert.False(b.Writable(b.A, i));
            Assert.False(b.Writable(b.B, i));
            Assert.Equal((byte)(i + 1), b.Bytes(b.A, i)[0]);
            Assert.Equal((byte)(i + 1), b.Bytes(b.B, i)[4095]);
        }
        Assert.Equal(b.Pages, b.Scanner.Stats.Merges);
        b.Scanner.CountSharing(out long shared, out long sharing);
        Assert.Equal(b.Pages, shared);
        Assert.Equal(2 * b.Pages, sharing);
        Assert.True(b.Mm.Lru.Validate() >= 0);
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>Every hash forced equal (HashMask 0): pages one byte apart never merge; the equal pair does.</summary>
    [Fact]
    public void DifferentPagesNeverMergeEvenWhenTheirHashesCollide()
    {
        using Bed b = new Bed(8);
        b.Scanner.HashMask = 0;
        for (int i = 0; i < b.Pages; i++)
        {
            b.Fill(b.A, i, 7, lastByte: i);
            b.Fill(b.B, i, 7, lastByte: 100 + i);
        }
        b.Fill(b.B, 5, 7, lastByte: 5); // B5 equals A5 only
        b.Scan();
        b.Scan();
        for (int i = 0; i < b.Pages; i++)
        {
            Assert.Equal((byte)i, b.Bytes(b.A, i)[4095]);
            Assert.Equal((byte)(i == 5 ? 5 : 100 + i), b.Bytes(b.B, i)[4095]);
            if (i != 5)
                Assert.NotEqual(b.Frame(b.A, i), b.Frame(b.B, i));
        }
        Assert.Equal(b.Frame(b.A, 5), b.Frame(b.B, 5));
        Assert.Equal(1, b.Scanner.Stats.Merges);
        Assert.True(b.Scanner.Stats.CompareMismatches > 0);
        b.DestroyAndCheckNoLeak();
    }

    [Fact]
    public void ZeroPagesMergeIntoTheSharedZeroFrame()
    {
        using Bed b = new Bed(16);
        for (int i = 0; i < b.Pages; i++)
        {
            Assert.Equal(FaultStatus.Ok, b.A.HandleFault(Bed.Va(i), true));
            b.Fill(b.B, i, (byte)(i % 2 == 0 ? 0 : 9));
        }
        b.Scan();
        int zeroInB = 0;
        for (int i = 0; i < b.Pages; i++)
        {
            Assert.Equal(b.Scanner.ZeroFrame, b.Frame(b.A, i));
            if (i % 2 == 0)
            {
                Assert.Equal(b.Scanner.ZeroFrame, b.Frame(b.B, i));
                zeroInB++;
            }
        }
        Assert.Equal(b.Pages + zeroInB, b.Scanner.Stats.ZeroMerges);
        Assert.Equal(b.Pages + zeroInB, b.Mm.Frames.MapCountOf(b.Scanner.ZeroFrame));
        // A write breaks the sharing: a private zeroed copy, then the write.
        b.Fill(b.A, 3, 0x55);
        Assert.NotEqual(b.Scanner.ZeroFrame, b.Frame(b.A, 3));
        Assert.Equal(0, b.Bytes(b.A, 4)[100]);
        Assert.Equal(0, b.Machine.Platform.PhysToVirt(b.Scanner.ZeroFrame.Address)[100]);
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>A write (primary fault, and a secondary's write fault through ResolveForSecondary)
    /// gives that mapping a private copy; the other mapping keeps the shared frame and its contents.</summary>
    [Fact]
    public void WriteAfterMergeBreaksSharingForThatMappingOnly()
    {
        using Bed b = new Bed(4);
        RecordingSecondaryMmu sec = new RecordingSecondaryMmu(b.B, Base, b.Pages);
        b.B.Notifiers.Register(sec, MmuNotifierFlags.LocklessAging);
        for (int i = 0; i < b.Pages; i++)
        {
            b.Fill(b.A, i, (byte)(0x11 + 16 * i));
            b.Fill(b.B, i, (byte)(0x11 + 16 * i));
        }
        b.Scan();
        Pfn shared = b.Frame(b.A, 0);
        Assert.Equal(shared, b.Frame(b.B, 0));
        sec.Access(Bed.Va(0), false);
        Assert.Equal(0L, sec.Entry(0) & RecordingSecondaryMmu.W);
        Assert.Equal((long)shared.Value, sec.Entry(0) >> 12);
        // Primary write in A.
        b.Fill(b.A, 0, 0x22);
        Pfn privateA = b.Frame(b.A, 0);
        Assert.NotEqual(shared, privateA);
        Assert.True(b.Writable(b.A, 0));
        Assert.Equal(0, (int)(b.Mm.Frames.FlagsOf(privateA) & (FrameFlags.Merged | FrameFlags.CopyOnWrite)));
        Assert.Equal(shared, b.Frame(b.B, 0));
        Assert.Equal(0x11, b.Bytes(b.B, 0)[77]);
        Assert.Equal(1, b.Mm.Frames.MapCountOf(shared));
        // Secondary write in B: COW through ResolveForSecondary(write).
        sec.Access(Bed.Va(0), true);
        Pfn privateB = b.Frame(b.B, 0);
        Assert.NotEqual(shared, privateB);
        Assert.Equal((long)privateB.Value, sec.Entry(0) >> 12);
        Assert.NotEqual(0L, sec.Entry(0) & RecordingSecondaryMmu.W);
        Assert.Equal(0x11, b.Bytes(b.B, 0)[77]);
        Assert.Equal(0x22, b.Bytes(b.A, 0)[77]);
        Assert.Equal(2, b.Scanner.Stats.CowBreaks);
        sec.CheckQuiescent("end");
        Assert.True(sec.Violations == 0, string.Join("\n", sec.Messages));
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>Written after the first compare, before the write-protect: the second compare
    /// (after the write-protect) sees it and the merge is abandoned; nothing is lost.</summary>
    [Fact]
    public void MergeAbortsWhenThePageIsWrittenBeforeTheWriteProtect()
    {
        using Bed b = new Bed(1);
        b.Fill(b.A, 0, 0x33);
        b.Fill(b.B, 0, 0x33);
        byte* pb = b.Bytes(b.B, 0);
        bool fired = false;
        HostMachine.ThreadCheckpoint = s =>
        {
            if (s != MmCheckpoint.MergeBeforeWriteProtect || fired)
                return;
            fired = true;
            pb[1000] = 0x44; // B's CPU writes through its (still writable) entry
        };
        try { b.Scan(); }
        finally { NoHook(); }
        Assert.True(fired);
        Assert.NotEqual(b.Frame(b.A, 0), b.Frame(b.B, 0));
        Assert.Equal(0x44, b.Bytes(b.B, 0)[1000]);
        Assert.Equal(0x33, b.Bytes(b.A, 0)[1000]);
        Assert.Equal(0, b.Scanner.Stats.Merges);
        Assert.Equal(1, b.Scanner.Stats.AbortedChanged);
        // The abandoned page is writable again on the next write fault (no copy).
        Pfn before = b.Frame(b.B, 0);
        b.Fill(b.B, 0, 0x45);
        Assert.Equal(before, b.Frame(b.B, 0));
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>Written (a write fault) between the write-protect and the remap: the write copies
    /// the page away, the remap finds the entry changed and abandons the merge.</summary>
    [Fact]
    public void MergeAbortsWhenThePageIsWrittenBetweenWriteProtectAndRemap()
    {
        using Bed b = new Bed(1);
        b.Fill(b.A, 0, 0x33);
        b.Fill(b.B, 0, 0x33);
        bool fired = false;
        HostMachine.ThreadCheckpoint = s =>
        {
            if (s != MmCheckpoint.MergeWriteProtected || fired)
                return;
            fired = true;
            Assert.False(b.Writable(b.B, 0));
            Assert.Equal(FaultStatus.Ok, b.B.HandleFault(Bed.Va(0), true));
            b.Bytes(b.B, 0)[1000] = 0x44;
        };
        try { b.Scan(); }
        finally { NoHook(); }
        Assert.True(fired);
        Assert.NotEqual(b.Frame(b.A, 0), b.Frame(b.B, 0));
        Assert.Equal(0x44, b.Bytes(b.B, 0)[1000]);
        Assert.Equal(0x33, b.Bytes(b.A, 0)[1000]);
        Assert.Equal(0, b.Scanner.Stats.Merges);
        Assert.Equal(1, b.Scanner.Stats.AbortedChanged);
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>
    /// Invariant 1 for the remap: when the old frame's reference is dropped, no secondary maps it
    /// any more (the secondary re-read the write-protected page just before the remap).
    /// </summary>
    [Fact]
    public void OldFrameReferenceIsDroppedOnlyAfterTheNotifiers()
    {
        using Bed b = new Bed(1);
        RecordingSecondaryMmu sec = new RecordingSecondaryMmu(b.B, Base, 1);
        b.B.Notifiers.Register(sec, MmuNotifierFlags.LocklessAging);
        b.Fill(b.A, 0, 0x66);
        b.Fill(b.B, 0, 0x66);
        Pfn old = b.Frame(b.B, 0);
        bool reread = false, checkedDrop = false;
        HostMachine.ThreadCheckpoint = s =>
        {
            if (s == MmCheckpoint.MergeWriteProtected && !reread)
            {
                reread = true;
                sec.Access(Bed.Va(0), false); // the secondary maps the old frame read-only again
                Assert.Equal((long)old.Value, sec.Entry(0) >> 12);
            }
            else if (s == MmCheckpoint.ReferenceDropped && reread && !checkedDrop)
            {
                checkedDrop = true;
                long e = sec.Entry(0);
                Assert.True(e == 0 || (e >> 12) != (long)old.Value, "the secondary still maps the old frame when its reference is dropped");
            }
        };
        try { b.Scan(); }
        finally { NoHook(); }
        Assert.True(reread && checkedDrop);
        Assert.Equal(b.Frame(b.A, 0), b.Frame(b.B, 0));
        Assert.True(sec.Violations == 0, string.Join("\n", sec.Messages));
        b.DestroyAndCheckNoLeak();
    }

    [Fact]
    public void UnmappingEveryMappingFreesTheSharedFrame()
    {
        using Bed b = new Bed(4);
        for (int i = 0; i < b.Pages; i++)
        {
            b.Fill(b.A, i, 0x77);
            b.Fill(b.B, i, 0x77);
        }
        b.Scan();
        Pfn shared = b.Frame(b.A, 0);
        Assert.Equal(2 * b.Pages, b.Mm.Frames.MapCountOf(shared)); // all eight pages are one frame
        Assert.Equal(MapStatus.Ok, b.A.Unmap(Base, Bed.Va(b.Pages)));
        Assert.Equal(b.Pages, b.Mm.Frames.MapCountOf(shared));
        Assert.Equal(0x77, b.Bytes(b.B, 2)[5]);
        Assert.Equal(MapStatus.Ok, b.B.Unmap(Base, Bed.Va(b.Pages)));
        Assert.Equal(0, b.Mm.Frames.RefCountOf(shared));
        b.DestroyAndCheckNoLeak();
    }

    [Fact]
    public void TurningMergeableOffStopsMerging()
    {
        using Bed b = new Bed(2);
        foreach (Region r in new[] { b.A.Regions[0], b.B.Regions[0] })
            r.Mergeable = false;
        b.Fill(b.A, 0, 1);
        b.Fill(b.B, 0, 1);
        Assert.Equal(0, b.Scanner.ScanStep(100));
        Assert.NotEqual(b.Frame(b.A, 0), b.Frame(b.B, 0));
        b.DestroyAndCheckNoLeak();
    }

    /// <summary>
    /// Writers (each owns some pages of both spaces; writes whole-page fills from a small set of
    /// values, so pages keep becoming equal), the merge scanner, aging passes and eviction, at once.
    /// A write goes through a modelled CPU: under the CPU's access lock it walks the primary entry
    /// and writes only through a present writable one; the TLB flush takes every CPU's access lock
    /// (a shootdown that waits for in-flight accesses). Against the model of every page: 0
    /// mismatches (an evicted page reads as zero: there is no swap here), 0 leaked frames.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CowBreaksUnderConcurrentAgingEvictionAndScanningKeepEveryPage(bool evict)
    {
        int seed = TestSeed.FromEnvironment() is string s ? int.Parse(s) : 4242;
        _out.WriteLine("seed " + seed + "; replay: TANDEM_SEED=" + seed + " dotnet test --filter " + nameof(CowBreaksUnderConcurrentAgingEvictionAndScanningKeepEveryPage));
        const int writers = 3;
        using Bed b = new Bed(96, memory: 2UL << 20);
        object[] cpuLock = { new(), new(), new(), new() };
        b.Machine.OnFlush = _ =>
        {
            foreach (object l in cpuLock)
                lock (l) { }
        };
        AddressSpace<HostPlatform>[] spaces = { b.A, b.B };
        byte[,] model = new byte[2, b.Pages];
        ConcurrentQueue<string> errors = new();
        int stop = 0;
        long writes = 0, checks = 0, evictions = 0, acceptedEvictions = 0;
        // Eviction attempts started and ended (an evicted page of a merged frame takes every mapping
        // with it, so the owner cannot be told which pages went): a page may read as zero only if
        // an eviction began since its owner last saw it, or was in flight then.
        long evictStarts = 0, evictEnds = 0;
        // -1: an eviction was in flight when the owner looked (it may still take the page).
        long Epoch() { long started = Interlocked.Read(ref evictStarts); return started == Interlocked.Read(ref evictEnds) ? started : -1; }
        long[,] seenAt = new long[2, b.Pages];

        void Writer(int id)
        {
            HostMachine.ThreadCpu = id;
            Random rng = new Random(seed * 31 + id);
            while (Volatile.Read(ref stop) == 0)
            {
                int sp = rng.Next(2);
                int page = rng.Next(b.Pages / writers) * writers + id;
                bool write = rng.Next(3) != 0;
                byte value = (byte)rng.Next(4);
                for (int attempt = 0; attempt < 100; attempt++)
                {
                    bool done = false, faultNeeded = false, write2 = write;
                    lock (cpuLock[id])
                    {
                        if (!spaces[sp].Translate(Bed.Va(page), out PageTableEntry leaf, out int _))
                        {
                            model[sp, page] = 0; // evicted (or never touched): refaults as zero
                            seenAt[sp, page] = Epoch();
                            faultNeeded = true;
                        }
                        else
                        {
                            byte* p = b.Machine.Platform.PhysToVirt(leaf.LeafAddress(1));
                            if (p[0] == 0 && p[4095] == 0 && model[sp, page] != 0 && Interlocked.Read(ref evictStarts) != seenAt[sp, page])
                            {
                                // Evicted (no swap) and faulted in again as a zero page by our own fault.
                                model[sp, page] = 0;
                                Interlocked.Increment(ref acceptedEvictions);
                            }
                            seenAt[sp, page] = Epoch();
                            for (int k = 0; k < 4096; k += 509)
                            {
                                if (p[k] != model[sp, page])
                                {
                                    errors.Enqueue("space " + sp + " page " + page + " byte " + k + ": " + p[k] + ", model " + model[sp, page]);
                                    Volatile.Write(ref stop, 1);
                                    break;
                                }
                            }
                            Interlocked.Increment(ref checks);
                            if (!write)
                                done = true;
                            else if (leaf.IsWritable)
                            {
                                new Span<byte>(p, 4096).Fill(value);
                                model[sp, page] = value;
                                Interlocked.Increment(ref writes);
                                done = true;
                            }
                            else
                                faultNeeded = true;
                        }
                    }
                    if (done)
                        break;
                    if (faultNeeded)
                    {
                        FaultStatus st = spaces[sp].HandleFault(Bed.Va(page), write2);
                        if (st != FaultStatus.Ok && st != FaultStatus.OutOfMemory)
                        {
                            errors.Enqueue("fault " + st);
                            Volatile.Write(ref stop, 1);
                        }
                    }
                }
            }
        }

        void Loop(int id, Action body)
        {
            HostMachine.ThreadCpu = id;
            try
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    body();
                    Thread.Yield();
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e.ToString());
                Volatile.Write(ref stop, 1);
            }
        }

        Thread[] work = new Thread[writers];
        for (int w = 0; w < writers; w++)
        {
            int id = w;
            work[w] = new Thread(() =>
            {
                try { Writer(id); }
                catch (Exception e) { errors.Enqueue(e.ToString()); Volatile.Write(ref stop, 1); }
            });
        }
        // The scanner decides the length of the run: 400 steps of 64 page slots (about 130 passes).
        int steps = 0;
        Thread scanner = new Thread(() => Loop(3, () =>
        {
            b.Scanner.ScanStep(64);
            if (++steps == 400)
                Volatile.Write(ref stop, 1);
        }));
        // Aging passes, and eviction of chosen pages (TryReclaim: the exact check, then TryToUnmap):
        // the page is flagged "may be evicted" first, so its owner accepts it coming back as zero.
        Random agingRng = new Random(seed);
        Thread aging = new Thread(() => Loop(3, () =>
        {
            b.Mm.AgingPass();
            if (!evict)
                return;
            int sp = agingRng.Next(2), page = agingRng.Next(b.Pages);
            if (!spaces[sp].TranslateFrame(Bed.Va(page), out Pfn f))
                return;
            Interlocked.Increment(ref evictStarts);
            if (b.Mm.TryReclaim(f))
                Interlocked.Increment(ref evictions);
            Interlocked.Increment(ref evictEnds);
            Thread.Sleep(1);
        }));
        foreach (Thread t in work) t.Start();
        scanner.Start();
        aging.Start();
        scanner.Join();
        foreach (Thread t in work) t.Join();
        aging.Join();
        MergeStats st = b.Scanner.Stats;
        _out.WriteLine("writes " + writes + ", checks " + checks + ", scans " + st.FullScans + ", merges " + st.Merges + " (zero " + st.ZeroMerges
            + "), cow breaks " + st.CowBreaks + ", aborted " + st.AbortedChanged + ", mismatches " + st.CompareMismatches + ", evictions " + evictions + " (seen as zero " + acceptedEvictions + ")");
        Assert.True(errors.IsEmpty, string.Join("\n", errors));
        // Final check of every page against the model, and no writable entry of a merged frame.
        for (int sp = 0; sp < 2; sp++)
        {
            for (int page = 0; page < b.Pages; page++)
            {
                if (!spaces[sp].Translate(Bed.Va(page), out PageTableEntry leaf, out int _))
                    continue;
                byte* p = b.Machine.Platform.PhysToVirt(leaf.LeafAddress(1));
                for (int k = 0; k < 4096; k++)
                    Assert.True(p[k] == model[sp, page], "space " + sp + " page " + page);
                if (leaf.IsWritable)
                    Assert.Equal(0, (int)(b.Mm.Frames.FlagsOf(leaf.LeafAddress(1).Pfn) & (FrameFlags.Merged | FrameFlags.CopyOnWrite)));
            }
        }
        Assert.True(st.Merges > 0 && st.CowBreaks > 0, "the run merged and broke nothing: no coverage");
        Assert.True(!evict || evictions > 0, "nothing was evicted: no coverage");
        Assert.True(b.Mm.Lru.Validate() >= 0);
        b.DestroyAndCheckNoLeak();
    }
}
