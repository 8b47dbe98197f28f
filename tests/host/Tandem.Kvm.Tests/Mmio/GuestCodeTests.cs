using System;
using Tandem.Kvm.Mmio;
using Xunit;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>
/// kvm/Mmio/GuestCode.cs: the bytes around a guest's RIP for a VM's stop dump. Index 24 (the
/// dump's "before") must hold the byte at RIP whatever could be read around it.
/// </summary>
public class GuestCodeTests
{
    private const int Before = 24, Length = 40;

    /// <summary>Guest RAM whose byte at gpa g is (g * 7) & 0xFF, on the given 4 KiB pages.</summary>
    private static GuestRam Ram(params ulong[] pages)
    {
        var ram = new GuestRam();
        foreach (ulong page in pages)
            for (ulong g = page; g < page + 4096; g++)
                ram.Write(g, [At(g)]);
        return ram;
    }

    private static byte At(ulong gpa) => (byte)(gpa * 7);

    private static (byte[] Bytes, int First, int End, GuestWalkStatus Stop) Fetch(GuestRam ram, in GuestPagingState paging, ulong rip, bool is32 = false)
    {
        var reader = new RamReader(ram);
        byte[] bytes = new byte[Length];
        int first = GuestCode.Fetch(ref reader, paging, rip, is32, bytes, Before, out int end, out GuestWalkStatus stop);
        return (bytes, first, end, stop);
    }

    [Fact]
    public void PagingOffShowsBothSidesOfRip()
    {
        var (bytes, first, end, stop) = Fetch(Ram(0x1000, 0x2000), new GuestPagingState { Cr0 = 1 }, 0x2004, is32: true);
        Assert.Equal(GuestWalkStatus.Ok, stop);
        Assert.Equal(0, first);
        Assert.Equal(Length, end);
        for (int i = 0; i < Length; i++)
            Assert.Equal(At(0x2004UL - Before + (ulong)i), bytes[i]);
        Assert.Equal(At(0x2004), bytes[Before]);
    }

    [Fact]
    public void AnUnreadablePreviousPageLeavesRipsOwnPage()
    {
        var (bytes, first, end, _) = Fetch(Ram(0x2000), new GuestPagingState { Cr0 = 1 }, 0x2004, is32: true);
        Assert.Equal(Before - 4, first);
        Assert.Equal(Length, end);
        Assert.Equal(At(0x2000), bytes[first]);
        Assert.Equal(At(0x2004), bytes[Before]);
    }

    [Fact]
    public void AnUnreadableNextPageEndsTheBytesAfterRip()
    {
        var (bytes, first, end, stop) = Fetch(Ram(0x1000), new GuestPagingState { Cr0 = 1 }, 0x1FFA, is32: true);
        Assert.Equal(0, first);
        Assert.Equal(Before + 6, end);
        Assert.Equal(GuestWalkStatus.MemoryError, stop);
        Assert.Equal(At(0x1FFA), bytes[Before]);
    }

    [Fact]
    public void AnUnreadableRipReadsNothing()
    {
        var (_, first, end, stop) = Fetch(Ram(0x1000), new GuestPagingState { Cr0 = 1 }, 0x5000, is32: true);
        Assert.Equal(Before, first);
        Assert.Equal(Before, end);
        Assert.Equal(GuestWalkStatus.MemoryError, stop);
    }

    [Fact]
    public void LongModeTranslatesThroughTheGuestsTables()
    {
        // Linear 0x40_0000 + page 1 maps to gpa 0x9000; page 0 (0x40_0000) is not present.
        const ulong P = 1, W = 2;
        GuestRam ram = Ram(0x9000);
        ram.Write64(0x1000, 0x2000 | P | W);
        ram.Write64(0x2000, 0x3000 | P | W);
        ram.Write64(0x3000 + 2 * 8, 0x4000 | P | W);
        ram.Write64(0x4000 + 1 * 8, 0x9000 | P | W);
        var paging = new GuestPagingState
        {
            Cr0 = GuestPagingState.Cr0Pg | 1,
            Cr3 = 0x1000,
            Cr4 = GuestPagingState.Cr4Pae,
            Efer = GuestPagingState.EferLma | (1UL << 8),
            MaxPhysAddrBits = 46,
        };
        var (bytes, first, end, _) = Fetch(ram, paging, 0x40_1010);
        Assert.Equal(Before - 16, first);
        Assert.Equal(Length, end);
        Assert.Equal(At(0x9010), bytes[Before]);
        Assert.Equal(At(0x9000), bytes[first]);
    }
}
