using System;
using System.Collections.Generic;
using Tandem.Kvm.Boot;
using Xunit;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

public class LinuxTests
{
    private static readonly TestModule[] Initrd = { new(Pattern(0x3000, 11), "") };

    /// <summary>Walks 4-level paging with 2 MiB pages from <paramref name="cr3"/>; the physical address <paramref name="va"/> maps to.</summary>
    internal static ulong Translate(TestRam ram, ulong cr3, ulong va)
    {
        ulong pml4e = ram.U64(cr3 + ((va >> 39) & 511) * 8);
        Assert.True((pml4e & 1) != 0, $"PML4E for 0x{va:X} not present");
        ulong pdpte = ram.U64((pml4e & 0xF_FFFF_FFFF_F000) + ((va >> 30) & 511) * 8);
        Assert.True((pdpte & 1) != 0, $"PDPTE for 0x{va:X} not present");
        Assert.True((pdpte & 0x80) == 0);
        ulong pde = ram.U64((pdpte & 0xF_FFFF_FFFF_F000) + ((va >> 21) & 511) * 8);
        Assert.True((pde & 0x83) == 0x83, $"PDE for 0x{va:X} is not a writable 2 MiB page");
        return (pde & 0xF_FFFF_FFE0_0000) | (va & 0x1F_FFFF);
    }

    [Fact]
    public void BzImageBootsAtThe64BitEntry()
    {
        var o = new BzOptions();
        byte[] image = BzImage(o);
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, image, ramSize: 64UL << 20, cmdline: "console=ttyS0 root=/dev/vda", modules: Initrd);
        Assert.True(run.Ok, run.Message);
        Assert.Null(run.Ram.Violation);
        TestRam ram = run.Ram;
        const ulong load = 0x100_0000;   // pref_address fits in 64 MiB

        Assert.Equal(BootMode.Long64, run.Entry.Mode);
        Assert.Equal(load + 0x200, run.Entry.Rip);
        Assert.Equal(LinuxLoader.ZeroPage, run.Entry.Rsi);
        Assert.Equal(BootEntry.Cr0Pe | BootEntry.Cr0Pg, run.Entry.Cr0 & (BootEntry.Cr0Pe | BootEntry.Cr0Pg));
        Assert.Equal(BootEntry.Cr4Pae, run.Entry.Cr4 & BootEntry.Cr4Pae);
        Assert.Equal(BootEntry.EferLme | BootEntry.EferLma, run.Entry.Efer);
        Assert.Equal((ushort)0x10, run.Entry.CodeSelector);
        Assert.Equal((ushort)0x18, run.Entry.DataSelector);
        Assert.Equal(LinuxLoader.GdtAddress, run.Entry.GdtBase);
        Assert.Equal(BootGdt.Code64Descriptor, ram.U64(LinuxLoader.GdtAddress + 0x10));
        Assert.Equal(BootGdt.DataDescriptor, ram.U64(LinuxLoader.GdtAddress + 0x18));

        // The protected-mode kernel: the file after (setup_sects + 1) sectors.
        Assert.Equal(image.AsSpan(1024).ToArray(), ram.Slice(load, image.Length - 1024));

        // The zero page: the setup header copied, the loader's fields filled in.
        ulong zp = LinuxLoader.ZeroPage;
        var patched = new HashSet<ulong>();
        foreach (ulong f in new ulong[] { 0x210, 0x214, 0x215, 0x216, 0x217, 0x218, 0x219, 0x21A, 0x21B, 0x21C, 0x21D, 0x21E, 0x21F, 0x228, 0x229, 0x22A, 0x22B, 0x23C, 0x23D, 0x23E, 0x23F })
            patched.Add(f);
        for (ulong i = 0x250; i < 0x258; i++)
            patched.Add(i);
        for (ulong i = 0x1F1; i < 0x268; i++)
            if (!patched.Contains(i))
                Assert.True(image[i] == ram.U8(zp + i), $"setup header byte 0x{i:X} not copied");
        Assert.Equal((byte)0xFF, ram.U8(zp + 0x210));
        Assert.Equal((uint)load, ram.U32(zp + 0x214));
        Assert.Equal(0x2_0000u, ram.U32(zp + 0x228));
        Assert.Equal(0u, ram.U32(zp + 0xC8));
        Assert.Equal("console=ttyS0 root=/dev/vda", ram.CString(0x2_0000));
        Assert.Equal(0UL, ram.U64(zp + 0x250));
        Assert.Equal(0, ram.U8(zp + 0x1EF));   // sentinel

        // The initrd: page-aligned, above the kernel's init_size, below initrd_addr_max, as high as RAM allows.
        ulong initrd = ram.U32(zp + 0x218);
        Assert.Equal(0x3000u, ram.U32(zp + 0x21C));
        Assert.Equal(0u, ram.U32(zp + 0xC0));
        Assert.Equal(0UL, initrd % 0x1000);
        Assert.True(initrd >= load + o.InitSize);
        Assert.Equal((64UL << 20) - 0x3000, initrd);
        Assert.Equal(Initrd[0].Data, ram.Slice(initrd, 0x3000));

        // e820.
        Assert.Equal(3, ram.U8(zp + 0x1E8));
        Assert.Equal((0UL, 0xA_0000UL, 1u), (ram.U64(zp + 0x2D0), ram.U64(zp + 0x2D8), ram.U32(zp + 0x2E0)));
        Assert.Equal((0xA_0000UL, 0x6_0000UL, 2u), (ram.U64(zp + 0x2E4), ram.U64(zp + 0x2EC), ram.U32(zp + 0x2F4)));
        Assert.Equal((0x10_0000UL, 63UL << 20, 1u), (ram.U64(zp + 0x2F8), ram.U64(zp + 0x300), ram.U32(zp + 0x308)));

        // The identity map covers the kernel, the zero page, the command line, the initrd, the GDT and 4 GiB.
        foreach (ulong va in new[] { load, load + o.InitSize - 1, zp, 0x2_0000UL, initrd, initrd + 0x2FFF, LinuxLoader.GdtAddress, 0xFFFF_FFFFUL, 0x8000_1234UL })
            Assert.Equal(va, Translate(ram, run.Entry.Cr3, va));
    }

    [Fact]
    public void TheRsdpAddressGoesToTheZeroPage()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions()), ramSize: 64UL << 20, rsdp: 0xE_0000);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0xE_0000UL, run.Ram.U64(LinuxLoader.ZeroPage + 0x070));   // boot_params.acpi_rsdp_addr
        LoaderRun none = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions()), ramSize: 64UL << 20);
        Assert.True(none.Ok, none.Message);
        Assert.Equal(0UL, none.Ram.U64(LinuxLoader.ZeroPage + 0x070));
    }

    [Fact]
    public void RelocatableKernelMovesWhenPrefAddressDoesNotFit()
    {
        // 16 MiB of RAM: pref_address 16 MiB does not fit; the first 2 MiB boundary from 1 MiB does.
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions()), modules: Initrd);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0x20_0200UL, run.Entry.Rip);
        Assert.Equal(0x20_0000u, run.Ram.U32(LinuxLoader.ZeroPage + 0x214));
    }

    [Fact]
    public void SetupSectsZeroMeansFour()
    {
        byte[] image = BzImage(new BzOptions { SetupSects = 0 });
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, image);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(image.AsSpan(5 * 512).ToArray(), run.Ram.Slice(0x20_0000, image.Length - 5 * 512));
    }

    [Fact]
    public void InitrdStaysBelowInitrdAddrMaxAndOffTheKernel()
    {
        // The kernel at 16 MiB (pref_address); initrd_addr_max 8 MiB puts the initrd below it.
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions { InitrdAddrMax = 0x7F_FFFF }), ramSize: 64UL << 20, modules: Initrd);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0x80_0000u - 0x3000, run.Ram.U32(LinuxLoader.ZeroPage + 0x218));
        // initrd_addr_max inside the kernel: the initrd goes below the kernel's start.
        run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions { InitrdAddrMax = 0x100_FFFF }), ramSize: 64UL << 20, modules: Initrd);
        Assert.True(run.Ok, run.Message);
        Assert.Equal(0x100_0000u - 0x3000, run.Ram.U32(LinuxLoader.ZeroPage + 0x218));
    }

    public static IEnumerable<object[]> Refusals()
    {
        yield return new object[] { "protocol 2.05", BzImage(new BzOptions { Version = 0x205 }), "boot protocol version 0x205 is older than 2.06 (0x206)" };
        yield return new object[] { "no XLF_KERNEL_64", BzImage(new BzOptions { XLoadFlags = 2 }), "xloadflags 0x2 lack XLF_KERNEL_64" };
        yield return new object[] { "2.11 has no xloadflags", BzImage(new BzOptions { Version = 0x20B }), "xloadflags 0x0 lack XLF_KERNEL_64 (no 64-bit entry point; protocol 0x20B)" };
        yield return new object[] { "zImage", BzImage(new BzOptions { LoadFlags = 0 }), "loadflags 0x0 lack LOADED_HIGH" };
        yield return new object[] { "boot_flag", BzImage(new BzOptions { BootFlag = 0x1234 }), "boot_flag 0x1234 is not 0xAA55" };
        yield return new object[] { "setup past file", BzImage(new BzOptions { SetupSects = 200 }).AsSpan(0, 0x1000).ToArray(), "setup_sects 200 puts the kernel at offset 0x19200, at or past the end of the file (file size 0x1000)" };
        yield return new object[] { "alignment", BzImage(new BzOptions { KernelAlignment = 0x30_0000 }), "kernel_alignment 0x300000 is not a power of two" };
        yield return new object[] { "not relocatable", BzImage(new BzOptions { Relocatable = 0, PrefAddress = 0x100_0000 }), "no room for the kernel (0x20000 bytes, pref_address 0x1000000)" };
        yield return new object[] { "init_size", BzImage(new BzOptions { InitSize = 0x200_0000 }), "no room for the kernel (0x2000000 bytes" };
        yield return new object[] { "short", BzImage(new BzOptions()).AsSpan(0, 0x230).ToArray(), "the file is 560 bytes, too short for a setup header" };
        yield return new object[] { "no HdrS", new byte[0x1000], "not a Linux bzImage: no \"HdrS\" at offset 0x202" };
        byte[] b = BzImage(new BzOptions { HeaderLength = 0xFF });
        b = b.AsSpan(0, 0x280).ToArray();
        b[0x1F1] = 0;
        yield return new object[] { "header past file", b, "the setup header ends at 0x290, past the file (file size 0x280)" };
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void MalformedImagesAreRefusedBeforeAnyWrite(string name, byte[] image, string expected)
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, image, cmdline: "x", modules: Initrd);
        Assert.False(run.Ok, name);
        Assert.True(run.Message.Contains(expected), run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }

    [Fact]
    public void CommandLineLongerThanCmdlineSizeIsRefused()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions { CmdlineSize = 8 }), cmdline: "console=ttyS0");
        Assert.False(run.Ok);
        Assert.Equal("vm: Linux: the command line is 13 bytes, longer than the kernel's cmdline_size 8", run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }

    [Fact]
    public void InitrdThatDoesNotFitAndExtraModulesAreRefused()
    {
        LoaderRun run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions()), modules: new[] { new TestModule(new byte[0xF0_0000], "") });
        Assert.False(run.Ok);
        Assert.True(run.Message.Contains("no room for the initrd (0xF00000 bytes) in guest RAM from 1 MiB beside the kernel (ends at 0x220000)"), run.Message);
        run = LoaderRun.Load(LoaderKind.Linux, BzImage(new BzOptions()), modules: MultibootTests.TwoModules);
        Assert.Equal("vm: Linux: 2 modules given; the boot protocol takes one, the initrd", run.Message);
        Assert.Equal(0, run.Ram.Writes);
    }
}
