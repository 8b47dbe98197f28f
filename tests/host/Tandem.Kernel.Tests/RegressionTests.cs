using System;
using System.Buffers.Binary;
using System.Linq;
using System.Text;
using Tandem.Kernel.Parsers;
using Xunit;
using static Tandem.Kernel.Tests.Multiboot2Builder;

namespace Tandem.Kernel.Tests;

/// <summary>
/// One test per defect found in the kernel's parsers while making them portable and fuzzing them
/// (docs/security.md, "Parsers under fuzz"), named after the defect, plus the documented
/// behaviour on good input.
/// </summary>
public sealed class RegressionTests
{
    private static Multiboot2Info Parse(byte[] bytes, out string? problem)
    {
        var info = new Multiboot2Info();
        problem = Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x10_0000, bytes, ref info);
        return info;
    }

    private static Multiboot2Info Accept(byte[] bytes)
    {
        Multiboot2Info info = Parse(bytes, out string? problem);
        Assert.Null(problem);
        return info;
    }

    [Fact]
    public void GoodBootInformationIsReadWhole()
    {
        byte[] b = Seeds()[0];
        Multiboot2Info info = Accept(b);
        Assert.Equal("test=mem vm=linux,mem=256M", Encoding.ASCII.GetString(b, info.CommandLineOffset, info.CommandLineLength));
        Assert.Equal(2, info.ModuleCount);
        Assert.Equal(0x20_0000UL, info.Module(0).Start);
        Assert.Equal("symbols", Encoding.ASCII.GetString(b, info.Module(1).CommandLineOffset, info.Module(1).CommandLineLength));
        Assert.Equal(QemuMap.Length, info.RegionCount);
        Assert.True(info.MapReport.Clean);
        Assert.Equal(0, info.BadTags);
        Assert.Equal(20, info.RsdpLength);
        // QEMU's RAM below 4 GiB, whole pages: 0-0x9F000 and 1 MiB-0x1FFE0000.
        Assert.Equal(2, info.UsableCount);
        Assert.Equal((0UL, 0x9_F000UL), (info.Usable(0).Start, info.Usable(0).End));
        Assert.Equal((0x10_0000UL, 0x1FFE_0000UL), (info.Usable(1).Start, info.Usable(1).End));
    }

    /// <summary>The old parser kept a pointer to the string and the command-line parser read until a NUL, past the tag and the boot information.</summary>
    [Fact]
    public void CommandLineTagWithoutNulIsIgnored()
    {
        byte[] b = Info(Tag(1, Encoding.ASCII.GetBytes("test=mem")), MemoryMap(QemuMap));
        Multiboot2Info info = Accept(b);
        Assert.Equal(-1, info.CommandLineOffset);
        Assert.Equal(1, info.BadTags);
        Assert.Equal(1u, info.FirstBadTagType);
    }

    /// <summary>The same for a module's name, which the symbol loader and the guest runner compare byte by byte up to a NUL.</summary>
    [Fact]
    public void ModuleNameWithoutNulIsIgnored()
    {
        byte[] name = Encoding.ASCII.GetBytes("linux");
        var payload = new byte[8 + name.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 0x20_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), 0x30_0000);
        name.CopyTo(payload, 8);
        Multiboot2Info info = Accept(Info(Tag(3, payload), MemoryMap(QemuMap)));
        Assert.Equal(0, info.ModuleCount);
        Assert.Equal(1, info.BadTags);
    }

    /// <summary>A module whose end lies before its start made the kernel's module length wrap.</summary>
    [Fact]
    public void ModuleEndingBeforeItStartsIsIgnored()
    {
        Multiboot2Info info = Accept(Info(Module(0x30_0000, 0x20_0000, "linux"), MemoryMap(QemuMap)));
        Assert.Equal(0, info.ModuleCount);
        Assert.Equal(1, info.BadTags);
    }

    /// <summary>The old parser read the entry size at offset 8 of a memory-map tag of size 8: past the tag, and at the end of the structure past it.</summary>
    [Fact]
    public void MemoryMapTagShorterThanItsHeaderIsIgnored()
    {
        byte[] b = Info(MemoryMap(QemuMap), Tag(6, Array.Empty<byte>()));
        Multiboot2Info info = Accept(b);
        Assert.Equal(QemuMap.Length, info.RegionCount);
        Assert.Equal(1, info.BadTags);
        Assert.Equal(6u, info.FirstBadTagType);
    }

    /// <summary>The old ACPI code read the revision (byte 15) and the XSDT address (bytes 24-31) of the RSDP copy whatever the tag's size.</summary>
    [Fact]
    public void AcpiTagShorterThanTheRsdpIsIgnored()
    {
        byte[] rsdp = AcpiBuilder.Rsdp(true, 0x1000, 0x2000);
        Multiboot2Info info = Accept(Info(Tag(15, rsdp.AsSpan(0, 20).ToArray()), Tag(14, rsdp.AsSpan(0, 12).ToArray())));
        Assert.Equal(-1, info.RsdpOffset);
        Assert.Equal(2, info.BadTags);
    }

    /// <summary>The frame allocator freed each frame once per RAM entry that covered it: overlapping entries counted free frames twice.</summary>
    [Fact]
    public void OverlappingRamEntriesAreCountedOnce()
    {
        Multiboot2Info info = Accept(Info(MemoryMap((0x10_0000, 0x100_0000, 1), (0x80_0000, 0x100_0000, 1), (0x10_0000, 0x100_0000, 1))));
        Assert.Equal(3, info.MapReport.OverlappingRam);
        Assert.Equal(1, info.UsableCount);
        Assert.Equal((0x10_0000UL, 0x180_0000UL), (info.Usable(0).Start, info.Usable(0).End));
    }

    /// <summary>RAM that another entry also called reserved was handed out.</summary>
    [Fact]
    public void ReservedEntryOverRamStaysReserved()
    {
        Multiboot2Info info = Accept(Info(MemoryMap((0x10_0000, 0x100_0000, 1), (0x40_0800, 0x800, 2))));
        Assert.Equal(1, info.MapReport.ReservedOverRam);
        Assert.Equal(2, info.UsableCount);
        Assert.Equal((0x10_0000UL, 0x40_0000UL), (info.Usable(0).Start, info.Usable(0).End));
        Assert.Equal((0x40_1000UL, 0x110_0000UL), (info.Usable(1).Start, info.Usable(1).End));
    }

    /// <summary>An entry whose base + length passes 2^64 wrapped to a small end, and the RAM's top came out wrong.</summary>
    [Fact]
    public void EntryWrappingPast2To64IsCut()
    {
        Multiboot2Info info = Accept(Info(MemoryMap((0x10_0000, 0x10_0000, 1), (0x20_0000, ulong.MaxValue, 1))));
        Assert.Equal(1, info.MapReport.Wrapped);
        Assert.Equal(1, info.UsableCount);
        Assert.Equal((0x10_0000UL, 4UL << 30), (info.Usable(0).Start, info.Usable(0).End));
        Assert.True(info.MapReport.AboveLimitBytes > 0);
    }

    /// <summary>RAM above 4 GiB and zero-length entries were dropped without a word; now they are counted for the console.</summary>
    [Fact]
    public void RamAbove4GiBAndZeroLengthEntriesAreReported()
    {
        Multiboot2Info info = Accept(Info(MemoryMap((0x10_0000, 0xFFF0_0000, 1), (0x1_0000_0000, 0x4000_0000, 1), (0x5000, 0, 1))));
        Assert.Equal(0x4000_0000UL, info.MapReport.AboveLimitBytes);
        Assert.Equal(1, info.MapReport.ZeroLength);
        Assert.Equal((0x10_0000UL, 4UL << 30), (info.Usable(0).Start, info.Usable(0).End));
    }

    [Fact]
    public void TagSizePastTheEndAndZeroSizeAreRefused()
    {
        byte[] b = Info(String(1, "test"), MemoryMap(QemuMap));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), (uint)b.Length);
        Parse(b, out string? problem);
        Assert.Equal(Multiboot2Parser.TagPastEnd, problem);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), 0);
        Parse(b, out problem);
        Assert.Equal(Multiboot2Parser.TagPastEnd, problem);
        Parse(b.AsSpan(0, 8).ToArray(), out problem);
        Assert.Equal(Multiboot2Parser.ImplausibleSize, problem);
    }

    private static string? ParseAcpi(byte[] memory, byte[] rsdp, out AcpiInfo info, out FakeMemory reader)
    {
        reader = new FakeMemory(memory);
        info = new AcpiInfo();
        return AcpiParser.Parse(ref reader, rsdp, ref info);
    }

    private static AcpiBuilder.Cpu[] Cpus(int n) => System.Linq.Enumerable.Range(0, n).Select(i => new AcpiBuilder.Cpu(i >= 200, (uint)i, 1)).ToArray();

    private static byte[] GoodRsdp => AcpiBuilder.Rsdp(true, (uint)(AcpiBuilder.Base + AcpiBuilder.RsdtAt), AcpiBuilder.Base + AcpiBuilder.XsdtAt);

    [Fact]
    public void GoodTablesListTheirCpus()
    {
        Assert.Null(ParseAcpi(AcpiBuilder.Memory(Cpus(4)), GoodRsdp, out AcpiInfo info, out _));
        Assert.Equal(4, info.ApicCount);
        Assert.Equal(AcpiBuilder.Base + AcpiBuilder.MadtAt, info.MadtAddress);
        Assert.Equal(3u, info.ApicId(3));
    }

    /// <summary>The old code kept the first 64 and dropped the rest without a line on the console.</summary>
    [Fact]
    public void MadtWithMoreCpusThanSupportedCountsTheRest()
    {
        Assert.Null(ParseAcpi(AcpiBuilder.Memory(Cpus(100)), GoodRsdp, out AcpiInfo info, out _));
        Assert.Equal(AcpiInfo.MaxApics, info.ApicCount);
        Assert.Equal(36, info.DroppedCpus);
        Assert.Equal(100, info.ListedCpus);
    }

    /// <summary>The old code listed a repeated APIC id twice, and the kernel would start the same CPU twice.</summary>
    [Fact]
    public void DuplicateApicIdIsListedOnce()
    {
        var cpus = new[] { new AcpiBuilder.Cpu(false, 0, 1), new AcpiBuilder.Cpu(false, 1, 1), new AcpiBuilder.Cpu(false, 1, 1), new AcpiBuilder.Cpu(true, 0, 1) };
        Assert.Null(ParseAcpi(AcpiBuilder.Memory(cpus), GoodRsdp, out AcpiInfo info, out _));
        Assert.Equal(2, info.ApicCount);
        Assert.Equal(2, info.DuplicateIds);
    }

    /// <summary>GRUB's copy of the RSDP was used without checking its checksum.</summary>
    [Fact]
    public void RsdpWithBadChecksumIsRefused()
    {
        byte[] rsdp = GoodRsdp;
        rsdp[16] ^= 1;
        Assert.Equal(AcpiParser.BadRsdp, ParseAcpi(AcpiBuilder.Memory(Cpus(2)), rsdp, out _, out _));
        Assert.Equal(AcpiParser.BadRsdp, ParseAcpi(AcpiBuilder.Memory(Cpus(2)), GoodRsdp.AsSpan(0, 19).ToArray(), out _, out _));
    }

    [Fact]
    public void MadtWithBadChecksumOrLengthIsNotUsed()
    {
        byte[] m = AcpiBuilder.Memory(Cpus(2));
        m[AcpiBuilder.MadtAt + 50] ^= 0x40;
        Assert.Equal(AcpiParser.NoMadt, ParseAcpi(m, GoodRsdp, out _, out _));
        m = AcpiBuilder.Memory(Cpus(2));
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(AcpiBuilder.MadtAt + 4), 0x10_0000);
        AcpiBuilder.FixAll(m);
        Assert.Equal(AcpiParser.NoMadt, ParseAcpi(m, GoodRsdp, out _, out _));
    }

    [Fact]
    public void MissingRsdpIsNotFound()
    {
        var area = new byte[0x2_0000];
        new Random(5).NextBytes(area);
        Assert.Equal(-1, AcpiParser.FindRsdp(area));
        GoodRsdp.CopyTo(area, 0x1_2340);
        Assert.Equal(0x1_2340, AcpiParser.FindRsdp(area));
    }

    /// <summary>
    /// An XSDT of 1 MiB lists 131,000 times a 1 MiB table signed "APIC" with a bad checksum: the old
    /// code summed 1 MiB for every entry (10^11 reads, minutes at boot). Now at most 256 entries are looked at.
    /// </summary>
    [Fact]
    public void RootTableWithThousandsOfEntriesIsBounded()
    {
        const int big = AcpiParser.MaxTableLength - 64;
        var m = new byte[2 * AcpiParser.MaxTableLength];
        AcpiBuilder.Header(m, 0, "XSDT", big);
        for (int off = 36; off + 8 <= big; off += 8)
            BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(off), AcpiBuilder.Base + AcpiParser.MaxTableLength);
        AcpiBuilder.FixTable(m, 0);
        AcpiBuilder.Header(m, AcpiParser.MaxTableLength, "APIC", big);
        AcpiBuilder.FixTable(m, AcpiParser.MaxTableLength);
        m[AcpiParser.MaxTableLength + 100] ^= 1;
        byte[] rsdp = AcpiBuilder.Rsdp(true, 0, AcpiBuilder.Base);
        var reader = new FakeMemory(m, budget: (long)(AcpiParser.MaxRootEntries + 2) * AcpiParser.MaxTableLength);
        var info = new AcpiInfo();
        Assert.Equal(AcpiParser.NoMadt, AcpiParser.Parse(ref reader, rsdp, ref info));
    }

    private static CommandLineOptions ParseLine(string text, out ListLog log, out byte[] bytes)
    {
        bytes = Encoding.ASCII.GetBytes(text);
        CommandLineOptions o = CommandLineOptions.Defaults();
        log = new ListLog();
        CommandLineParser.Parse(bytes, ref o, ref log);
        return o;
    }

    private static string Text(byte[] b, int offset, int length) => offset < 0 ? "(none)" : Encoding.ASCII.GetString(b, offset, length);

    [Fact]
    public void GrubQuotedVmSpecIsRead()
    {
        CommandLineOptions o = ParseLine("test=mem \"vm=linux,mem=512M,cpus=2,cmdline=\\\"console=ttyS0 quiet\\\",reset=restart,fwcfg=opt/a:m\" swap=off", out ListLog log, out byte[] b);
        Assert.Empty(log.Lines);
        Assert.True(o.RunTests);
        Assert.Equal("mem", Text(b, o.TestPatternOffset, o.TestPatternLength));
        Assert.Equal(0UL, o.SwapMiB);
        Assert.Equal(1, o.VmCount);
        VmOptions v = o.Vm(0);
        Assert.Equal("linux", Text(b, v.ModuleOffset, v.ModuleLength));
        Assert.Equal(512UL, v.MemoryMiB);
        Assert.Equal(2, v.Cpus);
        Assert.True(v.RestartOnReset);
        Assert.Equal("console=ttyS0 quiet", Text(b, v.CmdlineOffset, v.CmdlineLength));
        Assert.Equal("opt/a:m", Text(b, v.FwCfgOffset, v.FwCfgLength));
    }

    /// <summary>
    /// mem= stops at 3 GiB: RAM is one range from guest-physical 0, and above 3 GiB it ran into the
    /// PCI hole, where the guest's IOAPIC and local APIC pages then read and wrote RAM.
    /// </summary>
    [Fact]
    public void VmMemoryEndsBelowThePciHole()
    {
        CommandLineOptions ok = ParseLine("vm=a,mem=3G vm=b,mem=3072M", out ListLog okLog, out _);
        Assert.Empty(okLog.Lines);
        Assert.Equal(2, ok.VmCount);
        Assert.Equal(3072UL, ok.Vm(0).MemoryMiB);
        Assert.Equal(3072UL, ok.Vm(1).MemoryMiB);
        CommandLineOptions refused = ParseLine("vm=c,mem=3073M vm=d,mem=4G", out ListLog log, out _);
        Assert.Equal(0, refused.VmCount);
        Assert.Equal(2, log.Lines.Count);
        Assert.All(log.Lines, l => Assert.Contains("vm= mem must be 1M..3G", l));
    }

    [Fact]
    public void BadVmSpecIsReportedAndDropped()
    {
        CommandLineOptions o = ParseLine("vm=x,cpus=17 vm=y,mem=5G vm=,mem=1 vm=z,bogus=1 nonsense mmstats=0", out ListLog log, out _);
        Assert.Equal(0, o.VmCount);
        Assert.Equal(new[]
        {
            "cmdline: vm= cpus must be 1..16: '17'; vm ignored",
            "cmdline: vm= mem must be 1M..3G (a number of MiB, or with a suffix: 256M, 1G; RAM ends below the PCI hole at 0xC0000000): '5G'; vm ignored",
            "cmdline: vm= needs a module name; vm ignored",
            "cmdline: unknown vm= suboption (known: mem, cpus, pin, cmdline, initrd, modules, budget, defaults, fwcfg, reset, seed): 'bogus'; vm ignored",
            "cmdline: unknown option 'nonsense' ignored",
            "cmdline: mmstats= takes a number of seconds (1..86400): '0' ignored",
        }, log.Lines);
        Assert.Equal(CommandLineOptions.Unset, o.MmStatsSeconds);
    }

    [Fact]
    public void WatermarksTakeTwoSizesLowFirst()
    {
        CommandLineOptions o = ParseLine("watermarks=4M,16M", out ListLog log, out _);
        Assert.Empty(log.Lines);
        Assert.Equal(4UL, o.WatermarkLowMiB);
        Assert.Equal(16UL, o.WatermarkHighMiB);
        foreach (string bad in new[] { "watermarks=16M,4M", "watermarks=4M", "watermarks=0,4M", "watermarks=4M,4M", "watermarks=a,b" })
        {
            o = ParseLine(bad, out log, out _);
            Assert.Equal(CommandLineOptions.Unset, o.WatermarkLowMiB);
            Assert.Equal(CommandLineOptions.Unset, o.WatermarkHighMiB);
            Assert.Equal("cmdline: watermarks= takes two sizes, the low one first and above 0 (4M,8M): '" + bad.Substring(11) + "' ignored", Assert.Single(log.Lines));
        }
    }

    /// <summary>Not a kernel defect (the kernel's text ended in a NUL), a guard for the port: a trailing backslash looks one byte ahead, which on a span is past its end.</summary>
    [Fact]
    public void TrailingBackslashStaysInsideTheText()
    {
        CommandLineOptions o = ParseLine("test=a\\", out ListLog log, out byte[] b);
        Assert.Empty(log.Lines);
        Assert.Equal("a\\", Text(b, o.TestPatternOffset, o.TestPatternLength));
    }

    [Fact]
    public void MoreThanEightVmsAreReported()
    {
        CommandLineOptions o = ParseLine("vm=a vm=b vm=c vm=d vm=e vm=f vm=g vm=h vm=i", out ListLog log, out _);
        Assert.Equal(CommandLineOptions.MaxVms, o.VmCount);
        Assert.Equal(new[] { "cmdline: too many vm= options, extra ignored" }, log.Lines);
    }
}
