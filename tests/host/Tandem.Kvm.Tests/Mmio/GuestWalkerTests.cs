using System;
using Tandem.Kvm.Mmio;
using Xunit;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>The guest page-table walker over page tables built in a byte-array guest memory.</summary>
public class GuestWalkerTests
{
    private const ulong P = 1, W = 2, U = 4, PS = 0x80, XD = 1UL << 63;

    private static GuestPagingState LongMode(ulong cr3, bool nxe = true) => new()
    {
        Cr0 = GuestPagingState.Cr0Pg | GuestPagingState.Cr0Wp | 1,
        Cr3 = cr3,
        Cr4 = GuestPagingState.Cr4Pae,
        Efer = GuestPagingState.EferLma | (1UL << 8) | (nxe ? GuestPagingState.EferNxe : 0),
        MaxPhysAddrBits = 46,
    };

    private static GuestWalkStatus Translate(GuestRam ram, in GuestPagingState paging, ulong linear, GuestAccessKind kind, out ulong gpa, out ulong size)
    {
        var reader = new RamReader(ram);
        return GuestWalker.Translate(ref reader, paging, linear, kind, out gpa, out size);
    }

    private static ulong Expect(GuestRam ram, in GuestPagingState paging, ulong linear, ulong pageSize, GuestAccessKind kind = GuestAccessKind.Read)
    {
        Assert.Equal(GuestWalkStatus.Ok, Translate(ram, paging, linear, kind, out ulong gpa, out ulong size));
        Assert.Equal(pageSize, size);
        return gpa;
    }

    /// <summary>4-level tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT) for linear 0x0000_7F80_4020_3000 upward.</summary>
    private static (GuestRam ram, ulong linear) FourLevel()
    {
        var ram = new GuestRam();
        ulong linear = (0xFFUL << 39) | (1UL << 30) | (1UL << 21) | (3UL << 12); // PML4 255, PDPT 1, PD 1, PT 3
        ram.Write64(0x1000 + 255 * 8, 0x2000 | P | W | U);
        ram.Write64(0x2000 + 1 * 8, 0x3000 | P | W | U);
        ram.Write64(0x3000 + 1 * 8, 0x4000 | P | W | U);
        ram.Write64(0x4000 + 3 * 8, 0xABCD_E000 | P | W | U);
        return (ram, linear);
    }

    [Fact]
    public void PagingOffIsIdentity()
    {
        var paging = new GuestPagingState { Cr0 = 1 };
        Assert.Equal(0xFEE0_0030UL, Expect(new GuestRam(), paging, 0xFEE0_0030, 4096));
    }

    [Fact]
    public void FourLevel4KPage()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        Assert.Equal(0xABCD_E123UL, Expect(ram, LongMode(0x1000), linear + 0x123, 4096));
    }

    [Fact]
    public void FourLevel2MAnd1GPages()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        ram.Write64(0x3000 + 1 * 8, 0x4060_0000 | P | W | PS | U);
        Assert.Equal(0x4060_0000UL + (3UL << 12) + 0x45, Expect(ram, LongMode(0x1000), linear + 0x45, 2UL << 20));
        ram.Write64(0x2000 + 1 * 8, 0x8000_0000 | P | W | PS | U);
        Assert.Equal(0x8000_0000UL + (1UL << 21) + (3UL << 12) + 7, Expect(ram, LongMode(0x1000), linear + 7, 1UL << 30));
    }

    [Fact]
    public void NotPresentAtEveryLevel()
    {
        for (int level = 0; level < 4; level++)
        {
            (GuestRam ram, ulong linear) = FourLevel();
            ulong[] entries = { 0x1000 + 255 * 8, 0x2000 + 8, 0x3000 + 8, 0x4000 + 24 };
            ram.Write64(entries[level], 0x5000 | W); // P = 0
            Assert.Equal(GuestWalkStatus.NotPresent, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));
        }
    }

    [Fact]
    public void ReservedBits()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        ram.Write64(0x1000 + 255 * 8, 0x2000 | P | PS); // PS in a PML4E
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));

        (ram, linear) = FourLevel();
        ram.Write64(0x3000 + 8, 0x4060_0000 | (1UL << 13) | P | PS); // 2 MiB page with bit 13 set
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));

        (ram, linear) = FourLevel();
        ram.Write64(0x4000 + 24, 0xABCD_E000 | XD | P);
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, LongMode(0x1000, nxe: false), linear, GuestAccessKind.Read, out _, out _));
        Assert.Equal(GuestWalkStatus.NoExecute, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Fetch, out _, out _));
        Assert.Equal(GuestWalkStatus.Ok, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));

        (ram, linear) = FourLevel();
        ram.Write64(0x4000 + 24, (1UL << 47) | P); // above MAXPHYADDR (46)
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void PermissionsAccumulateOverLevels()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        ram.Write64(0x2000 + 8, 0x3000 | P | U); // read-only at the PDPT level
        GuestPagingState paging = LongMode(0x1000);
        Assert.Equal(GuestWalkStatus.WriteProtected, Translate(ram, paging, linear, GuestAccessKind.Write, out _, out _));
        paging.Cr0 &= ~GuestPagingState.Cr0Wp;
        Assert.Equal(GuestWalkStatus.Ok, Translate(ram, paging, linear, GuestAccessKind.Write, out _, out _)); // supervisor, WP = 0
        paging.Cpl = 3;
        Assert.Equal(GuestWalkStatus.WriteProtected, Translate(ram, paging, linear, GuestAccessKind.Write, out _, out _));
        ram.Write64(0x3000 + 8, 0x4000 | P | W); // supervisor-only PD entry
        Assert.Equal(GuestWalkStatus.UserProtected, Translate(ram, paging, linear, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void NonCanonicalAndFiveLevel()
    {
        (GuestRam ram, _) = FourLevel();
        Assert.Equal(GuestWalkStatus.NonCanonical, Translate(ram, LongMode(0x1000), 0x0000_8000_0000_0000UL, GuestAccessKind.Read, out _, out _));
        GuestPagingState la57 = LongMode(0x1000);
        la57.Cr4 |= GuestPagingState.Cr4La57;
        Assert.Equal(GuestWalkStatus.Unsupported, Translate(ram, la57, 0x1000, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void MissingTableIsAMemoryError()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        ram.Write64(0x3000 + 8, 0x7777_7000 | P | W); // PT page that is not guest RAM
        Assert.Equal(GuestWalkStatus.MemoryError, Translate(ram, LongMode(0x1000), linear, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void Pae4KAnd2MPages()
    {
        var ram = new GuestRam();
        var paging = new GuestPagingState { Cr0 = GuestPagingState.Cr0Pg | 1, Cr3 = 0x1020, Cr4 = GuestPagingState.Cr4Pae, MaxPhysAddrBits = 36 };
        ram.Write64(0x1020 + 2 * 8, 0x2000 | P); // PDPTE 2 (linear 0x8000_0000..)
        ram.Write64(0x2000 + 5 * 8, 0x3000 | P | W);
        ram.Write64(0x3000 + 7 * 8, 0x9_1234_5000UL | P | W); // above 4 GiB: PAE reaches 36 bits here
        ulong linear = 0x8000_0000UL | (5UL << 21) | (7UL << 12) | 0x9A;
        Assert.Equal(0x9_1234_509AUL, Expect(ram, paging, linear, 4096));
        ram.Write64(0x2000 + 6 * 8, 0x0060_0000UL | P | PS);
        Assert.Equal(0x0060_0000UL + 0x1_2345, Expect(ram, paging, 0x8000_0000UL | (6UL << 21) | 0x1_2345, 2UL << 20));
        ram.Write64(0x1020 + 2 * 8, 0x2000 | P | W); // R/W is reserved in a PAE PDPTE
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, paging, linear, GuestAccessKind.Read, out _, out _));
        Assert.Equal(GuestWalkStatus.NotPresent, Translate(ram, paging, 0x4000_0000, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void ThirtyTwoBit4KAnd4MPages()
    {
        var ram = new GuestRam();
        var paging = new GuestPagingState { Cr0 = GuestPagingState.Cr0Pg | 1, Cr3 = 0x1000, MaxPhysAddrBits = 36 };
        ram.Write32(0x1000 + 3 * 4, 0x2000 | P | W);
        ram.Write32(0x2000 + 9 * 4, 0xFEC0_0000 | P | W); // IOAPIC page
        ulong linear = (3UL << 22) | (9UL << 12) | 0x10;
        Assert.Equal(0xFEC0_0010UL, Expect(ram, paging, linear, 4096));

        ram.Write32(0x1000 + 4 * 4, 0xFEC0_0000 | (0x3U << 13) | P | (uint)PS); // 4 MiB page, PSE-36 bits 33:32 = 3
        // Without CR4.PSE the PS bit is ignored: the entry points at a page table, here not in RAM.
        Assert.Equal(GuestWalkStatus.MemoryError, Translate(ram, paging, 4UL << 22, GuestAccessKind.Read, out _, out _));
        paging.Cr4 = GuestPagingState.Cr4Pse;
        Assert.Equal(0x3_FEC1_2345UL, Expect(ram, paging, (4UL << 22) | 0x1_2345, 4UL << 20));
        ram.Write32(0x1000 + 4 * 4, 0xFEC0_0000 | (1U << 21) | P | (uint)PS); // bit 21 reserved
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, paging, 4UL << 22, GuestAccessKind.Read, out _, out _));
        ram.Write32(0x1000 + 4 * 4, 0xFEC0_0000 | (0x10U << 13) | P | (uint)PS); // address bit 36 with MAXPHYADDR 36
        Assert.Equal(GuestWalkStatus.ReservedBit, Translate(ram, paging, 4UL << 22, GuestAccessKind.Read, out _, out _));
    }

    [Fact]
    public void FetchStraddlesIntoAnUnmappedPage()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        // The PT maps page 3 at 0xABCDE000; page 4 is not present.
        ram.Write(0xABCD_EFFD, new byte[] { 0x8B, 0x80, 0x10 }); // mov eax, [rax+disp32]: needs 3 more bytes
        var reader = new RamReader(ram);
        Span<byte> bytes = stackalloc byte[15];
        int n = InstructionFetcher.Fetch(ref reader, LongMode(0x1000), linear + 0xFFD, false, bytes, out GuestWalkStatus stop);
        Assert.Equal(3, n);
        Assert.Equal(GuestWalkStatus.NotPresent, stop);
        Assert.Equal(MmioDecodeStatus.Truncated, MmioDecoder.Decode(bytes.Slice(0, n), CpuMode.Bits64, out _));

        ram.Write(0xABCD_EFFD, new byte[] { 0x90, 0x8B, 0x00 }); // a 2-byte instruction that ends on the page decodes
        n = InstructionFetcher.Fetch(ref reader, LongMode(0x1000), linear + 0xFFE, false, bytes, out stop);
        Assert.Equal(2, n);
        Assert.Equal(MmioDecodeStatus.Ok, MmioDecoder.Decode(bytes.Slice(0, n), CpuMode.Bits64, out MmioInstruction insn));
        Assert.Equal(2, insn.Length);
    }

    [Fact]
    public void FetchJoinsTwoPagesWithUnrelatedFrames()
    {
        (GuestRam ram, ulong linear) = FourLevel();
        ram.Write64(0x4000 + 4 * 8, 0x1234_5000 | P); // page 4 far away from page 3
        ram.Write(0xABCD_EFFE, new byte[] { 0x8B, 0x80 });
        ram.Write(0x1234_5000, new byte[] { 0x78, 0x56, 0x34, 0x12, 0xCC });
        var reader = new RamReader(ram);
        Span<byte> bytes = stackalloc byte[15];
        int n = InstructionFetcher.Fetch(ref reader, LongMode(0x1000), linear + 0xFFE, false, bytes, out GuestWalkStatus stop);
        Assert.Equal(15, n);
        Assert.Equal(GuestWalkStatus.Ok, stop);
        Assert.Equal(MmioDecodeStatus.Ok, MmioDecoder.Decode(bytes.Slice(0, n), CpuMode.Bits64, out MmioInstruction insn));
        Assert.Equal(0x12345678L, insn.Memory.Displacement);
        Assert.Equal(6, insn.Length);
    }

    [Fact]
    public void ThirtyTwoBitFetchWrapsAt4G()
    {
        var ram = new GuestRam();
        var paging = new GuestPagingState { Cr0 = 1 };
        ram.Write(0xFFFF_FFFF, new byte[] { 0x8B });
        ram.Write(0, new byte[] { 0x00 });
        var reader = new RamReader(ram);
        Span<byte> bytes = stackalloc byte[2];
        int n = InstructionFetcher.Fetch(ref reader, paging, 0xFFFF_FFFF, true, bytes, out _);
        Assert.Equal(2, n);
        Assert.Equal(0x00, bytes[1]);
    }
}
