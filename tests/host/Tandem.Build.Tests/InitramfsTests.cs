using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Iced.Intel;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>tools/Build/Initramfs.cs and DebugExitProgram.cs: what the Linux guest's initramfs holds.</summary>
public class InitramfsTests
{
    private static readonly byte[] FakeBusybox = Encoding.ASCII.GetBytes("\x7F" + "ELF fake busybox");

    internal static byte[] Gunzip(byte[] gz)
    {
        using var input = new GZipStream(new MemoryStream(gz), CompressionMode.Decompress);
        using var output = new MemoryStream();
        input.CopyTo(output);
        return output.ToArray();
    }

    private static void AssertLayout(List<NewcEntry> entries)
    {
        NewcEntry Get(string name) => entries.SingleOrDefault(e => e.Name == name) ?? throw new Xunit.Sdk.XunitException($"no {name} in the initramfs");
        foreach (string d in new[] { "bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root" })
            Assert.Equal(CpioArchive.Directory, Get(d).Mode & CpioArchive.TypeMask);
        Assert.Equal(0x3FF, Get("tmp").Mode & 0xFFF);                                       // 01777
        Assert.Equal((CpioArchive.CharDevice, 5, 1), (Get("dev/console").Mode & CpioArchive.TypeMask, Get("dev/console").RdevMajor, Get("dev/console").RdevMinor));
        Assert.Equal((CpioArchive.CharDevice, 4, 64), (Get("dev/ttyS0").Mode & CpioArchive.TypeMask, Get("dev/ttyS0").RdevMajor, Get("dev/ttyS0").RdevMinor));
        foreach (string exe in new[] { "bin/busybox", "bin/tandem-exit", "init", "selftest" })
            Assert.Equal(CpioArchive.RegularFile | 0x1ED, Get(exe).Mode);                   // 0100755
        Assert.Equal(CpioArchive.RegularFile | 0x1A4, Get("etc/profile").Mode);             // 0100644
        Assert.StartsWith("#!/bin/busybox sh\n", Encoding.UTF8.GetString(Get("init").Data));
        Assert.StartsWith("#!/bin/busybox sh\n", Encoding.UTF8.GetString(Get("selftest").Data));
        Assert.Contains("PS1=", Encoding.UTF8.GetString(Get("etc/profile").Data));
        Assert.Equal(DebugExitProgram.Build(), Get("bin/tandem-exit").Data);
    }

    [Fact]
    public void TheArchiveHoldsBusyboxTheNodesAndTheScripts()
    {
        byte[] cpio = Initramfs.Archive(FakeBusybox, Host.Script).ToArray();
        List<NewcEntry> entries = NewcReader.Read(cpio);
        AssertLayout(entries);
        Assert.Equal(FakeBusybox, entries.Single(e => e.Name == "bin/busybox").Data);
        Assert.Equal(Host.Script("init"), Encoding.UTF8.GetString(entries.Single(e => e.Name == "init").Data));
        Assert.Equal(Host.Script("selftest"), Encoding.UTF8.GetString(entries.Single(e => e.Name == "selftest").Data));
        Assert.Equal(Host.Script("profile"), Encoding.UTF8.GetString(entries.Single(e => e.Name == "etc/profile").Data));
    }

    [Fact]
    public void TheGzipIsDeterministicAndCarriesNoTimestampOrName()
    {
        byte[] first = Initramfs.Build(FakeBusybox, Host.Script);
        Thread.Sleep(1100);                                     // a timestamp would now differ
        byte[] second = Initramfs.Build(FakeBusybox, Host.Script);
        Assert.Equal(first, second);
        Assert.Equal(new byte[] { 0x1F, 0x8B, 8 }, first[..3]);     // gzip, deflate
        Assert.Equal(0, first[3] & 0x08);                          // no FNAME
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(4)));   // MTIME 0
        Assert.Equal(Initramfs.Archive(FakeBusybox, Host.Script).ToArray(), Gunzip(first));
    }

    /// <summary>The initramfs the build made: the same layout, with Debian's busybox in it.</summary>
    [FactWithLinuxGuest("linux-initrd")]
    public void TheBuiltInitrdHasTheLayout()
    {
        List<NewcEntry> entries = NewcReader.Read(Gunzip(File.ReadAllBytes(Host.LinuxModule("linux-initrd"))));
        AssertLayout(entries);
        byte[] busybox = entries.Single(e => e.Name == "bin/busybox").Data;
        Assert.True(busybox.Length > 500_000 && busybox.AsSpan(0, 4).SequenceEqual((ReadOnlySpan<byte>)[0x7F, (byte)'E', (byte)'L', (byte)'F']));
    }

    [Fact]
    public void TandemExitIsAStaticElfThatWritesItsArgumentToPort0xF4()
    {
        byte[] elf = DebugExitProgram.Build();
        Assert.Equal(elf, DebugExitProgram.Build());
        Assert.True(elf.AsSpan(0, 4).SequenceEqual((ReadOnlySpan<byte>)[0x7F, (byte)'E', (byte)'L', (byte)'F']));
        Assert.Equal((2, 1), (elf[4], elf[5]));                                                // ELF64, little-endian
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(16)));              // ET_EXEC
        Assert.Equal(62, BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(18)));             // EM_X86_64
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(24));
        Assert.Equal(DebugExitProgram.LoadAddress + DebugExitProgram.CodeOffset, entry);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(56)));              // one program header
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(elf.AsSpan(64)));             // PT_LOAD
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(64 + 8)));        // the whole file
        Assert.Equal((ulong)elf.Length, BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(64 + 32)));

        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(elf[DebugExitProgram.CodeOffset..]), entry);
        var code = new List<Instruction>();
        while (decoder.IP < entry + (ulong)(elf.Length - DebugExitProgram.CodeOffset))
            code.Add(decoder.Decode());
        Assert.DoesNotContain(code, i => i.IsInvalid);
        var formatter = new NasmFormatter();
        string Text(Instruction i)
        {
            var o = new StringOutput();
            formatter.Format(i, o);
            return o.ToStringAndReset();
        }
        string[] text = code.Select(Text).ToArray();
        // ioperm(0xF4, 1, 1): syscall 173 with edi, esi, edx set just before it.
        int ioperm = Array.IndexOf(text, "mov eax,0ADh");
        Assert.True(ioperm > 0, string.Join("\n", text));
        Assert.Equal(["mov edi,0F4h", "mov esi,1", "mov edx,1", "mov eax,0ADh", "syscall"], text[(ioperm - 3)..(ioperm + 2)]);
        // Then the status (parsed into ebx) goes out of port 0xF4, and exit(0).
        int @out = Array.IndexOf(text, "out dx,al");
        Assert.True(@out > ioperm);
        Assert.Equal(["mov eax,ebx", "mov edx,0F4h", "out dx,al", "mov eax,3Ch", "xor edi,edi", "syscall"], text[(@out - 2)..(@out + 4)]);
        // The argument: argv[1] at [rsp+16], read only when present.
        Assert.True(text.Contains("mov rsi,[rsp+10h]") && text.Contains("imul ebx,0Ah"), string.Join("\n", text));
    }
}
