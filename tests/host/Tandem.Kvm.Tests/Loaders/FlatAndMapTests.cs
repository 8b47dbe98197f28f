using System;
using System.Text;
using Tandem.Kvm.Boot;
using Xunit;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

public class FlatLoaderTests
{
    private static byte[] Tgst(uint mode, uint entry, int length = 0x100)
    {
        byte[] b = Pattern(length);
        Put32(b, 0, 0x54534754);
        Put32(b, 4, mode);
        Put32(b, 8, entry);
        return b;
    }

    [Fact]
    public void PlainImageIsEnteredAtOneMiBIn32BitMode()
    {
        byte[] image = Pattern(0x1234);
        LoaderRun run = LoaderRun.Load(LoaderKind.Flat, image);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(BootMode.Protected32, run.Entry.Mode);
        Assert.Equal(0x10_0000UL, run.Entry.Rip);
        Assert.Equal(LoaderRun.DefaultRam - 64, run.Entry.Rsp);
        Assert.Equal(image, run.Ram.Slice(0x10_0000, image.Length));
        Assert.Equal(1, run.Ram.Writes);
    }

    [Fact]
    public void TgstHeaderSelectsLongModeWithTheFirstGiBMapped()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Flat, Tgst(64, 0x40));
        Assert.True(run.Ok, run.Message);
        Assert.Equal(BootMode.Long64, run.Entry.Mode);
        Assert.Equal(0x10_0040UL, run.Entry.Rip);
        Assert.Equal(0x1000UL, run.Entry.Cr3);
        foreach (ulong va in new ulong[] { 0, 0x10_0040, 0x3FFF_FFFF })
            Assert.Equal(va, LinuxTests.Translate(run.Ram, 0x1000, va));
        run = LoaderRun.Load(LoaderKind.Flat, Tgst(32, 0x10));
        Assert.Equal((BootMode.Protected32, 0x10_0010UL), (run.Entry.Mode, run.Entry.Rip));
    }

    [Theory]
    [InlineData(0u, 0x10u, 0x100, "the guest image header names an unknown mode")]
    [InlineData(64u, 0x100u, 0x100, "the guest image's entry point is outside the image")]
    [InlineData(32u, 0u, 0, "the guest image is empty")]
    public void BadImagesAreRefusedWithTheMessagesTheKernelPrinted(uint mode, uint entry, int length, string expected)
    {
        byte[] image = length == 0 ? Array.Empty<byte>() : Tgst(mode, entry, length);
        LoaderRun run = LoaderRun.Load(LoaderKind.Flat, image);
        Assert.False(run.Ok);
        Assert.Equal("vm: " + expected, run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }

    [Fact]
    public void TooBigAndTooMuchRamAreRefused()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Flat, new byte[0xF0_0001]);
        Assert.Equal("vm: the guest image does not fit in guest RAM", run.Message);
        Assert.Equal(LoadErrorKind.DoesNotFit, run.Error.Kind);
        Assert.Equal(0xF0_0001UL, run.Error.Value0);
        run = LoaderRun.Load(LoaderKind.Flat, Tgst(64, 0), ramSize: 2UL << 30, ram: new TestRam(1 << 20));
        Assert.Equal("vm: 64-bit test guests support at most 1 GiB of RAM", run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }
}

public class GuestMemoryMapTests
{
    [Fact]
    public void SmallRamHasTheLegacyHoleOnly()
    {
        var map = new GuestMemoryMap(16UL << 20);
        Assert.Equal(3, map.Count);
        Assert.Equal((0UL, 0xA_0000UL, MemoryType.Ram), (map.Get(0).Start, map.Get(0).Size, map.Get(0).Type));
        Assert.Equal((0xA_0000UL, 0x6_0000UL, MemoryType.Reserved), (map.Get(1).Start, map.Get(1).Size, map.Get(1).Type));
        Assert.Equal((0x10_0000UL, 15UL << 20, MemoryType.Ram), (map.Get(2).Start, map.Get(2).Size, map.Get(2).Type));
        Assert.Equal((640UL, 15UL * 1024), (map.LowerKiB, map.UpperKiB));
        Assert.True(map.IsRam(0x9_F000, 0x1000));
        Assert.False(map.IsRam(0x9_F000, 0x1001));
        Assert.False(map.IsRam(0xB_8000, 1));
        Assert.True(map.IsRam(0xFF_FFFF, 1));
        Assert.False(map.IsRam(0xFF_FFFF, 2));
        Assert.False(map.IsRam(0x10_0000, ulong.MaxValue));
        Assert.False(map.IsRam(ulong.MaxValue, 2));
    }

    [Fact]
    public void RamAbove3GiBIsRelocatedPastThePciHole()
    {
        var map = new GuestMemoryMap(4UL << 30);
        Assert.Equal(4, map.Count);
        Assert.Equal((0x10_0000UL, 0xC000_0000UL), (map.Get(2).Start, map.Get(2).End));
        Assert.Equal((0x1_0000_0000UL, 1UL << 30, MemoryType.Ram), (map.Get(3).Start, map.Get(3).Size, map.Get(3).Type));
        Assert.False(map.IsRam(0xC000_0000, 1));
        Assert.False(map.IsRam(0xFEE0_0000, 1));
        Assert.True(map.IsRam(0x1_3FFF_F000, 0x1000));
        Assert.Equal(3UL * 1024 * 1024 - 1024, map.UpperKiB);
        var exact = new GuestMemoryMap(3UL << 30);
        Assert.Equal(3, exact.Count);
    }

    [Fact]
    public void TinyRamHasNoUpperMemory()
    {
        Assert.Equal(0, new GuestMemoryMap(0).Count);
        var map = new GuestMemoryMap(0x8_0000);
        Assert.Equal(1, map.Count);
        Assert.Equal(0x8_0000UL, map.Get(0).Size);
        map = new GuestMemoryMap(0xC_0000);
        Assert.Equal(2, map.Count);
        Assert.Equal(0x2_0000UL, map.Get(1).Size);
        Assert.Equal(0UL, map.UpperKiB);
    }

    [Fact]
    public void PlacerNeverOverlapsAndSkipsHoles()
    {
        var placer = new GuestPlacer(new GuestMemoryMap(16UL << 20), 0x9_F800, GuestMemoryMap.FourGiB);
        Assert.True(placer.Allocate(0x400, 8, out ulong a));
        Assert.Equal(0x9_F800UL, a);
        Assert.True(placer.Allocate(0x800, 8, out ulong b));
        Assert.Equal(0x10_0000UL, b);   // would cross into the legacy hole: moved to 1 MiB
        Assert.True(placer.Allocate(1, 0x1000, out ulong c));
        Assert.Equal(0x10_1000UL, c);
        Assert.False(placer.Allocate(16UL << 20, 0x1000, out _));
        Assert.False(placer.Allocate(ulong.MaxValue, 8, out _));
    }
}

public class LoadErrorTests
{
    private struct Sink : ITextSink
    {
        public StringBuilder Text;
        public void WriteChar(char c) => Text.Append(c);
        public void WriteHex(ulong value) => Text.Append("0x").Append(value.ToString("X"));
        public void WriteDecimal(ulong value) => Text.Append(value);
    }

    [Fact]
    public void PlaceholdersPrintTheValuesInOrder()
    {
        var e = new LoadError(LoadErrorKind.Malformed, "bad ELF: program header {d} ends past the file (offset {x}, size {x})", 2, 0x1000, 0x20);
        var sink = new Sink { Text = new StringBuilder() };
        e.WriteTo(ref sink);
        Assert.Equal("bad ELF: program header 2 ends past the file (offset 0x1000, size 0x20)", sink.Text.ToString());
        Assert.Equal("vm: {y} {d", StringSink.Format(new LoadError(LoadErrorKind.Malformed, "{y} {d")));
        Assert.Equal("vm: ", StringSink.Format(default));
        Assert.False(default(LoadError).IsError);
    }
}
