using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests;

public unsafe class TypesTests
{
    [Fact]
    public void HardwareAndAddressTypesAreEightBytes()
    {
        Assert.Equal(8, sizeof(PageTableEntry));
        Assert.Equal(8, sizeof(PhysAddr));
        Assert.Equal(8, sizeof(VirtAddr));
        Assert.Equal(8, sizeof(Pfn));
    }

    [Fact]
    public void LeafEntriesEncodeSizeAddressAndRights()
    {
        PageTableEntry e4k = PageTableEntry.ForLeaf(new PhysAddr(0x1234_5000), 1, PageProt.Write);
        Assert.True(e4k.IsPresent && e4k.IsWritable && e4k.IsNoExecute && !e4k.IsUser);
        Assert.True(e4k.IsLeaf(1));
        Assert.Equal(0x1234_5000UL, e4k.LeafAddress(1).Value);

        PageTableEntry e2m = PageTableEntry.ForLeaf(new PhysAddr(0x4060_0000), 2, PageProt.Execute | PageProt.User);
        Assert.True(e2m.IsLeaf(2) && !e2m.IsNoExecute && e2m.IsUser && !e2m.IsWritable);
        Assert.Equal(0x4060_0000UL, e2m.LeafAddress(2).Value);
        Assert.False(PageTableEntry.ForTable(new PhysAddr(0x5000)).IsLeaf(2));

        PageTableEntry e1g = PageTableEntry.ForLeaf(new PhysAddr(0xC000_0000), 3, PageProt.Read);
        Assert.True(e1g.IsLeaf(3));
        Assert.Equal(0xC000_0000UL, e1g.LeafAddress(3).Value);
    }

    [Fact]
    public void WithMethodsReturnChangedCopies()
    {
        PageTableEntry e = PageTableEntry.ForLeaf(new PhysAddr(0x7000), 1, PageProt.Write);
        PageTableEntry ro = e.WithWritable(false).WithAccessed(true).WithDirty(true);
        Assert.True(e.IsWritable);
        Assert.False(ro.IsWritable);
        Assert.True(ro.IsAccessed && ro.IsDirty);
        Assert.Equal(e.LeafAddress(1), ro.LeafAddress(1));
        PageTableEntry rx = ro.WithProt(PageProt.Execute);
        Assert.True(!rx.IsNoExecute && !rx.IsWritable && rx.IsDirty);
    }

    [Fact]
    public void VirtualAddressTableIndexes()
    {
        VirtAddr va = new VirtAddr((3UL << 39) | (5UL << 30) | (7UL << 21) | (9UL << 12) | 0x123);
        Assert.Equal(3, va.TableIndex(4));
        Assert.Equal(5, va.TableIndex(3));
        Assert.Equal(7, va.TableIndex(2));
        Assert.Equal(9, va.TableIndex(1));
        Assert.True(va.IsCanonical);
        Assert.False(new VirtAddr(1UL << 47).IsCanonical);
    }
}
