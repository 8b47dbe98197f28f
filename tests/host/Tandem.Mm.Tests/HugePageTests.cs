using System;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>
/// Tracked 2 MiB anonymous pages (<see cref="Region.HugePages"/>): one leaf, one reference count,
/// one reverse-map entry and one LRU place for 512 frames; aged as a unit; split into 512 tracked
/// 4 KiB pages (through the notifiers) before a part of one is unmapped, protected or evicted.
/// </summary>
public unsafe class HugePageTests
{
    private const int Span = FrameDatabase<HostPlatform>.HugeFrames;

    private static TestBed HugeBed(int pages = 2 * Span, ulong memory = 16UL << 20)
    {
        TestBed b = new TestBed(windowPages: pages, memory: memory);
        b.Window.HugePages = true;
        return b;
    }

    private static Pfn HeadOf(TestBed b, int page)
    {
        Assert.True(b.Space.Translate(b.Page(page), out PageTableEntry leaf, out int level), $"page {page} is not mapped");
        Assert.Equal(2, level);
        return leaf.LeafAddress(2).Pfn;
    }

    private static int Level(TestBed b, int page)
    {
        Assert.True(b.Space.Translate(b.Page(page), out PageTableEntry _, out int level), $"page {page} is not mapped");
        return level;
    }

    /// <summary>Writes a value that names page <paramref name="i"/> into all of it (as a CPU would).</summary>
    private static void Stamp(TestBed b, int i) => SwapTests.Write(b, i, 0x5EED_0000_0000UL + (ulong)i);

    private static void CheckStamp(TestBed b, int i)
    {
        Assert.Equal(0x5EED_0000_0000UL + (ulong)i, SwapTests.Read(b, i, out Pfn _));
    }

    private static void CheckIndependent(TestBed b, int page)
    {
        Assert.Equal(1, Level(b, page));
        Assert.True(b.Space.TranslateFrame(b.Page(page), out Pfn f));
        Assert.Equal(1, b.Mm.Frames.RefCountOf(f));
        Assert.Equal(1, b.Mm.Frames.MapCountOf(f));
        Assert.True(b.Mm.Rmap.Contains(f, b.Space, b.Page(page)), $"page {page}: no reverse-map entry after the split");
        Assert.Equal(FrameFlags.Anonymous, b.Mm.Frames.FlagsOf(f) & (FrameFlags.Anonymous | FrameFlags.Huge));
    }

    [Fact]
    public void AFaultMapsTheWholeSpanWithOneTrackedLeafAndTheUnmapFreesTheBlock()
    {
        using TestBed b = HugeBed();
        b.Mm.Frames.DrainCaches();
        int free = b.Mm.Frames.BuddyFreeFrames;
        Stamp(b, 5);
        Pfn head = HeadOf(b, 5);
        Assert.Equal(0UL, head.Value % Span);
        Assert.Equal(FrameFlags.Anonymous | FrameFlags.Huge, b.Mm.Frames.FlagsOf(head) & (FrameFlags.Anonymous | FrameFlags.Huge));
        Assert.Equal(1, b.Mm.Frames.RefCountOf(head));
        Assert.Equal(1, b.Mm.Frames.MapCountOf(head));
        Assert.True(b.Mm.Rmap.Contains(head, b.Space, b.Page(0)));
        Assert.Equal(0, b.Mm.Frames.RefCountOf(head + 5));
        Assert.Equal(Span, b.Mm.Lru.Listed);
        Assert.Equal(Span, b.Mm.Lru.Validate());
        // Every page of the span is there, zero but for the one written, without another fault.
        Assert.True(b.Space.TranslateFrame(b.Page(300), out Pfn f300));
        Assert.Equal(head + 300, f300);
        Assert.Equal(0UL, SwapTests.Read(b, 300, out Pfn _));
        CheckStamp(b, 5);
        // The second span gets its own 2 MiB page.
        Stamp(b, Span + 1);
        Assert.NotEqual(head, HeadOf(b, Span + 1));
        Assert.Equal(2 * Span, b.Mm.Lru.Listed);

        Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Page(0), b.Page(2 * Span)));
        Assert.Equal(0, b.Mm.Lru.Listed);
        Assert.Equal(0, SwapTests.LiveDataFrames(b.Mm));
        b.Mm.Frames.DrainCaches();
        // Only the page tables the faults made are still taken.
        Assert.InRange(free - b.Mm.Frames.BuddyFreeFrames, 0, 3);
    }

    [Fact]
    public void APartialUnmapSplitsTheSpanAndTheRestKeepsItsContentsAsTrackedPages()
    {
        using TestBed b = HugeBed();
        for (int i = 0; i < Span; i += 7)
            Stamp(b, i);
        Pfn head = HeadOf(b, 0);
        Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Page(14), b.Page(15)));
        Assert.False(b.Space.Translate(b.Page(14), out PageTableEntry _, out int _));
        for (int i = 0; i < Span; i += 7)
        {
            if (i == 14)
                continue;
            CheckIndependent(b, i);
            Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn f));
            Assert.Equal(head + (ulong)i, f);  // the same frames, now each on its own
            CheckStamp(b, i);
        }
        Assert.Equal(Span - 1, b.Mm.Lru.Listed);
        Assert.Equal(Span - 1, b.Mm.Lru.Validate());
        Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Page(0), b.Page(2 * Span)));
        Assert.Equal(0, SwapTests.LiveDataFrames(b.Mm));
        Assert.Equal(0, b.Mm.Rmap.Used);
    }

    [Fact]
    public void APartialProtectSplitsAndTheOtherPagesKeepTheirRights()
    {
        using TestBed b = HugeBed();
        Stamp(b, 3);
        Assert.True(b.Space.Protect(b.Page(8), b.Page(9), PageProt.User) >= 1);
        Assert.True(b.Space.Translate(b.Page(8), out PageTableEntry e8, out int l8));
        Assert.Equal(1, l8);
        Assert.False(e8.IsWritable);
        Assert.True(b.Space.Translate(b.Page(9), out PageTableEntry e9, out int _));
        Assert.True(e9.IsWritable);
        CheckIndependent(b, 8);
        CheckStamp(b, 3);
    }

    [Fact]
    public void FourKilobytePagesAlreadyInTheSpanAPartialSpanOrTheResidentLimitGiveFourKilobytePages()
    {
        using TestBed b = HugeBed(pages: Span + 100);
        b.Window.HugePages = false;
        Stamp(b, 3);
        b.Window.HugePages = true;
        Stamp(b, 9);                                   // the span has a table of 4 KiB entries
        Assert.Equal(1, Level(b, 9));
        Stamp(b, Span + 5);                            // the region ends inside the second span
        Assert.Equal(1, Level(b, Span + 5));
        Assert.Equal(3, b.Mm.Lru.Listed);

        using TestBed c = HugeBed();
        c.Mm.ResidentLimit = Span - 1;                 // 512 more would pass the limit
        Stamp(c, 1);
        Assert.Equal(1, Level(c, 1));
    }

    [Fact]
    public void ASplitWaitsForATransientReferenceOnTheHead()
    {
        using TestBed b = HugeBed();
        Stamp(b, 0);
        Pfn head = HeadOf(b, 0);
        // A secondary resolving page 5 holds its reference on the head, not on the tail.
        Assert.Equal(FaultStatus.Ok, b.Space.ResolveForSecondary(b.Page(5), false, out ResolvedPage page));
        Assert.Equal(head + 5, page.Frame);
        Assert.Equal(2, page.Level);
        Assert.Equal(2, b.Mm.Frames.RefCountOf(head));
        Assert.Equal(0, b.Mm.Frames.RefCountOf(head + 5));
        Assert.Equal(MapStatus.Busy, b.Space.SplitHuge(b.Page(5)));
        Assert.Equal(2, Level(b, 5));                  // nothing changed
        Assert.Equal(2, b.Mm.Frames.RefCountOf(head));
        b.Space.ReleaseResolved(page);
        Assert.Equal(1, b.Mm.Frames.RefCountOf(head));
        Assert.Equal(MapStatus.Ok, b.Space.SplitHuge(b.Page(5)));
        CheckIndependent(b, 0);
        CheckIndependent(b, 5);
        CheckIndependent(b, Span - 1);
        Assert.Equal(Span, b.Mm.Lru.Validate());
    }

    [Fact]
    public void AgingPromotesAHugePageAsOneUnitWhenTheCpuOrASecondaryUsedIt()
    {
        using TestBed b = HugeBed();
        RecordingSecondaryMmu s = b.AddSecondary();
        b.Mm.Lru.FilteredWalk = false;                 // every pass walks the span
        Stamp(b, 0);
        Pfn head = HeadOf(b, 0);
        Span<int> gens = stackalloc int[4];
        Assert.True(b.Mm.AgingPass());
        // Promoted by the pass (the CPU wrote it), then left behind by the new generation: all 512 pages there.
        int old = b.Mm.Lru.GenerationOf(head);
        Assert.True(old < b.Mm.Lru.MaxSeq);
        Assert.Equal(Span, b.Space.CountGenerations(gens));
        Assert.Equal(Span, gens[b.Mm.Lru.MaxSeq - old]);
        // Only the secondary reads a page of it: the next pass moves the whole unit.
        Assert.Equal(FaultStatus.Ok, s.Fault(b.Page(77), false));
        s.Access(b.Page(77), false);
        Assert.True(b.Mm.AgingPass());
        Assert.Equal(b.Mm.Lru.MaxSeq - 1, b.Mm.Lru.GenerationOf(head));
        // The CPU's access (the 2 MiB leaf's A bit) does the same.
        Assert.True(b.HardwareTouch(400, false, out Pfn _));
        Assert.True(b.Mm.AgingPass());
        Assert.Equal(b.Mm.Lru.MaxSeq - 1, b.Mm.Lru.GenerationOf(head));
        Assert.Equal(Span, b.Mm.Lru.Validate());
    }

    [Fact]
    public void EvictionSplitsAnOldHugePageThroughTheNotifiersAndSwapsItsPagesOutAndBack()
    {
        using TestBed b = HugeBed();
        DictionarySwapDevice device = new DictionarySwapDevice();
        b.Mm.AttachSwap(device, 1024);
        RecordingSecondaryMmu s = b.AddSecondary();
        for (int i = 0; i < Span; i++)
            Stamp(b, i);
        Pfn head = HeadOf(b, 0);
        Assert.Equal(FaultStatus.Ok, s.Fault(b.Page(9), false));
        Assert.NotEqual(0, s.Entry(9));
        for (int pass = 0; pass < 3; pass++)
            Assert.True(b.Mm.AgingPass());
        int evicted = b.Mm.Evict(Span);
        Assert.Equal(Span, evicted);
        Assert.Equal(1, b.Mm.Lru.Stats.HugeSplits);
        Assert.Equal(0, s.Entry(9));                   // the secondary followed
        Assert.Equal(0, s.Violations);
        Assert.Equal(0, b.Mm.Lru.Listed);
        for (int i = 0; i < Span; i++)
            Assert.False(b.Space.Translate(b.Page(i), out PageTableEntry _, out int _), $"page {i} still mapped");
        for (int i = 0; i < Span; i += 3)
        {
            CheckStamp(b, i);
            Assert.Equal(1, Level(b, i));
        }
        Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Page(0), b.Page(2 * Span)));
        Assert.Equal(0, SwapTests.LiveDataFrames(b.Mm));
        Assert.Equal(0, b.Mm.Frames.RefCountOf(head));
    }
}
