using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using Tandem.Kvm.Acpi;
using Tandem.Kvm.Boot;
using Tandem.Kvm.Devices;
using Tandem.Kvm.Tests.Loaders;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>The platform's fw_cfg items as a guest reads them through ports 0x510/0x511: etc/e820 and etc/acpi/rsdp.</summary>
public class FwCfgPlatformTests
{
    private static PcPlatform Platform(ulong ram, ushort cpus = 1) =>
        new PcPlatform(new ManualClock(), new RecordingSerialSink(), ram, cpus, 2_000_000_000);

    private static byte[] ReadItem(PcPlatform p, ushort key, int length)
    {
        p.Ports.Write(FwCfg.SelectorPort, 2, key);
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++)
            b[i] = (byte)p.Ports.Read(FwCfg.DataPort, 1);
        return b;
    }

    /// <summary>The file named <paramref name="name"/> found through the directory, as firmware finds it; null if absent.</summary>
    private static byte[]? ReadFile(PcPlatform p, string name)
    {
        uint count = BinaryPrimitives.ReadUInt32BigEndian(ReadItem(p, FwCfg.KeyFileDir, 4));
        byte[] dir = ReadItem(p, FwCfg.KeyFileDir, 4 + 64 * (int)count);
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> e = dir.AsSpan(4 + 64 * i, 64);
            int len = e.Slice(8, 56).IndexOf((byte)0);
            if (Encoding.ASCII.GetString(e.Slice(8, len)) != name)
                continue;
            uint size = BinaryPrimitives.ReadUInt32BigEndian(e);
            ushort key = BinaryPrimitives.ReadUInt16BigEndian(e.Slice(4, 2));
            return ReadItem(p, key, (int)size);
        }
        return null;
    }

    private static List<(ulong Address, ulong Length, uint Type)> E820(PcPlatform p)
    {
        byte[] file = ReadFile(p, "etc/e820") ?? throw new InvalidOperationException("no etc/e820");
        Assert.Equal(0, file.Length % 20);
        var list = new List<(ulong, ulong, uint)>();
        for (int o = 0; o < file.Length; o += 20)
        {
            list.Add((BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(o)),
                BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(o + 8)),
                BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(o + 16))));
        }
        return list;
    }

    public static IEnumerable<object[]> Sizes() =>
    [
        [16UL << 20],
        [1UL << 30],
        [3UL << 30],
        [0xE000_0000UL],        // 3.5 GiB: 512 MiB past the PCI hole
        [4UL << 30],
        [6UL << 30],
    ];

    /// <summary>
    /// etc/e820 is the map the loaders hand the kernel: the PVH loader's memmap (written into guest
    /// RAM from GuestMemoryMap) has the same entries, in the same order, with the same types.
    /// </summary>
    [Theory]
    [MemberData(nameof(Sizes))]
    public void E820IsTheLoadersMap(ulong ram)
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Pvh, PvhTests.Kernel(true).Bytes, ramSize: ram, ram: new TestRam(16UL << 20));
        Assert.True(run.Ok, run.Message);
        Assert.Null(run.Ram.Violation);
        ulong si = run.Entry.Rbx;
        ulong memmap = run.Ram.U64(si + 40);
        uint entries = run.Ram.U32(si + 48);
        var loader = new List<(ulong, ulong, uint)>();
        for (uint i = 0; i < entries; i++)
        {
            ulong e = memmap + 24 * i;
            loader.Add((run.Ram.U64(e), run.Ram.U64(e + 8), run.Ram.U32(e + 16)));
        }
        Assert.Equal(loader, E820(Platform(ram)));
    }

    /// <summary>Every size, small ones too, against GuestMemoryMap itself.</summary>
    [Theory]
    [InlineData(0x8_0000UL)]
    [InlineData(0xC_0000UL)]
    [InlineData(0x10_0000UL)]
    [InlineData(16UL << 20)]
    [InlineData(0xE000_0000UL)]
    [InlineData(4UL << 30)]
    public void E820IsGuestMemoryMap(ulong ram)
    {
        var map = new GuestMemoryMap(ram);
        var expected = new List<(ulong, ulong, uint)>();
        for (int i = 0; i < map.Count; i++)
            expected.Add((map.Get(i).Start, map.Get(i).Size, (uint)map.Get(i).Type));
        Assert.Equal(expected, E820(Platform(ram)));
    }

    /// <summary>3.5 GiB spelled out: nothing in the PCI hole, the last 512 MiB at 4 GiB.</summary>
    [Fact]
    public void E820LeavesThePciHoleEmpty()
    {
        Assert.Equal(new List<(ulong, ulong, uint)>
        {
            (0, 0xA_0000, 1),
            (0xA_0000, 0x6_0000, 2),
            (0x10_0000, 0xBFF0_0000, 1),
            (0x1_0000_0000, 0x2000_0000, 1),
        }, E820(Platform(0xE000_0000)));
    }

    /// <summary>etc/acpi/rsdp holds the RSDP of the tables the VM gets (same config, same base as GuestImage writes them).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void AcpiRsdpFileIsTheTablesRsdp(ushort cpus)
    {
        PcPlatform p = Platform(64UL << 20, cpus);
        byte[]? rsdp = ReadFile(p, "etc/acpi/rsdp");
        Assert.NotNull(rsdp);
        byte[] block = new byte[AcpiTables.LengthFor(cpus)];
        Assert.True(AcpiTables.Build(p.AcpiConfig, PcPlatform.AcpiBase, block, out AcpiLayout layout));
        Assert.Equal(block.AsSpan(0, AcpiTables.RsdpLength).ToArray(), rsdp);
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(rsdp, 0, 8));
        Assert.Equal(2, rsdp[15]);
        Assert.Equal((uint)layout.Rsdt, BinaryPrimitives.ReadUInt32LittleEndian(rsdp.AsSpan(16)));
        Assert.Equal(layout.Xsdt, BinaryPrimitives.ReadUInt64LittleEndian(rsdp.AsSpan(24)));
        int sum20 = 0, sum36 = 0;
        for (int i = 0; i < 36; i++)
        {
            sum36 += rsdp[i];
            if (i < 20)
                sum20 += rsdp[i];
        }
        Assert.Equal(0, sum20 & 0xFF);
        Assert.Equal(0, sum36 & 0xFF);
        Assert.Equal(AcpiTables.StandardBase, PcPlatform.AcpiBase);
    }

    /// <summary>Below 1 MiB of RAM the VM gets no ACPI tables, and fw_cfg no RSDP.</summary>
    [Fact]
    public void NoRsdpFileWithoutTables()
    {
        Assert.Null(ReadFile(Platform(0xC_0000), "etc/acpi/rsdp"));
        Assert.NotNull(ReadFile(Platform(0xC_0000), "etc/e820"));
    }

    /// <summary>The user's eight files still fit beside the platform's two.</summary>
    [Fact]
    public void EightUserFilesFitBesideThePlatformsOwn()
    {
        PcPlatform p = Platform(64UL << 20);
        for (int i = 0; i < PcPlatform.MaxUserFwCfgFiles; i++)
            Assert.NotEqual(0xFFFF, p.FwCfg.AddFile(Encoding.ASCII.GetBytes("opt/f" + i), new byte[] { (byte)i }));
        Assert.Equal(0xFFFF, p.FwCfg.AddFile("opt/one-too-many"u8, new byte[1]));
    }

    /// <summary>The CPU counts a QEMU guest reads: key 0x05 and key 0x0F (max CPUs) both the platform's vCPUs.</summary>
    [Fact]
    public void CpuCountAndMaxCpus()
    {
        PcPlatform p = Platform(64UL << 20, 3);
        Assert.Equal(new byte[] { 3, 0 }, ReadItem(p, FwCfg.KeyCpuCount, 2));
        Assert.Equal(new byte[] { 3, 0 }, ReadItem(p, FwCfg.KeyMaxCpus, 2));
    }
}
