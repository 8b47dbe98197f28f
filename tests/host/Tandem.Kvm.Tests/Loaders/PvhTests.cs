using System;
using System.Collections.Generic;
using Tandem.Kvm.Boot;
using Xunit;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

public class PvhTests
{
    internal static byte[] EntryNote(uint entry) => Note("Xen", 18, BitConverter.GetBytes(entry));

    /// <summary>A vmlinux-like ELF: a PT_LOAD at 2 MiB with bss, and a PT_NOTE with unrelated notes before the PHYS32_ENTRY one.</summary>
    internal static ElfFile Kernel(bool is64, byte[]? note = null, bool asSection = false)
    {
        byte[] notes = Concat(Note("GNU", 3, new byte[20]), Note("Xen", 6, new byte[] { 1, 2, 3 }), note ?? EntryNote(0x20_0010));
        var segs = new List<ElfSeg> { new() { Paddr = 0x20_0000, Vaddr = 0xFFFF_FFFF_8120_0000, Data = Pattern(0x300, 5), MemSize = 0x2000 } };
        if (!asSection)
            segs.Add(new ElfSeg { Type = 4, Data = notes });
        return Elf(is64, 0xFFFF_FFFF_8120_0000, segs, asSection ? new List<byte[]> { notes } : null);
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void VmlinuxGetsHvmStartInfo(bool is64, bool asSection)
    {
        ElfFile elf = Kernel(is64, asSection: asSection);
        LoaderRun run = LoaderRun.Load(LoaderKind.Pvh, elf.Bytes, cmdline: "console=ttyS0 earlyprintk", modules: MultibootTests.TwoModules, rsdp: 0xF_5A40);
        Assert.True(run.Ok, run.Message);
        Assert.Null(run.Ram.Violation);
        TestRam ram = run.Ram;
        Assert.Equal(BootMode.Protected32, run.Entry.Mode);
        Assert.Equal(0x20_0010UL, run.Entry.Rip);
        Assert.Equal(0UL, run.Entry.Cr0 & BootEntry.Cr0Pg);
        Assert.Equal(BootGdt.Code32, run.Entry.CodeSelector);
        Assert.Equal(elf.Bytes.AsSpan((int)elf.SegmentOffsets[0], 0x300).ToArray(), ram.Slice(0x20_0000, 0x300));

        ulong si = run.Entry.Rbx;
        Assert.True(si >= 0x20_2000);
        Assert.Equal(0x336EC578u, ram.U32(si));
        Assert.Equal(1u, ram.U32(si + 4));
        Assert.Equal(2u, ram.U32(si + 12));
        Assert.Equal("console=ttyS0 earlyprintk", ram.CString(ram.U64(si + 24)));
        Assert.Equal(0xF_5A40UL, ram.U64(si + 32));
        ulong memmap = ram.U64(si + 40);
        Assert.Equal(3u, ram.U32(si + 48));
        Assert.Equal((0UL, 0xA_0000UL, 1u), (ram.U64(memmap), ram.U64(memmap + 8), ram.U32(memmap + 16)));
        Assert.Equal((0xA_0000UL, 0x6_0000UL, 2u), (ram.U64(memmap + 24), ram.U64(memmap + 32), ram.U32(memmap + 40)));
        Assert.Equal((0x10_0000UL, 15UL << 20, 1u), (ram.U64(memmap + 48), ram.U64(memmap + 56), ram.U32(memmap + 64)));
        ulong modlist = ram.U64(si + 16);
        ulong previousEnd = si + PvhLoader.StartInfoSize;
        for (int i = 0; i < 2; i++)
        {
            ulong e = modlist + (ulong)(32 * i);
            ulong start = ram.U64(e), size = ram.U64(e + 8);
            Assert.Equal(0UL, start % 0x1000);
            Assert.True(start >= previousEnd);
            Assert.Equal(MultibootTests.TwoModules[i].Data, ram.Slice(start, (int)size));
            Assert.Equal(MultibootTests.TwoModules[i].Cmdline, ram.CString(ram.U64(e + 16)));
            previousEnd = start + size;
        }
    }

    [Fact]
    public void EightByteDescriptorIsAccepted()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Pvh, Kernel(true, Note("Xen", 18, BitConverter.GetBytes(0x20_0020UL))).Bytes);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0x20_0020UL, run.Entry.Rip);
        Assert.Equal(0UL, run.Ram.U64(run.Entry.Rbx + 16));   // no modules: modlist_paddr 0
    }

    public static IEnumerable<object[]> Refusals()
    {
        yield return new object[] { "no note", Kernel(true, Note("Xen", 5, new byte[4])).Bytes, "not a PVH kernel: no Xen note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)" };
        yield return new object[] { "other name", Kernel(true, Note("Xe", 18, new byte[4])).Bytes, "no Xen note of type 18" };
        yield return new object[] { "descriptor size", Kernel(true, Note("Xen", 18, new byte[2])).Bytes, "bad PVH note: PHYS32_ENTRY descriptor is 2 bytes (expected 4 or 8)" };
        yield return new object[] { "above 4 GiB", Kernel(true, Note("Xen", 18, BitConverter.GetBytes(0x1_0000_0000UL))).Bytes, "PHYS32_ENTRY 0x100000000 is above 4 GiB" };
        yield return new object[] { "entry outside", Kernel(false, EntryNote(0x80_0000)).Bytes, "PHYS32_ENTRY 0x800000 is outside every loadable segment" };
        ElfFile e = Kernel(true);
        byte[] b = (byte[])e.Bytes.Clone();
        Put64(b, e.PhOff + 56 + 8, 0x7FFF_FFFF);   // the PT_NOTE's offset past the file
        yield return new object[] { "note past file", b, "note program header 1 ends past the file (offset 0x7FFFFFFF" };
        e = Kernel(true);
        b = (byte[])e.Bytes.Clone();
        Put64(b, e.PhOff + 40, 0x100_0000);     // p_memsz: 2 MiB + 16 MiB ends past 16 MiB of RAM
        yield return new object[] { "segment past RAM", b, "program header 0 is not inside guest RAM (p_paddr 0x200000, p_memsz 0x1000000)" };
        yield return new object[] { "not ELF", Pattern(100), "not an ELF image: no ELF magic at offset 0" };
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void MalformedImagesAreRefusedBeforeAnyWrite(string name, byte[] image, string expected)
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Pvh, image, cmdline: "x", modules: MultibootTests.TwoModules);
        Assert.False(run.Ok, name);
        Assert.True(run.Message.Contains(expected), run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }
}
