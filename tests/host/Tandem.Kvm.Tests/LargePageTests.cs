using System.Collections.Generic;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;

namespace Tandem.Kvm.Tests;

/// <summary>2 MiB EPT leaves where the primary maps 2 MiB, and their split (by zap) on a partial invalidation.</summary>
public class LargePageTests
{
    private static readonly VirtAddr HugeHva = new VirtAddr(0x8000_0000);
    private const ulong HugeGfn = 0x1000;   // gpa 16 MiB: 2 MiB aligned

    private static List<EptSlot> LeavesOfHugeRange(EptBed b)
    {
        var leaves = new List<EptSlot>();
        GuestPhysAddr start = new Gfn(HugeGfn).Address;
        foreach (EptSlot s in new EptWalker<EptHostPlatform>(b.Ept.Platform, b.Ept.Root, start, new GuestPhysAddr(start.Value + PageSizes.Size2M)))
            leaves.Add(s);
        return leaves;
    }

    private static Pfn MapHugeSlot(EptBed b, bool hostAligned = true)
    {
        Assert.True(b.Mm.Frames.TryAllocate(9, out Pfn block));           // a naturally aligned 2 MiB block
        VirtAddr hva = hostAligned ? HugeHva : HugeHva + PageSizes.Size4K;
        Assert.True(b.Space.AddRegion(Region.Fixed(hva, PageSizes.Size2M, PageProt.Write, block.Address)));
        Assert.True(b.Ept.AddMemslot(new Memslot(new Gfn(HugeGfn), 512, hva, true)));
        return block;
    }

    [Fact]
    public void APrimaryTwoMegabyteMappingGetsOneTwoMegabyteEptLeaf()
    {
        using EptBed b = new EptBed(audit: false);
        Pfn block = MapHugeSlot(b);
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 5).Address, write: true));
        List<EptSlot> leaves = LeavesOfHugeRange(b);
        Assert.Single(leaves);
        Assert.Equal(2, leaves[0].Level);
        Assert.Equal(block.Address, leaves[0].Value.LeafAddress(2));
        // Another page of the same 2 MiB needs no fault: it is already mapped.
        Assert.Single(LeavesOfHugeRange(b));
    }

    /// <summary>
    /// The span call on a 2 MiB leaf: the asked pages it backs are young; its A bit (which stands
    /// for all 512 pages) is cleared only when every one of them was asked.
    /// </summary>
    [Fact]
    public unsafe void TheBitmapCallClearsATwoMegabyteLeafOnlyWhenAllItsPagesWereAsked()
    {
        using EptBed b = new EptBed(audit: false);
        MapHugeSlot(b);
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 5).Address, write: false));
        Assert.Equal(EptTlbModel.Outcome.Walked, b.Machine.Tlb.Access(b.Ept, 1, new Gfn(HugeGfn + 5).Address, false, out Pfn _));
        Assert.True(LeavesOfHugeRange(b)[0].Value.IsAccessed);
        ulong* ask = stackalloc ulong[8];
        ulong* young = stackalloc ulong[8];
        for (int w = 0; w < 8; w++)
        {
            ask[w] = ulong.MaxValue;
            young[w] = 0;
        }
        ask[2] = ~1UL;                                 // page 128 not asked
        b.Ept.TestClearYoungFastOnlyBitmap(b.Space, HugeHva, 512, ask, young);
        for (int w = 0; w < 8; w++)
            Assert.Equal(ask[w], young[w]);
        Assert.True(LeavesOfHugeRange(b)[0].Value.IsAccessed, "a leaf with an unasked page was cleared");
        ask[2] = ulong.MaxValue;
        for (int w = 0; w < 8; w++)
            young[w] = 0;
        b.Ept.TestClearYoungFastOnlyBitmap(b.Space, HugeHva, 512, ask, young);
        Assert.Equal(ulong.MaxValue, young[7]);
        Assert.False(LeavesOfHugeRange(b)[0].Value.IsAccessed);
    }

    [Fact]
    public void APartialInvalidationZapsTheWholeTwoMegabyteLeafAndItFaultsBack()
    {
        using EptBed b = new EptBed(audit: false);
        MapHugeSlot(b);
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn).Address, write: false));
        long inveptsBefore = b.Machine.InvEptCount;
        b.Space.Notifiers.Invalidate(new MmuNotifierRange(b.Space, HugeHva + 7 * PageSizes.Size4K, HugeHva + 8 * PageSizes.Size4K,
            MmuNotifierEvent.ProtectionChange, true));
        Assert.Empty(LeavesOfHugeRange(b));                                  // split by zap: nothing stale stays
        Assert.Equal(1, b.Machine.InvEptCount - inveptsBefore);              // one INVEPT for the range
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 100).Address, write: false));
        List<EptSlot> leaves = LeavesOfHugeRange(b);
        Assert.Single(leaves);
        Assert.Equal(2, leaves[0].Level);
    }

    /// <summary>
    /// A split of the primary's 2 MiB page runs the notifiers for the whole 2 MiB (as Linux's
    /// huge-PMD split does): the EPT drops its 2 MiB leaf (one INVEPT, so no cached 2 MiB
    /// translation survives) and the pages fault back as 4 KiB leaves, which then age, dirty and
    /// invalidate one by one. Kills "SplitHuge notifies nobody" (the EPT kept its 2 MiB leaf).
    /// </summary>
    [Fact]
    public void ASplitOfThePrimaryDropsTheTwoMegabyteLeafAndThePagesFaultBackAtFourKilobytes()
    {
        using EptBed b = new EptBed(audit: false);
        Pfn block = MapHugeSlot(b);
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 3).Address, write: true));
        Assert.Equal(EptTlbModel.Outcome.Walked, b.Machine.Tlb.Access(b.Ept, 1, new Gfn(HugeGfn + 3).Address, true, out Pfn _));
        Assert.Equal(2, Assert.Single(LeavesOfHugeRange(b)).Level);
        long inveptsBefore = b.Machine.InvEptCount;
        Assert.Equal(MapStatus.Ok, b.Space.SplitHuge(HugeHva + 77 * PageSizes.Size4K));
        Assert.Empty(LeavesOfHugeRange(b));
        Assert.Equal(1, b.Machine.InvEptCount - inveptsBefore);
        // The cached 2 MiB translation went with the INVEPT: the next access walks and faults.
        Assert.Equal(EptTlbModel.Outcome.EptViolation, b.Machine.Tlb.Access(b.Ept, 1, new Gfn(HugeGfn + 3).Address, false, out Pfn _));
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 100).Address, write: false));
        EptSlot leaf = Assert.Single(LeavesOfHugeRange(b));
        Assert.Equal(1, leaf.Level);
        Assert.Equal(new Pfn(block.Value + 100).Address, leaf.Value.LeafAddress(1));
        // A split of a split page is refused; nothing is notified.
        long invepts = b.Machine.InvEptCount;
        Assert.Equal(MapStatus.Conflict, b.Space.SplitHuge(HugeHva));
        Assert.Equal(invepts, b.Machine.InvEptCount);
    }

    [Fact]
    public void MisalignedHostMappingFallsBackToFourKilobyteLeaves()
    {
        using EptBed b = new EptBed(audit: false);
        MapHugeSlot(b, hostAligned: false);                                // host VA off by 4 KiB: no 2 MiB primary leaf fits
        Assert.Equal(FaultStatus.Ok, b.Ept.HandleViolation(new Gfn(HugeGfn + 5).Address, write: true));
        List<EptSlot> leaves = LeavesOfHugeRange(b);
        Assert.Single(leaves);
        Assert.Equal(1, leaves[0].Level);
    }

    /// <summary>
    /// A tracked 2 MiB page of guest RAM (<see cref="Region.HugePages"/>) written only through
    /// EPT: the EPT maps it with one 2 MiB leaf; eviction finds it old as a unit, splits it (the
    /// 2 MiB EPT leaf goes, its dirty bit marking all 512 frames, invariant 3) and swaps every page
    /// out; the guest then reads every value back through 4 KiB leaves.
    /// </summary>
    [Fact]
    public unsafe void ATrackedHugePageWrittenThroughEptIsSplitEvictedAndReadBackPageByPage()
    {
        using EptBed b = new EptBed(pages: 1024, memory: 32UL << 20);
        b.Ram.HugePages = true;
        b.Mm.AttachSwap(new Tandem.Testing.DictionarySwapDevice(), 1024);
        const int span = 512;
        for (int i = 0; i < span; i++)
        {
            Pfn f = b.Touch(i, write: true);
            *(ulong*)b.Machine.MmPlatform.PhysToVirt(f.Address) = 0xF00D_0000UL + (ulong)i;
        }
        EptEntry leaf = b.Leaf(0);
        Assert.True(leaf.IsLeaf(2), "the EPT did not map the 2 MiB page with one leaf");
        Assert.True(leaf.IsDirty);
        Assert.True(b.Space.Translate(b.Hva(0), out PageTableEntry pde, out int level));
        Assert.Equal(2, level);
        Assert.False(pde.IsDirty);                     // the host never wrote it: only the EPT knows
        for (int pass = 0; pass < 3; pass++)
            Assert.True(b.Mm.AgingPass());
        Assert.Equal(span, b.Mm.Evict(span));
        Assert.Equal(1, b.Mm.Lru.Stats.HugeSplits);
        Assert.Empty(b.Problems(strict: true));
        for (int i = 0; i < span; i++)
            Assert.Equal(EptEntry.Empty.Value, b.Leaf(i).Value);
        for (int i = 0; i < span; i++)
        {
            Pfn f = b.Touch(i, write: false);
            Assert.Equal(0xF00D_0000UL + (ulong)i, *(ulong*)b.Machine.MmPlatform.PhysToVirt(f.Address));
        }
        Assert.Equal(1, b.Leaf(7).IsLeaf(1) ? 1 : 0);
        Assert.Empty(b.Problems(strict: true));
    }
}
