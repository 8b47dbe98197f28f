using System;
using System.Collections.Generic;
using Tandem.Kvm.Boot;
using Xunit;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

public class MultibootTests
{
    internal static readonly TestModule[] TwoModules =
    {
        new(Pattern(5000, 1), "first module"),
        new(Pattern(100, 2), "second"),
    };

    /// <summary>An ELF kernel at 2 MiB: the multiboot header, then code, then 0x1000 bytes of bss.</summary>
    internal static ElfFile Kernel(bool is64, uint flags = 3, ulong paddr = 0x20_0000, ulong vaddr = 0)
    {
        byte[] data = Concat(Multiboot(flags), Pattern(256, 3));
        return Elf(is64, (vaddr != 0 ? vaddr : paddr) + 12, new List<ElfSeg>
        {
            new() { Paddr = paddr, Vaddr = vaddr, Data = data, MemSize = (ulong)data.Length + 0x1000 },
        });
    }

    private static TestRam Dirty(ulong size = LoaderRun.DefaultRam)
    {
        var ram = new TestRam(size);
        Array.Fill(ram.Bytes, (byte)0xCC);
        return ram;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ElfKernelLoadsAndGetsTheInformationBlock(bool is64)
    {
        ElfFile elf = Kernel(is64);
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, elf.Bytes, cmdline: "console=ttyS0 quiet", modules: TwoModules, ram: Dirty());
        Assert.True(run.Ok, run.Message);
        Assert.Null(run.Ram.Violation);
        TestRam ram = run.Ram;

        // Entry state.
        Assert.Equal(BootMode.Protected32, run.Entry.Mode);
        Assert.Equal(0x20_000CUL, run.Entry.Rip);
        Assert.Equal(0x2BADB002UL, run.Entry.Rax);
        Assert.Equal(0UL, run.Entry.Cr0 & BootEntry.Cr0Pg);
        Assert.Equal(BootEntry.Cr0Pe, run.Entry.Cr0 & BootEntry.Cr0Pe);
        Assert.Equal(0UL, run.Entry.Efer);
        Assert.Equal(BootGdt.Code32, run.Entry.CodeSelector);
        Assert.Equal(BootGdt.Data, run.Entry.DataSelector);
        Assert.Equal(BootGdt.Code32Descriptor, ram.U64(run.Entry.GdtBase + BootGdt.Code32));
        Assert.Equal(BootGdt.DataDescriptor, ram.U64(run.Entry.GdtBase + BootGdt.Data));

        // The segment and its zeroed bss.
        int fileSize = 12 + 256;
        Assert.Equal(elf.Bytes.AsSpan((int)elf.SegmentOffsets[0], fileSize).ToArray(), ram.Slice(0x20_0000, fileSize));
        Assert.All(ram.Slice(0x20_0000 + (ulong)fileSize, 0x1000), b => Assert.Equal(0, b));
        ulong imageEnd = 0x20_0000 + (ulong)fileSize + 0x1000;

        // The information block.
        ulong info = run.Entry.Rbx;
        Assert.True(info >= imageEnd);
        uint flags = ram.U32(info);
        Assert.Equal(MultibootLoader.InfoMemory | MultibootLoader.InfoCmdline | MultibootLoader.InfoModules | MultibootLoader.InfoMemoryMap | MultibootLoader.InfoLoaderName, flags);
        Assert.Equal(640u, ram.U32(info + 4));
        Assert.Equal(15u * 1024, ram.U32(info + 8));
        Assert.Equal("console=ttyS0 quiet", ram.CString(ram.U32(info + 16)));
        Assert.Equal("Tandem", ram.CString(ram.U32(info + 64)));

        // Memory map: size field 20, then base, length, type.
        uint mmapLength = ram.U32(info + 44);
        ulong mmap = ram.U32(info + 48);
        Assert.Equal(3u * 24, mmapLength);
        var expected = new (ulong, ulong, uint)[] { (0, 0xA_0000, 1), (0xA_0000, 0x6_0000, 2), (0x10_0000, 15UL << 20, 1) };
        for (int i = 0; i < 3; i++)
        {
            ulong e = mmap + (ulong)(24 * i);
            Assert.Equal(20u, ram.U32(e));
            Assert.Equal(expected[i], (ram.U64(e + 4), ram.U64(e + 12), ram.U32(e + 20)));
        }

        // Modules: page-aligned, above the image, not overlapping, with their own command lines.
        Assert.Equal(2u, ram.U32(info + 20));
        ulong mods = ram.U32(info + 24);
        ulong previousEnd = imageEnd;
        for (int i = 0; i < 2; i++)
        {
            ulong e = mods + (ulong)(16 * i);
            ulong start = ram.U32(e), end = ram.U32(e + 4);
            Assert.Equal(0UL, start % 0x1000);
            Assert.True(start >= previousEnd, $"module {i} at 0x{start:X} overlaps what ends at 0x{previousEnd:X}");
            Assert.True(start >= info + MultibootLoader.InfoSize);
            Assert.Equal((ulong)TwoModules[i].Data.Length, end - start);
            Assert.Equal(TwoModules[i].Data, ram.Slice(start, TwoModules[i].Data.Length));
            Assert.Equal(TwoModules[i].Cmdline, ram.CString(ram.U32(e + 8)));
            previousEnd = end;
        }
    }

    [Fact]
    public void EntryIsTranslatedFromVirtualToPhysical()
    {
        ElfFile elf = Kernel(false, paddr: 0x20_0000, vaddr: 0xC020_0000);
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, elf.Bytes);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0x20_000CUL, run.Entry.Rip);
    }

    [Fact]
    public void AddressFieldsLoadAFlatFileWithBss()
    {
        // 0x40 bytes of code, the header at file offset 0x40, then more code; loaded at 3 MiB.
        const uint load = 0x30_0000;
        byte[] tail = Pattern(0x200, 4);
        int length = 0x40 + 32 + tail.Length;
        byte[] header = Multiboot(0, new uint[] { load + 0x40, load, load + (uint)length, load + (uint)length + 0x2000, load + 0x60 });
        byte[] image = Concat(Pattern(0x40, 5), header, tail);
        var ram = Dirty();
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, image, ram: ram, modules: TwoModules);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(image, ram.Slice(load, image.Length));
        Assert.All(ram.Slice(load + (ulong)length, 0x2000), b => Assert.Equal(0, b));
        Assert.Equal(load + 0x60UL, run.Entry.Rip);
        Assert.True(run.Entry.Rbx >= load + (ulong)length + 0x2000);
        Assert.Null(ram.Violation);
    }

    [Fact]
    public void AddressFieldsWithZeroEndsLoadTheWholeFile()
    {
        const uint load = 0x30_0000;
        byte[] image = Concat(Multiboot(0, new uint[] { load, load, 0, 0, load }), Pattern(100));
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, image);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(image, run.Ram.Slice(load, image.Length));
    }

    [Fact]
    public void CommandLineWithoutTerminatorGetsOne()
    {
        var ram = Dirty();
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, Kernel(false).Bytes, rawCmdline: new byte[] { (byte)'a', (byte)'b', (byte)'c' }, ram: ram);
        Assert.True(run.Ok, run.Message);
        Assert.Equal("abc", ram.CString(ram.U32(run.Entry.Rbx + 16)));
        run = LoaderRun.Load(LoaderKind.Multiboot, Kernel(false).Bytes, rawCmdline: new byte[] { (byte)'a', 0, (byte)'c' }, ram: Dirty());
        Assert.Equal("a", run.Ram.CString(run.Ram.U32(run.Entry.Rbx + 16)));
    }

    [Fact]
    public void HeaderBeyond8KiBIsNotFound()
    {
        byte[] image = Concat(new byte[8192], Multiboot(0, new uint[] { 0x30_2000, 0x30_0000, 0, 0, 0x30_2000 }));
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, image);
        Assert.False(run.Ok);
        Assert.Equal(LoadErrorKind.NotThisFormat, run.Error.Kind);
        Assert.Contains("no header (magic 0x1BADB002) in the first 8192 bytes", run.Message);
    }

    public static IEnumerable<object[]> Refusals()
    {
        // (name, image, expected text)
        yield return new object[] { "bad checksum", Concat(Multiboot(3, checksum: 5), Pattern(64)), "checksum 0x5 does not match flags 0x3" };
        yield return new object[] { "unsupported flag", Kernel(false, flags: 0x8 | 3).Bytes, "header flags 0x B" };
        yield return new object[] { "not ELF", Concat(Multiboot(3), Pattern(64)), "not ELF and its header has no address fields" };
        ElfFile e = Kernel(false);
        byte[] b = (byte[])e.Bytes.Clone();
        Put32(b, e.PhOff + 16, 0x2000);   // p_filesz > p_memsz (0x110C)
        yield return new object[] { "filesz > memsz", b, "program header 0 has p_filesz 0x2000 larger than p_memsz 0x110C" };
        e = Kernel(true);
        b = (byte[])e.Bytes.Clone();
        Put64(b, e.PhOff + 8, 0xFFFF_FFFF_FFFF_FFF0);   // p_offset + p_filesz overflows
        yield return new object[] { "offset overflow", b, "bad ELF: program header 0 ends past the file (offset 0xFFFFFFFFFFFFFFF0, size 0x10C)" };
        e = Kernel(false, paddr: 0xFF_F000);
        yield return new object[] { "past RAM", e.Bytes, "program header 0 is not inside guest RAM (p_paddr 0xFFF000, p_memsz 0x110C)" };
        e = Kernel(false, paddr: 0xA_0000);
        yield return new object[] { "legacy hole", e.Bytes, "program header 0 is not inside guest RAM (p_paddr 0xA0000" };
        e = Kernel(true);
        b = (byte[])e.Bytes.Clone();
        Put64(b, e.PhOff + 24, 0xFFFF_FFFF_FFFF_F000);
        yield return new object[] { "wrap", b, "program header 0 wraps around the address space (p_paddr 0xFFFFFFFFFFFFF000, p_memsz 0x110C)" };
        e = Kernel(true);
        b = (byte[])e.Bytes.Clone();
        Put64(b, e.PhOff + 24, 0x1_0000_0000);
        yield return new object[] { "above 4 GiB", b, "program header 0 ends above what a 32-bit entry reaches (p_paddr 0x100000000" };
        e = Kernel(false);
        b = (byte[])e.Bytes.Clone();
        Put32(b, 24, 0x50_0000);
        yield return new object[] { "entry outside", b, "entry point 0x500000 is outside every loadable segment" };
        b = (byte[])Kernel(false).Bytes.Clone();
        Put16(b, 44, 0x400);   // e_phnum: the table runs past the file
        yield return new object[] { "phdr table", b, "the program header table ends past the file (offset 0x34, size 0x8000)" };
        b = (byte[])Kernel(false).Bytes.Clone();
        Put16(b, 16, 3);
        yield return new object[] { "ET_DYN", b, "e_type 3 is not an executable (2)" };
        b = (byte[])Kernel(false).Bytes.Clone();
        b[4] = 9;
        yield return new object[] { "class", b, "class 9 is neither ELF32 (1) nor ELF64 (2)" };
        yield return new object[] { "load above header", Concat(Multiboot(0, new uint[] { 0x30_0000, 0x30_0010, 0, 0, 0x30_0000 }), Pattern(64)), "load_addr 0x300010 is above header_addr 0x300000" };
        yield return new object[] { "load before file", Concat(Multiboot(0, new uint[] { 0x30_0010, 0x30_0000, 0, 0, 0x30_0010 }), Pattern(64)), "load_addr 0x300000 lies before the start of the file (header_addr 0x300010, header at file offset 0x0)" };
        yield return new object[] { "load_end past file", Concat(Multiboot(0, new uint[] { 0x30_0000, 0x30_0000, 0x30_1000, 0, 0x30_0000 }), Pattern(64)), "load_end_addr 0x301000 runs past the end of the file (load_addr 0x300000, file size 0x60)" };
        yield return new object[] { "bss below load end", Concat(Multiboot(0, new uint[] { 0x30_0000, 0x30_0000, 0x30_0040, 0x30_0020, 0x30_0000 }), Pattern(64)), "bss_end_addr 0x300020 is below the end of the loaded file 0x300040" };
        yield return new object[] { "entry outside fields", Concat(Multiboot(0, new uint[] { 0x30_0000, 0x30_0000, 0, 0, 0x40_0000 }), Pattern(64)), "entry_addr 0x400000 is outside the loaded image (0x300000 to 0x300060)" };
        yield return new object[] { "fields past RAM", Concat(Multiboot(0, new uint[] { 0xFF_FFF0, 0xFF_FFF0, 0, 0, 0xFF_FFF0 }), Pattern(64)), "the image is not inside guest RAM (load_addr 0xFFFFF0, end 0x1000050)" };
        yield return new object[] { "truncated fields", Multiboot(0, new uint[] { 0, 0, 0, 0, 0 }).AsSpan(0, 20).ToArray(), "bad multiboot header at offset 0x0: flag 16 is set but the address fields end past the file (file size 0x14)" };
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void MalformedImagesAreRefusedBeforeAnyWrite(string name, byte[] image, string expected)
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, image, cmdline: "x", modules: TwoModules);
        Assert.False(run.Ok, name);
        Assert.Contains(expected.Replace("0x B", "0xB"), run.Message);
        Assert.Equal(0, run.Ram.Writes);
        Assert.Null(run.Ram.Violation);
    }

    [Fact]
    public void ModulesThatDoNotFitAreRefused()
    {
        var big = new[] { new TestModule(new byte[0x100_0000], "big") };
        LoaderRun run = LoaderRun.Load(LoaderKind.Multiboot, Kernel(false).Bytes, modules: big);
        Assert.False(run.Ok);
        Assert.Equal(LoadErrorKind.DoesNotFit, run.Error.Kind);
        Assert.Equal("vm: multiboot: module 0 (0x1000000 bytes) does not fit in guest RAM below 4 GiB", run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }
}
