using System;
using System.Buffers.Binary;
using System.Text;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class FwCfgTests
{
    private readonly FwCfg _fw = new FwCfg(ramBytes: 0x1_2000_0000, cpus: 2, maxCpus: 4, fileCapacity: 4);
    private readonly PortBus _bus;

    public FwCfgTests()
    {
        _bus = PortBusWith.New(_fw, FwCfg.SelectorPort, FwCfg.PortCount);
    }

    // As a guest does it: a 16-bit selector write, then 8-bit data reads.
    private byte[] ReadItem(ushort key, int length)
    {
        _bus.Write(FwCfg.SelectorPort, 2, key);
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++)
            b[i] = (byte)_bus.Read(FwCfg.DataPort, 1);
        return b;
    }

    [Fact]
    public void SignatureIsQemu() => Assert.Equal("QEMU"u8.ToArray(), ReadItem(FwCfg.KeySignature, 4));

    [Fact]
    public void IdSaysTraditionalInterfaceWithoutDma() => Assert.Equal(new byte[] { 1, 0, 0, 0 }, ReadItem(FwCfg.KeyId, 4));

    [Fact]
    public void RamSizeAndCpuCountsAreLittleEndian()
    {
        Assert.Equal(0x1_2000_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(ReadItem(FwCfg.KeyRamSize, 8)));
        Assert.Equal(new byte[] { 2, 0 }, ReadItem(FwCfg.KeyCpuCount, 2));
        Assert.Equal(new byte[] { 4, 0 }, ReadItem(FwCfg.KeyMaxCpus, 2));
    }

    [Fact]
    public void ReadsPastTheEndAndOfMissingItemsReturnZero()
    {
        Assert.Equal(new byte[] { (byte)'Q', (byte)'E', (byte)'M', (byte)'U', 0, 0, 0 }, ReadItem(FwCfg.KeySignature, 7));
        Assert.Equal(new byte[4], ReadItem(0x0002, 4)); // UUID: not provided
        Assert.Equal(new byte[4], ReadItem(0x0FFF, 4));
        Assert.Equal(new byte[4], ReadItem(0x8000, 4)); // architecture-local
    }

    [Fact]
    public void SelectingAgainRestartsTheItem()
    {
        ReadItem(FwCfg.KeySignature, 2);
        Assert.Equal("QEMU"u8.ToArray(), ReadItem(FwCfg.KeySignature, 4));
        Assert.Equal(FwCfg.KeySignature, _fw.Selected);
    }

    [Fact]
    public void WiderReadsReturnSuccessiveBytesFirstMostSignificant()
    {
        _bus.Write(FwCfg.SelectorPort, 2, FwCfg.KeySignature);
        Assert.Equal(0x5145_4D55u, _bus.Read(FwCfg.DataPort, 4)); // 'Q' 'E' 'M' 'U'
        Assert.Equal(0u, _bus.Read(FwCfg.DataPort, 2));
    }

    [Fact]
    public void EmptyDirectoryHasCountZero() => Assert.Equal(new byte[] { 0, 0, 0, 0, 0 }, ReadItem(FwCfg.KeyFileDir, 5));

    [Fact]
    public void FileDirectoryAndE820ReadBackByteByByte()
    {
        E820Entry[] map =
        {
            new E820Entry(0, 0xA_0000, E820Entry.Ram),
            new E820Entry(0xA_0000, 0x6_0000, E820Entry.Reserved),
            new E820Entry(0x10_0000, 0xBFF0_0000, E820Entry.Ram),
            new E820Entry(0x1_0000_0000, 0x2000_0000, E820Entry.Ram),
        };
        byte[] e820 = E820Entry.BuildFile(map);
        Assert.Equal(80, e820.Length);
        ushort e820Key = _fw.AddFile("etc/e820"u8, e820);
        ushort otherKey = _fw.AddFile("opt/tandem/hello"u8, new byte[] { 1, 2, 3 });
        Assert.Equal(0x20, e820Key);
        Assert.Equal(0x21, otherKey);

        byte[] count = ReadItem(FwCfg.KeyFileDir, 4);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(count));
        byte[] dir = ReadItem(FwCfg.KeyFileDir, 4 + 2 * 64 + 4);
        for (int i = 4 + 128; i < dir.Length; i++)
            Assert.Equal(0, dir[i]); // past the end
        (uint size, ushort select, string name) Entry(int n)
        {
            ReadOnlySpan<byte> e = dir.AsSpan(4 + 64 * n, 64);
            Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(e.Slice(6, 2)));
            int len = e.Slice(8, 56).IndexOf((byte)0);
            for (int i = 8 + len; i < 64; i++)
                Assert.Equal(0, e[i]);
            return (BinaryPrimitives.ReadUInt32BigEndian(e), BinaryPrimitives.ReadUInt16BigEndian(e.Slice(4, 2)), Encoding.ASCII.GetString(e.Slice(8, len)));
        }
        Assert.Equal((80u, (ushort)0x20, "etc/e820"), Entry(0));
        Assert.Equal((3u, (ushort)0x21, "opt/tandem/hello"), Entry(1));

        // Find the file by name as a guest would, then read it through its key.
        byte[] file = ReadItem(Entry(0).select, (int)Entry(0).size);
        for (int i = 0; i < map.Length; i++)
        {
            ReadOnlySpan<byte> e = file.AsSpan(20 * i, 20);
            Assert.Equal(map[i].Address, BinaryPrimitives.ReadUInt64LittleEndian(e));
            Assert.Equal(map[i].Length, BinaryPrimitives.ReadUInt64LittleEndian(e.Slice(8)));
            Assert.Equal(map[i].Type, BinaryPrimitives.ReadUInt32LittleEndian(e.Slice(16)));
        }
        Assert.Equal(new byte[] { 1, 2, 3, 0 }, ReadItem(otherKey, 4));
    }

    [Fact]
    public void E820FileLayoutIsExact()
    {
        byte[] f = E820Entry.BuildFile(new[] { new E820Entry(0x1122_3344_5566_7788, 0x0102_0304_0506_0708, 0xAABB_CCDD) });
        Assert.Equal(new byte[]
        {
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
            0xDD, 0xCC, 0xBB, 0xAA,
        }, f);
    }

    [Fact]
    public void AddFileRefusesBadNamesAndAFullDevice()
    {
        Assert.Equal(0xFFFF, _fw.AddFile(ReadOnlySpan<byte>.Empty, new byte[1]));
        Assert.Equal(0xFFFF, _fw.AddFile(new byte[56], new byte[1]));
        Assert.NotEqual(0xFFFF, _fw.AddFile(new byte[55], new byte[1]));
        for (int i = 1; i < 4; i++)
            Assert.NotEqual(0xFFFF, _fw.AddFile("f"u8, new byte[1]));
        Assert.Equal(0xFFFF, _fw.AddFile("g"u8, new byte[1]));
        Assert.Equal(4, _fw.Files);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(ReadItem(FwCfg.KeyFileDir, 4)));
    }

    [Fact]
    public void WriteChannelBitIsIgnoredForReads() => Assert.Equal("QEMU"u8.ToArray(), ReadItem(0x4000, 4));

    [Fact]
    public void DataPortWritesAreIgnored()
    {
        _bus.Write(FwCfg.SelectorPort, 2, FwCfg.KeySignature);
        _bus.Write(FwCfg.DataPort, 1, 0);
        Assert.Equal((uint)'Q', _bus.Read(FwCfg.DataPort, 1));
    }

    [Fact]
    public void ResetSelectsTheSignatureFromItsStart()
    {
        ReadItem(FwCfg.KeyRamSize, 3);
        _fw.Reset();
        Assert.Equal(FwCfg.KeySignature, _fw.Selected);
        Assert.Equal((uint)'Q', _bus.Read(FwCfg.DataPort, 1));
    }

    [Fact]
    public void CommandLineIsAbsentUntilSet()
    {
        Assert.Equal(new byte[4], ReadItem(FwCfg.KeyCmdlineSize, 4));
        Assert.Equal(new byte[4], ReadItem(FwCfg.KeyCmdlineData, 4));
    }

    // QEMU's -append: FW_CFG_CMDLINE_SIZE (0x14) = strlen + 1 as a u32 LE, FW_CFG_CMDLINE_DATA (0x15) = the string with its NUL.
    [Fact]
    public void CommandLineSizeCountsTheNulAndDataEndsWithIt()
    {
        _fw.SetCommandLine("console=ttyS0 quiet"u8);
        Assert.Equal(20u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.KeyCmdlineSize, 4)));
        Assert.Equal(new byte[] { 0, 0 }, ReadItem(FwCfg.KeyCmdlineSize, 6).AsSpan(4).ToArray());
        byte[] data = ReadItem(FwCfg.KeyCmdlineData, 22);
        Assert.Equal("console=ttyS0 quiet\0\0\0", Encoding.ASCII.GetString(data));
    }

    [Fact]
    public void CommandLineStopsAtItsFirstNulAndASecondOneReplacesIt()
    {
        _fw.SetCommandLine("a much longer first line"u8);
        _fw.SetCommandLine("ab\0cd"u8);
        Assert.Equal(new byte[] { 3, 0, 0, 0 }, ReadItem(FwCfg.KeyCmdlineSize, 4));
        Assert.Equal(new byte[] { (byte)'a', (byte)'b', 0, 0 }, ReadItem(FwCfg.KeyCmdlineData, 4));
        _fw.SetCommandLine(ReadOnlySpan<byte>.Empty);
        Assert.Equal(new byte[] { 1, 0, 0, 0 }, ReadItem(FwCfg.KeyCmdlineSize, 4));
        Assert.Equal(new byte[] { 0, 0 }, ReadItem(FwCfg.KeyCmdlineData, 2));
    }
}
