using System;
using System.Collections.Generic;
using Tandem.Kvm.Acpi;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Acpi;

public class AcpiTablesTests
{
    /// <summary>The tables for <paramref name="cpus"/> vCPUs written at the standard base of a fresh first MiB.</summary>
    internal static (LowRam Ram, AcpiLayout Layout) Written(int cpus)
    {
        LowRam ram = new LowRam();
        LowRamRef r = new LowRamRef(ram);
        AcpiConfig config = AcpiConfig.ForCpus(cpus);
        Assert.True(AcpiTables.Write(ref r, config, AcpiTables.StandardBase, AcpiTables.BiosAreaEnd, out AcpiLayout layout));
        return (ram, layout);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    [InlineData(255)]
    public void TheRsdpIsFoundByALegacyScanOfTheBiosArea(int cpus)
    {
        (LowRam ram, AcpiLayout layout) = Written(cpus);
        AcpiReader r = new AcpiReader(ram.Bytes);
        ulong rsdp = r.ScanForRsdp(AcpiTables.BiosAreaStart, AcpiTables.BiosAreaEnd);
        Assert.Equal(layout.Rsdp, rsdp);
        Assert.Equal(0UL, rsdp & 15);
        (ulong rsdt, ulong xsdt) = r.Rsdp(rsdp);
        Assert.Equal(layout.Rsdt, rsdt);
        Assert.Equal(layout.Xsdt, xsdt);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    [InlineData(255)]
    public void OneWriteOfExactlyTheBlockInsideTheBiosArea(int cpus)
    {
        (LowRam ram, AcpiLayout layout) = Written(cpus);
        Assert.Equal(1, ram.Writes);
        Assert.Equal(AcpiTables.StandardBase, ram.LowestWrite);
        Assert.Equal(AcpiTables.StandardBase + (ulong)layout.Length, ram.HighestWriteEnd);
        Assert.Equal(AcpiTables.LengthFor(cpus), layout.Length);
        Assert.True(ram.HighestWriteEnd <= AcpiTables.BiosAreaEnd);
        Assert.True(layout.Length <= AcpiTables.MaxLength);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void XsdtAndRsdtListTheFadtAndMadtAndEveryChecksumHolds(int cpus)
    {
        (LowRam ram, AcpiLayout layout) = Written(cpus);
        AcpiReader r = new AcpiReader(ram.Bytes);
        Dictionary<string, ulong> x = r.Root(layout.Xsdt, "XSDT", 8);
        Dictionary<string, ulong> s = r.Root(layout.Rsdt, "RSDT", 4);
        Assert.Equal(2, x.Count);
        Assert.Equal(layout.Fadt, x["FACP"]);
        Assert.Equal(layout.Madt, x["APIC"]);
        Assert.Equal(x, s);
        Assert.Equal(AcpiTables.FadtLength, r.Table(layout.Fadt, "FACP"));
        Assert.Equal(6, r.U8(layout.Fadt + 8));
        Assert.Equal(AcpiTables.DsdtLength, r.Table(layout.Dsdt, "DSDT"));
        Assert.Equal(AcpiTables.MadtLength(cpus), r.Table(layout.Madt, "APIC"));
        Assert.Equal(44 + 8 * cpus + 12 + 2 * 10 + 6, AcpiTables.MadtLength(cpus));
    }

    [Fact]
    public void TheRsdpChecksumsCoverTwentyAndThirtySixBytes()
    {
        (LowRam ram, AcpiLayout layout) = Written(2);
        byte[] m = ram.Bytes;
        ulong a = layout.Rsdp;
        Assert.Equal(0, AcpiReader.Sum(m, a, 20));
        Assert.Equal(0, AcpiReader.Sum(m, a, 36));
        // The XSDT address (bytes 24-31) is outside the first checksum and inside the extended one:
        // the first 20 bytes alone, and bytes 20-35 alone, must each sum to 0.
        Assert.Equal(0, AcpiReader.Sum(m, a + 20, 16));
        // A changed XSDT address breaks the extended checksum only.
        m[a + 25] ^= 0x10;
        Assert.Equal(0, AcpiReader.Sum(m, a, 20));
        Assert.NotEqual(0, AcpiReader.Sum(m, a, 36));
        m[a + 25] ^= 0x10;
        // So does a change to the reserved bytes at the very end (the checksum covers all 36).
        m[a + 35] ^= 1;
        Assert.NotEqual(0, AcpiReader.Sum(m, a, 36));
    }

    [Fact]
    public void TablesDoNotOverlapAndTheFacsIs64ByteAligned()
    {
        (LowRam _, AcpiLayout l) = Written(255);
        (ulong At, int Length)[] t =
        {
            (l.Rsdp, 36), (l.Facs, 64), (l.Dsdt, AcpiTables.DsdtLength), (l.Fadt, AcpiTables.FadtLength),
            (l.Madt, AcpiTables.MadtLength(255)), (l.Xsdt, 52), (l.Rsdt, 44),
        };
        for (int i = 0; i < t.Length; i++)
        {
            Assert.Equal(0UL, t[i].At & 15);
            Assert.True(t[i].At + (ulong)t[i].Length <= l.Rsdp + (ulong)l.Length);
            for (int j = i + 1; j < t.Length; j++)
                Assert.True(t[i].At + (ulong)t[i].Length <= t[j].At, $"table {i} overlaps table {j}");
        }
        Assert.Equal(0UL, l.Facs & 63);
    }

    [Fact]
    public void TheFacsIsEmptyButValid()
    {
        (LowRam ram, AcpiLayout layout) = Written(1);
        AcpiReader r = new AcpiReader(ram.Bytes);
        Assert.Equal("FACS", r.Ascii(layout.Facs, 4));
        Assert.Equal(64u, r.U32(layout.Facs + 4));
        Assert.Equal(2, r.U8(layout.Facs + 32));
        for (ulong p = 8; p < 64; p++)
        {
            if (p != 32)
                Assert.Equal(0, r.U8(layout.Facs + p));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    [InlineData(255)]
    public void TheMadtListsEveryVcpuTheIoApicTheOverridesAndLint1(int cpus)
    {
        (LowRam ram, AcpiLayout layout) = Written(cpus);
        AcpiReader r = new AcpiReader(ram.Bytes);
        ulong madt = layout.Madt;
        Assert.Equal(0xFEE0_0000u, r.U32(madt + 36));
        Assert.Equal(1u, r.U32(madt + 40)); // PCAT_COMPAT
        List<AcpiReader.MadtEntry> e = r.MadtEntries(madt);
        Assert.Equal(cpus + 1 + 2 + 1, e.Count);
        for (int i = 0; i < cpus; i++)
        {
            Assert.Equal(0, e[i].Type);
            Assert.Equal(8, e[i].Length);
            Assert.Equal(i, r.U8(e[i].Address + 2)); // processor UID
            Assert.Equal(i, r.U8(e[i].Address + 3)); // APIC ID
            Assert.Equal(1u, r.U32(e[i].Address + 4)); // enabled
        }
        AcpiReader.MadtEntry io = e[cpus];
        Assert.Equal((1, 12), (io.Type, io.Length));
        Assert.Equal(0, r.U8(io.Address + 2)); // IOAPIC ID
        Assert.Equal(0, r.U8(io.Address + 3));
        Assert.Equal(0xFEC0_0000u, r.U32(io.Address + 4));
        Assert.Equal(0u, r.U32(io.Address + 8)); // GSI base

        AcpiReader.MadtEntry timer = e[cpus + 1];
        Assert.Equal((2, 10), (timer.Type, timer.Length));
        Assert.Equal(0, r.U8(timer.Address + 2)); // ISA
        Assert.Equal(0, r.U8(timer.Address + 3)); // IRQ 0
        Assert.Equal(2u, r.U32(timer.Address + 4)); // GSI 2
        Assert.Equal(0, r.U16(timer.Address + 8)); // conforms to the bus

        AcpiReader.MadtEntry sci = e[cpus + 2];
        Assert.Equal((2, 10), (sci.Type, sci.Length));
        Assert.Equal(9, r.U8(sci.Address + 3));
        Assert.Equal(9u, r.U32(sci.Address + 4));
        Assert.Equal(0x000D, r.U16(sci.Address + 8)); // active high, level

        AcpiReader.MadtEntry nmi = e[cpus + 3];
        Assert.Equal((4, 6), (nmi.Type, nmi.Length));
        Assert.Equal(0xFF, r.U8(nmi.Address + 2)); // all processors
        Assert.Equal(0, r.U16(nmi.Address + 3));
        Assert.Equal(1, r.U8(nmi.Address + 5)); // LINT1
    }

    [Fact]
    public void TheFadtPointsAtTheDsdtFacsAndThePmBlocks()
    {
        (LowRam ram, AcpiLayout layout) = Written(2);
        AcpiReader r = new AcpiReader(ram.Bytes);
        ulong f = layout.Fadt;
        Assert.Equal((uint)layout.Facs, r.U32(f + 36));
        Assert.Equal((uint)layout.Dsdt, r.U32(f + 40));
        Assert.Equal(0UL, r.U64(f + 132)); // X_FIRMWARE_CTRL: the 32-bit one is used
        Assert.Equal(layout.Dsdt, r.U64(f + 140));
        Assert.Equal(9, r.U16(f + 46)); // SCI_INT
        Assert.Equal(0u, r.U32(f + 48)); // SMI_CMD: always in ACPI mode
        Assert.Equal(0, r.U8(f + 52) | r.U8(f + 53));
        Assert.Equal(0x600u, r.U32(f + 56)); // PM1a_EVT_BLK
        Assert.Equal(0u, r.U32(f + 60));
        Assert.Equal(0x604u, r.U32(f + 64)); // PM1a_CNT_BLK
        Assert.Equal(0u, r.U32(f + 68));
        Assert.Equal(0u, r.U32(f + 72));
        Assert.Equal(0x608u, r.U32(f + 76)); // PM_TMR_BLK
        Assert.Equal(0u, r.U32(f + 80)); // no GPE blocks
        Assert.Equal(4, r.U8(f + 88));
        Assert.Equal(2, r.U8(f + 89));
        Assert.Equal(0, r.U8(f + 90));
        Assert.Equal(4, r.U8(f + 91));
        Assert.Equal(0, r.U8(f + 92));
        Assert.Equal(0x32, r.U8(f + 108)); // CENTURY
        Assert.Equal(0x0005, r.U16(f + 109)); // legacy devices, no VGA; no 8042 (only its reset line is modelled)
        uint flags = r.U32(f + 112);
        Assert.Equal(0x0000_0565u, flags); // WBINVD, PROC_C1, SLP_BUTTON, FIX_RTC, TMR_VAL_EXT, RESET_REG_SUP
        Assert.Equal(0u, flags & (1u << 20)); // not HW_REDUCED_ACPI
        Assert.Equal(0u, flags & (1u << 4)); // the power button is the fixed one
        AssertIoGas(r, f + 116, 8, 1, 0xCF9);
        Assert.Equal(0x06, r.U8(f + 128));
        Assert.Equal(0, r.U8(f + 131));
        AssertIoGas(r, f + 148, 32, 2, 0x600);
        AssertZero(r, f + 160, 12);
        AssertIoGas(r, f + 172, 16, 2, 0x604);
        AssertZero(r, f + 184, 24);
        AssertIoGas(r, f + 208, 32, 3, 0x608);
        AssertZero(r, f + 220, 48); // GPE blocks, sleep control and status registers
        Assert.Equal("TANDEM\0\0", r.Ascii(f + 268, 8));
    }

    [Fact]
    public void WithoutAPmTimerTheFadtSaysSo()
    {
        AcpiConfig c = AcpiConfig.ForCpus(1);
        c.PmTimerPort = 0;
        byte[] block = new byte[AcpiTables.MaxLength];
        Assert.True(AcpiTables.Build(c, 0x1000, block, out AcpiLayout l));
        ulong f = l.Fadt - l.Rsdp;
        AcpiReader r = new AcpiReader(block);
        Assert.Equal(0u, r.U32(f + 76));
        Assert.Equal(0, r.U8(f + 91));
        Assert.Equal(0u, r.U32(f + 112) & AcpiTables.FadtTimerValExt);
        AssertZero(r, f + 208, 12);
        Assert.Equal(0, AcpiReader.Sum(block, f, AcpiTables.FadtLength));
    }

    [Fact]
    public void TheDsdtNamesS5WithTheSleepTypeThePmBlockPowersOffOn()
    {
        (LowRam ram, AcpiLayout layout) = Written(1);
        byte[] dsdt = new AcpiReader(ram.Bytes).Slice(layout.Dsdt, AcpiTables.DsdtLength);
        ulong[] s5 = AmlReader.NamedPackage(dsdt, "_S5_");
        Assert.Equal(new ulong[] { 5, 5, 0, 0 }, s5);
        Assert.Equal((ulong)AcpiPm.S5SleepType, s5[0]);
        Assert.Equal(2, dsdt[8]); // revision 2: 64-bit integers
    }

    [Fact]
    public void BuildUsesTheGivenBaseForEveryPointer()
    {
        byte[] block = new byte[AcpiTables.MaxLength + 100];
        block.AsSpan().Fill(0xEE);
        Assert.True(AcpiTables.Build(AcpiConfig.ForCpus(3), 0x7_0040, block, out AcpiLayout l));
        Assert.Equal(0x7_0040UL, l.Rsdp);
        AcpiReader r = new AcpiReader(block);
        Assert.Equal(l.Xsdt, r.U64(24));
        Assert.Equal((uint)l.Rsdt, r.U32(16));
        Assert.Equal(l.Fadt, r.U64(l.Xsdt - l.Rsdp + 36));
        // Gaps between tables are zeroed; bytes past the block are untouched.
        for (ulong p = 36; p < 64; p++)
            Assert.Equal(0, block[p]);
        Assert.Equal(0xEE, block[l.Length]);
    }

    [Theory]
    [InlineData(0, AcpiTables.StandardBase)]
    [InlineData(256, AcpiTables.StandardBase)]
    [InlineData(-1, AcpiTables.StandardBase)]
    [InlineData(1, AcpiTables.StandardBase + 16)] // the FACS must be 64-byte aligned
    [InlineData(1, 0xFFFF_FF00UL)] // would reach 4 GiB
    [InlineData(1, 0x1_0000_0000UL)]
    public void RefusedConfigurationsWriteNothing(int cpus, ulong baseGpa)
    {
        LowRam ram = new LowRam();
        LowRamRef rr = new LowRamRef(ram);
        Assert.False(AcpiTables.Write(ref rr, AcpiConfig.ForCpus(cpus), baseGpa, ulong.MaxValue, out _));
        Assert.Equal(0, ram.Writes);
        Assert.False(AcpiTables.Build(AcpiConfig.ForCpus(cpus), baseGpa, new byte[AcpiTables.MaxLength], out _));
    }

    [Fact]
    public void ABlockThatWouldLeaveItsRegionOrBufferIsRefused()
    {
        LowRam ram = new LowRam();
        LowRamRef rr = new LowRamRef(ram);
        int length = AcpiTables.LengthFor(8);
        ulong baseGpa = AcpiTables.BiosAreaEnd - 0x200;
        Assert.True(length > 0x200);
        Assert.False(AcpiTables.Write(ref rr, AcpiConfig.ForCpus(8), baseGpa, AcpiTables.BiosAreaEnd, out _));
        Assert.Equal(0, ram.Writes);
        Assert.False(AcpiTables.Build(AcpiConfig.ForCpus(8), AcpiTables.StandardBase, new byte[length - 1], out _));
        Assert.True(AcpiTables.Build(AcpiConfig.ForCpus(8), AcpiTables.StandardBase, new byte[length], out _));
    }

    [Fact]
    public void NoPm1aPortsIsRefused()
    {
        AcpiConfig c = AcpiConfig.ForCpus(1);
        c.Pm1aControlPort = 0;
        Assert.False(AcpiTables.TryLayout(c, AcpiTables.StandardBase, out _));
    }

    private static void AssertIoGas(AcpiReader r, ulong a, int bits, int access, ulong port)
    {
        Assert.Equal(1, r.U8(a)); // System I/O
        Assert.Equal(bits, r.U8(a + 1));
        Assert.Equal(0, r.U8(a + 2));
        Assert.Equal(access, r.U8(a + 3));
        Assert.Equal(port, r.U64(a + 4));
    }

    private static void AssertZero(AcpiReader r, ulong a, int n)
    {
        for (ulong i = 0; i < (ulong)n; i++)
            Assert.Equal(0, r.U8(a + i));
    }
}
