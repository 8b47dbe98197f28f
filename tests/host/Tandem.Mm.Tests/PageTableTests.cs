using System.Collections.Generic;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

public class PageTableTests
{
    private static readonly VirtAddr Va = new VirtAddr(0x80_0000_0000);

    [Theory]
    [InlineData(PageSizes.Size4K, 1)]
    [InlineData(PageSizes.Size2M, 2)]
    [InlineData(PageSizes.Size1G, 3)]
    public void MapTranslatesEveryPageOfTheMapping(ulong size, int level)
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        AddressSpace<HostPlatform> s = m.CreateManager().CreateAddressSpace()!;
        PhysAddr pa = new PhysAddr(size * 3);
        Assert.Equal(MapStatus.Ok, s.Map(Va, pa, size, PageProt.Write));
        Assert.True(s.Translate(Va + (size - 1), out PageTableEntry leaf, out int l));
        Assert.Equal(level, l);
        Assert.True(leaf.IsWritable && leaf.IsSpecial);
        Assert.True(s.TranslateFrame(Va + (size - 4096), out Pfn last));
        Assert.Equal(pa.Pfn + (size / 4096 - 1), last);
        Assert.False(s.Translate(Va + size, out _, out _));
        Assert.Equal(MapStatus.AlreadyMapped, s.Map(Va, pa, size, PageProt.Write));
        Assert.Equal(MapStatus.Misaligned, s.Map(Va + 4096, pa, PageSizes.Size2M, PageProt.Write));
    }

    [Fact]
    public void UnmapClearsTheRangeWithOneFlush()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        AddressSpace<HostPlatform> s = m.CreateManager().CreateAddressSpace()!;
        s.Activate(0);
        for (int i = 0; i < 32; i++)
            Assert.Equal(MapStatus.Ok, s.Map(Va + (ulong)i * 4096, new PhysAddr(0x10_0000 + (ulong)i * 4096), 4096, PageProt.Write));
        List<TlbFlushRequest> flushes = new List<TlbFlushRequest>();
        m.OnFlush = r => flushes.Add(r);
        s.Unmap(Va + 4096, Va + 31 * 4096);
        Assert.Single(flushes);
        Assert.Equal(1UL, flushes[0].CpuMask);
        Assert.True(s.Translate(Va, out _, out _));
        Assert.True(s.Translate(Va + 31 * 4096, out _, out _));
        for (int i = 1; i < 31; i++)
            Assert.False(s.Translate(Va + (ulong)i * 4096, out _, out _));
    }

    [Fact]
    public void ProtectReducesRightsAndFlushesOnce()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        AddressSpace<HostPlatform> s = m.CreateManager().CreateAddressSpace()!;
        for (int i = 0; i < 8; i++)
            s.Map(Va + (ulong)i * 4096, new PhysAddr(0x10_0000 + (ulong)i * 4096), 4096, PageProt.Write);
        long before = m.FlushCount;
        Assert.Equal(8, s.Protect(Va, Va + 8 * 4096, PageProt.Read));
        Assert.Equal(before + 1, m.FlushCount);
        Assert.True(s.Translate(Va + 4096, out PageTableEntry e, out _));
        Assert.False(e.IsWritable);
        // Raising rights needs no flush.
        Assert.Equal(8, s.Protect(Va, Va + 8 * 4096, PageProt.Write));
        Assert.Equal(before + 1, m.FlushCount);
    }

    [Fact]
    public void SplitKeepsTheTranslationAtSmallerGranularity()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        AddressSpace<HostPlatform> s = m.CreateManager().CreateAddressSpace()!;
        PhysAddr pa = new PhysAddr(PageSizes.Size1G);
        Assert.Equal(MapStatus.Ok, s.Map(Va, pa, PageSizes.Size1G, PageProt.Write));
        Assert.Equal(MapStatus.Ok, s.SplitHuge(Va + 5 * PageSizes.Size2M + 77));
        Assert.True(s.Translate(Va + 5 * PageSizes.Size2M, out PageTableEntry e2, out int l2));
        Assert.Equal(2, l2);
        Assert.Equal(MapStatus.Ok, s.SplitHuge(Va + 5 * PageSizes.Size2M + 3 * 4096));
        Assert.True(s.Translate(Va + 5 * PageSizes.Size2M + 3 * 4096, out PageTableEntry e1, out int l1));
        Assert.Equal(1, l1);
        Assert.True(e1.IsWritable && e1.IsSpecial);
        Assert.True(s.TranslateFrame(Va + 5 * PageSizes.Size2M + 3 * 4096, out Pfn f));
        Assert.Equal(pa.Pfn + (5 * 512 + 3), f);
        Assert.True(s.TranslateFrame(Va + (PageSizes.Size1G - 4096), out Pfn lastFrame));
        Assert.Equal(pa.Pfn + (262144 - 1), lastFrame);
        Assert.Equal(MapStatus.Conflict, s.SplitHuge(Va + 5 * PageSizes.Size2M));
    }

    [Fact]
    public void PartialUnmapOfAHugePageSplitsIt()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        AddressSpace<HostPlatform> s = m.CreateManager().CreateAddressSpace()!;
        s.Map(Va, new PhysAddr(PageSizes.Size2M), PageSizes.Size2M, PageProt.Write);
        s.Unmap(Va + 4096, Va + 2 * 4096);
        Assert.True(s.Translate(Va, out _, out int l));
        Assert.Equal(1, l);
        Assert.False(s.Translate(Va + 4096, out _, out _));
        Assert.True(s.TranslateFrame(Va + 2 * 4096, out Pfn f));
        Assert.Equal(new PhysAddr(PageSizes.Size2M).Pfn + 2, f);
    }

    [Fact]
    public void WalkerVisitsLeavesAndHolesInOrder()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2);
        MemoryManager<HostPlatform> mm = m.CreateManager();
        AddressSpace<HostPlatform> s = mm.CreateAddressSpace()!;
        s.Map(Va, new PhysAddr(PageSizes.Size2M), PageSizes.Size2M, PageProt.Write);
        s.Map(Va + PageSizes.Size2M + 4096, new PhysAddr(0x3000), 4096, PageProt.Write);
        List<(ulong, int, bool)> seen = new List<(ulong, int, bool)>();
        foreach (PteSlot slot in new PageTableWalker<HostPlatform>(m.Platform, s.Root, Va, Va + PageSizes.Size2M + 3 * 4096))
            seen.Add((slot.Address.Value, slot.Level, slot.Value.IsPresent));
        Assert.Equal(new[] {
            (Va.Value, 2, true),
            ((Va + PageSizes.Size2M).Value, 1, false),
            ((Va + PageSizes.Size2M + 4096).Value, 1, true),
            ((Va + PageSizes.Size2M + 8192).Value, 1, false) }, seen);
    }

    /// <summary>The test bed itself: a freed frame is poisoned, handed out again at once, and a
    /// PteOps access inside it fails naming the walker (and stays recorded).</summary>
    [Fact]
    public unsafe void FreedFramesArePoisonedReusedAtOnceAndAnAccessToOneFails()
    {
        using TestBed b = new TestBed();
        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn f));
        b.Mm.Frames.PutRef(f);
        ulong* entries = (ulong*)b.Machine.Platform.PhysToVirt(f.Address);
        Assert.Equal(Poison.PrimaryEntry, entries[0]);
        Assert.Equal(Poison.PrimaryEntry, entries[511]);
        HostMachine.ThreadCpu = 3; // another CPU gets it all the same
        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn again));
        HostMachine.ThreadCpu = 0;
        Assert.Equal(f, again);
        b.Mm.Frames.PutRef(again);
        FreedMemoryAccessException e = Assert.Throws<FreedMemoryAccessException>(() => PteOps.Read(entries + 7));
        Assert.Contains("PageTableTests", e.Message);
        Assert.Equal(1, b.Machine.FreedWatch.Failures);
    }
}
