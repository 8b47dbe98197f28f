using System.Runtime.CompilerServices;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;

namespace Tandem.Kvm.Tests;

public class EptEntryTests
{
    [Fact]
    public void EntryIsOneQuadword() => Assert.Equal(8, Unsafe.SizeOf<EptEntry>());

    [Fact]
    public void BitsAreWhereTheSdmSaysTheyAre()
    {
        // SDM Vol. 3C, Tables 29-1..29-6.
        Assert.Equal(0x1UL, EptEntry.Readable);
        Assert.Equal(0x2UL, EptEntry.Writable);
        Assert.Equal(0x4UL, EptEntry.Executable);
        Assert.Equal(0x38UL, EptEntry.MemoryTypeMask);
        Assert.Equal(0x40UL, EptEntry.IgnorePat);
        Assert.Equal(0x80UL, EptEntry.LargePage);
        Assert.Equal(0x100UL, EptEntry.Accessed);
        Assert.Equal(0x200UL, EptEntry.Dirty);
    }

    [Fact]
    public void LeafAndTableEncodings()
    {
        EptEntry leaf = EptEntry.ForLeaf(new PhysAddr(0x1234_5000), 1, true, EptMemoryType.WriteBack);
        Assert.Equal(0x1234_5000UL | 0x7 | (6 << 3) | 0x40, leaf.Value);
        Assert.True(leaf.IsPresent && leaf.IsLeaf(1) && leaf.IsWritable);
        Assert.Equal(EptMemoryType.WriteBack, leaf.MemoryType);
        EptEntry ro = EptEntry.ForLeaf(new PhysAddr(0x1000), 1, false, EptMemoryType.WriteBack);
        Assert.False(ro.IsWritable);
        EptEntry big = EptEntry.ForLeaf(new PhysAddr(0x4020_0000), 2, true, EptMemoryType.WriteBack);
        Assert.True(big.IsLeaf(2));
        Assert.Equal(0x4020_0000UL, big.LeafAddress(2).Value);
        EptEntry table = EptEntry.ForTable(new PhysAddr(0x7000));
        Assert.False(table.IsLeaf(2));
        Assert.Equal(0x7000UL, table.TableAddress.Value);
        Assert.False(EptEntry.Empty.IsPresent);
        EptEntry young = leaf.WithBits(EptEntry.Accessed | EptEntry.Dirty);
        Assert.True(young.IsAccessed && young.IsDirty);
        Assert.False(young.WithoutAccessed().IsAccessed);
        Assert.True(young.WithoutAccessed().IsDirty);
    }

    [Fact]
    public void GuestAddressIndexes()
    {
        GuestPhysAddr g = new GuestPhysAddr((5UL << 39) | (6UL << 30) | (7UL << 21) | (8UL << 12) | 0x123);
        Assert.Equal(5, g.TableIndex(4));
        Assert.Equal(6, g.TableIndex(3));
        Assert.Equal(7, g.TableIndex(2));
        Assert.Equal(8, g.TableIndex(1));
        Assert.Equal(g.Value >> 12, g.Gfn.Value);
    }

    [Fact]
    public void MemslotMapFindsAndRefusesOverlaps()
    {
        Memslot a = new Memslot(new Gfn(0), 16, new VirtAddr(0x10000000), true);
        Memslot b = new Memslot(new Gfn(100), 16, new VirtAddr(0x20000000), false);
        MemslotMap m = MemslotMap.Empty.WithAdded(b)!.WithAdded(a)!;
        Assert.Same(a, m.Find(new Gfn(15)));
        Assert.Same(b, m.Find(new Gfn(100)));
        Assert.Null(m.Find(new Gfn(16)));
        Assert.Null(m.WithAdded(new Memslot(new Gfn(110), 1, new VirtAddr(0), true)));
        Assert.Equal(0x20000000UL + 0x3000, b.HostAddressOf(new Gfn(103)).Value);
        Assert.Equal(103UL << 12, b.GuestAddressOf(new VirtAddr(0x20003000)).Value);
        MemslotMap n = m.WithRemoved(a)!;
        Assert.Null(n.Find(new Gfn(1)));
        Assert.True(m.Holds(a) && !n.Holds(a));
    }
}
