using System.Collections.Generic;
using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests;

public class FrameDatabaseTests
{
    [Fact]
    public void AllocatingEverythingAndFreeingItRestoresMaximalBlocks()
    {
        using HostMachine m = new HostMachine(8UL << 20, 2); // 2048 frames
        FrameDatabase<HostPlatform> db = new FrameDatabase<HostPlatform>(m.Platform, m.FrameCount, 0);
        Assert.Equal(2, db.FreeBlocks(10));
        List<Pfn> all = new List<Pfn>();
        HashSet<ulong> seen = new HashSet<ulong>();
        while (db.AllocateFrame(out Pfn f))
        {
            Assert.True(seen.Add(f.Value), "frame handed out twice");
            Assert.Equal(1, db.RefCountOf(f));
            all.Add(f);
        }
        Assert.Equal(2048, all.Count);
        foreach (Pfn f in all)
            db.PutRef(f);
        db.DrainCaches();
        Assert.Equal(2048, db.BuddyFreeFrames);
        Assert.Equal(2, db.FreeBlocks(10));
        for (int o = 0; o < 10; o++)
            Assert.Equal(0, db.FreeBlocks(o));
    }

    [Fact]
    public void HigherOrdersAreAlignedAndSplitAndMerge()
    {
        using HostMachine m = new HostMachine(4UL << 20, 1);
        FrameDatabase<HostPlatform> db = new FrameDatabase<HostPlatform>(m.Platform, m.FrameCount, 1);
        Assert.True(db.TryAllocate(3, out Pfn a));
        Assert.Equal(0UL, a.Value % 8);
        Assert.True(db.TryAllocate(9, out Pfn b));
        Assert.Equal(0UL, b.Value % 512);
        int before = db.BuddyFreeFrames;
        db.Free(a, 3);
        db.Free(b, 9);
        Assert.Equal(before + 8 + 512, db.BuddyFreeFrames);
        Assert.Equal(FrameFlags.Reserved, db.FlagsOf(new Pfn(0)));
    }
}
