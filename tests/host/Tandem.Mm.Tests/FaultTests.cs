using System;
using System.Threading;
using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests;

public unsafe class FaultTests
{
    [Fact]
    public void DemandZeroMapsAZeroedTrackedFrame()
    {
        using TestBed b = new TestBed();
        // Dirty a free frame so zeroing is observable.
        new Span<byte>(b.Machine.Memory, (int)b.Machine.Size).Fill(0xAA);
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(3) + 5, true));
        Assert.True(b.Space.TranslateFrame(b.Page(3), out Pfn f));
        byte* p = b.Machine.Platform.PhysToVirt(f.Address);
        for (int i = 0; i < 4096; i++)
            Assert.Equal(0, p[i]);
        Assert.Equal(1, b.Mm.Frames.RefCountOf(f));
        Assert.Equal(1, b.Mm.Frames.MapCountOf(f));
        Assert.True(b.Mm.Rmap.Contains(f, b.Space, b.Page(3)));
        Assert.True((b.Mm.Frames.FlagsOf(f) & FrameFlags.Anonymous) != 0);
        // A second fault finds it.
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(3), false));
        Assert.Equal(1, b.Mm.Rmap.Used);
    }

    [Fact]
    public void FaultsOutsideRegionsOrAgainstRightsFail()
    {
        using TestBed b = new TestBed(prot: PageProt.Read);
        Assert.Equal(FaultStatus.NoRegion, b.Space.HandleFault(new VirtAddr(0x1000), false));
        Assert.Equal(FaultStatus.AccessDenied, b.Space.HandleFault(b.Page(0), true));
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(0), false));
    }

    [Fact]
    public void WriteFaultOnWriteProtectedPageOfWritableRegionUpgrades()
    {
        using TestBed b = new TestBed();
        b.Space.HandleFault(b.Page(0), true);
        b.Space.Protect(b.Page(0), b.Page(1), PageProt.User);
        Assert.True(b.Space.Translate(b.Page(0), out PageTableEntry ro, out _) && !ro.IsWritable);
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(0), true));
        Assert.True(b.Space.Translate(b.Page(0), out PageTableEntry rw, out _) && rw.IsWritable);
    }

    [Fact]
    public void FixedRegionUsesHugePagesWhenAligned()
    {
        using TestBed b = new TestBed();
        Region r = Region.Fixed(new VirtAddr(0x2_0000_0000), 4 * PageSizes.Size2M + 3 * 4096, PageProt.Write, new PhysAddr(0x4000_0000));
        Assert.True(b.Space.AddRegion(r));
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(r.Start + PageSizes.Size2M + 5, false));
        Assert.True(b.Space.Translate(r.Start + PageSizes.Size2M, out _, out int level));
        Assert.Equal(2, level);
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(r.Start + 4 * PageSizes.Size2M + 4096, false));
        Assert.True(b.Space.Translate(r.Start + 4 * PageSizes.Size2M + 4096, out _, out int small));
        Assert.Equal(1, small);
        Assert.True(b.Space.TranslateFrame(r.Start + 4 * PageSizes.Size2M + 4096, out Pfn f));
        Assert.Equal(new PhysAddr(0x4000_0000 + 4 * PageSizes.Size2M + 4096).Pfn, f);
        Assert.Equal(0, b.Mm.Rmap.Used);
    }

    private sealed class QueueHandler : IUserfaultHandler
    {
        public int Requests;
        public VirtAddr LastPage;
        public void OnMissing(IAddressSpace space, VirtAddr page, bool write)
        {
            LastPage = page;
            Interlocked.Increment(ref Requests);
        }
    }

    [Fact]
    public void UserfaultFaultWaitsUntilTheHandlerFillsThePage()
    {
        using TestBed b = new TestBed();
        QueueHandler h = new QueueHandler();
        Region r = Region.UserfaultAnonymous(new VirtAddr(0x3_0000_0000), 16 * 4096, PageProt.Write, h);
        Assert.True(b.Space.AddRegion(r));
        FaultStatus result = FaultStatus.NoRegion;
        Thread faulter = new Thread(() => result = b.Space.HandleFault(r.Start + 2 * 4096 + 8, true));
        faulter.Start();
        SpinWait.SpinUntil(() => Volatile.Read(ref h.Requests) > 0, 5000);
        Assert.True(h.Requests > 0);
        Assert.Equal(r.Start + 2 * 4096, h.LastPage);
        Thread.Sleep(20);
        Assert.True(faulter.IsAlive, "the faulting context must wait, not fail");
        byte[] data = new byte[4096];
        data[8] = 42;
        Assert.Equal(FaultStatus.Ok, b.Space.UserfaultCopy(h.LastPage, data));
        Assert.True(faulter.Join(5000));
        Assert.Equal(FaultStatus.Ok, result);
        Assert.True(b.Space.TranslateFrame(r.Start + 2 * 4096, out Pfn f));
        Assert.Equal(42, b.Machine.Platform.PhysToVirt(f.Address)[8]);
        Assert.Equal(FaultStatus.Exists, b.Space.UserfaultZero(h.LastPage));
    }

    [Fact]
    public void DestroyReleasesNotifiersAndFreesEverything()
    {
        using TestBed b = new TestBed();
        int free0 = FreeFrames(b);
        RecordingSecondaryMmu sec = b.AddSecondary();
        for (int i = 0; i < 10; i++)
            Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(i), true));
        DeactivateEverywhere(b.Space);
        b.Space.Destroy();
        Assert.Equal(1, sec.Releases);
        Assert.Equal(0, b.Mm.Rmap.Used);
        Assert.Equal(free0 + 1, FreeFrames(b)); // + the root table
    }

    private static int FreeFrames(TestBed b)
    {
        b.Mm.Frames.DrainCaches();
        return b.Mm.Frames.BuddyFreeFrames;
    }

    /// <summary>The test beds load the space on every CPU; Destroy requires it loaded nowhere.</summary>
    private static void DeactivateEverywhere(AddressSpace<HostPlatform> space)
    {
        for (int c = 0; c < 64; c++)
            space.Deactivate(c);
    }
}
