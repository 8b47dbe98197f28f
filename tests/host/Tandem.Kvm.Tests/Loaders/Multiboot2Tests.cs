using System;
using System.Collections.Generic;
using Tandem.Kvm.Boot;
using Xunit;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

public class Multiboot2Tests
{
    /// <summary>An ELF kernel at 2 MiB whose first segment starts with a multiboot2 header with <paramref name="tags"/>.</summary>
    internal static ElfFile Kernel(bool is64, params byte[][] tags)
    {
        byte[] header = Multiboot2(0, tags);
        byte[] data = Concat(header, Pattern(256, 3));
        return Elf(is64, 0x20_0000 + (ulong)header.Length, new List<ElfSeg>
        {
            new() { Paddr = 0x20_0000, Data = data, MemSize = (ulong)data.Length + 0x1000 },
        });
    }

    internal static byte[] InfoRequest(ushort flags, params uint[] types) => Tag(Multiboot2Loader.TagInformationRequest, flags, types);

    /// <summary>Reads the boot information tags: (type, offset of the tag).</summary>
    private static List<(uint Type, ulong At)> Tags(TestRam ram, ulong info)
    {
        var tags = new List<(uint, ulong)>();
        uint total = ram.U32(info);
        ulong at = info + 8;
        while (true)
        {
            Assert.Equal(0UL, at % 8);
            uint type = ram.U32(at), size = ram.U32(at + 4);
            tags.Add((type, at));
            if (type == 0)
            {
                Assert.Equal(8u, size);
                Assert.Equal(info + total, at + 8);
                return tags;
            }
            at += (size + 7UL) & ~7UL;
            Assert.True(at < info + total);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ElfKernelGetsTheTagList(bool is64)
    {
        ElfFile elf = Kernel(is64, InfoRequest(0, 1, 2, 3, 4, 6), Tag(Multiboot2Loader.TagConsoleFlags, 0, 3), Tag(Multiboot2Loader.TagModuleAlign, 0));
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot2, elf.Bytes, cmdline: "root=/dev/vda", modules: MultibootTests.TwoModules);
        Assert.True(run.Ok, run.Message);
        Assert.Null(run.Ram.Violation);
        TestRam ram = run.Ram;
        Assert.Equal(0x36D76289UL, run.Entry.Rax);
        Assert.Equal(BootMode.Protected32, run.Entry.Mode);
        Assert.Equal(0x20_0000UL + (ulong)Multiboot2(0, InfoRequest(0, 1, 2, 3, 4, 6), Tag(4, 0, 3), Tag(6, 0)).Length, run.Entry.Rip);
        ulong info = run.Entry.Rbx;
        Assert.Equal(0UL, info % 8);
        Assert.True(info >= 0x20_0000 + 0x1000);
        Assert.Equal(0u, ram.U32(info + 4));

        var tags = Tags(ram, info);
        Assert.Equal(new uint[] { 1, 2, 3, 3, 4, 6, 0 }, tags.ConvertAll(t => t.Type).ToArray());
        Assert.Equal("root=/dev/vda", ram.CString(tags[0].At + 8));
        Assert.Equal("Tandem", ram.CString(tags[1].At + 8));
        ulong previousEnd = info + ram.U32(info);
        for (int i = 0; i < 2; i++)
        {
            ulong t = tags[2 + i].At;
            ulong start = ram.U32(t + 8), end = ram.U32(t + 12);
            Assert.Equal(0UL, start % 0x1000);
            Assert.True(start >= previousEnd);
            Assert.Equal(MultibootTests.TwoModules[i].Data, ram.Slice(start, (int)(end - start)));
            Assert.Equal(MultibootTests.TwoModules[i].Cmdline, ram.CString(t + 16));
            previousEnd = end;
        }
        Assert.Equal((16u, 640u, 15u * 1024), (ram.U32(tags[4].At + 4), ram.U32(tags[4].At + 8), ram.U32(tags[4].At + 12)));
        ulong map = tags[5].At;
        Assert.Equal(16u + 3 * 24, ram.U32(map + 4));
        Assert.Equal(24u, ram.U32(map + 8));
        Assert.Equal(0u, ram.U32(map + 12));
        Assert.Equal((0xA_0000UL, 0x6_0000UL, 2u), (ram.U64(map + 16 + 24), ram.U64(map + 16 + 24 + 8), ram.U32(map + 16 + 24 + 16)));
        Assert.Equal((0x10_0000UL, 15UL << 20, 1u), (ram.U64(map + 16 + 48), ram.U64(map + 16 + 48 + 8), ram.U32(map + 16 + 48 + 16)));
    }

    [Fact]
    public void AddressTagLoadsAFlatFile()
    {
        const uint load = 0x30_0000;
        byte[] header = Multiboot2(0, Tag(Multiboot2Loader.TagAddress, 0, load, load, 0, 0), Tag(Multiboot2Loader.TagEntryAddress, 0, 0));
        int length = header.Length + 0x100;
        header = Multiboot2(0, Tag(Multiboot2Loader.TagAddress, 0, load, load, 0, load + (uint)length + 0x3000), Tag(Multiboot2Loader.TagEntryAddress, 0, load + (uint)header.Length));
        byte[] image = Concat(header, Pattern(0x100, 9));
        var ram = new TestRam(LoaderRun.DefaultRam);
        Array.Fill(ram.Bytes, (byte)0xCC);
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot2, image, ram: ram);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(image, ram.Slice(load, image.Length));
        Assert.All(ram.Slice(load + (ulong)length, 0x3000), b => Assert.Equal(0, b));
        Assert.Equal(load + (ulong)header.Length, run.Entry.Rip);
        Assert.True(run.Entry.Rbx >= load + (ulong)length + 0x3000);
    }

    [Fact]
    public void OptionalRequestsAndTagsAreIgnored()
    {
        ElfFile elf = Kernel(false, InfoRequest(1, 8, 14), Tag(42, 1), Tag(Multiboot2Loader.TagFramebuffer, 1, 1024, 768, 32));
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot2, elf.Bytes);
        Assert.True(run.Ok, run.Message);
    }

    public static IEnumerable<object[]> Refusals()
    {
        yield return new object[] { "architecture", Concat(Multiboot2(4), Pattern(64)), "header architecture 4 is not i386 (0)" };
        yield return new object[] { "required info", Kernel(false, InfoRequest(0, 1, 8)).Bytes, "requires boot information tag 8" };
        yield return new object[] { "required tag", Kernel(false, Tag(42, 0)).Bytes, "the header has required tag 42 (at offset 0x" };
        yield return new object[] { "framebuffer", Kernel(false, Tag(Multiboot2Loader.TagFramebuffer, 0, 1024, 768, 32)).Bytes, "required tag 5" };
        yield return new object[] { "address without entry", Concat(Multiboot2(0, Tag(2, 0, 0x30_0000, 0x30_0000, 0, 0)), Pattern(64)), "an address tag without an entry address tag" };
        yield return new object[] { "entry outside", Kernel(false, Tag(3, 0, 0x90_0000)).Bytes, "entry_addr 0x900000 is outside every loadable segment" };
        yield return new object[] { "not ELF", Concat(Multiboot2(0), Pattern(64)), "not ELF and its header has no address tag" };
        byte[] h = Multiboot2(0, Tag(6, 0));
        Put32(h, 16 + 4, 0x100);   // the first tag claims more than the header holds
        yield return new object[] { "tag size", Concat(h, Pattern(512)), "tag 6 at offset 0x10 has size 0x100, outside the header" };
        h = Multiboot2(0, Tag(6, 0));
        Put16(h, 24, 6);           // the end tag becomes a module-align tag: no end tag
        yield return new object[] { "no end tag", Concat(h, Pattern(64)), "the tag list has no end tag (header_length 0x20)" };
        h = Multiboot2(0);
        Put32(h, 12, 7);
        yield return new object[] { "checksum", Concat(h, Pattern(64)), "bad multiboot2 header at offset 0x0: checksum 0x7 does not match" };
        h = Multiboot2(0);
        Put32(h, 8, 0x1000);
        Put32(h, 12, unchecked(0u - 0xE85250D6u - 0x1000u));
        yield return new object[] { "length", Concat(h, Pattern(64)), "header_length 0x1000 does not fit in the file (header at offset 0x0, file size 0x58)" };
        yield return new object[] { "none", Pattern(40000), "no header (magic 0xE85250D6) in the first 32768 bytes" };
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void MalformedImagesAreRefusedBeforeAnyWrite(string name, byte[] image, string expected)
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot2, image, cmdline: "x", modules: MultibootTests.TwoModules);
        Assert.False(run.Ok, name);
        Assert.True(run.Message.Contains(expected), run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }
}
