using System;
using System.Collections.Generic;
using System.Text;

namespace Tandem.Kvm.Tests.Loaders;

/// <summary>A segment for <see cref="ImageBuilders.Elf"/>: PT_LOAD by default.</summary>
public sealed class ElfSeg
{
    public uint Type = 1;
    public ulong Paddr;
    public ulong Vaddr;
    public byte[] Data = Array.Empty<byte>();
    public ulong MemSize;
}

/// <summary>An ELF file built by the tests, with where each segment's bytes are.</summary>
public sealed class ElfFile
{
    public byte[] Bytes = Array.Empty<byte>();
    public ulong[] SegmentOffsets = Array.Empty<ulong>();
    public ulong PhOff;
    public int PhEntSize;
}

/// <summary>Writes small valid images byte by byte: ELF32/ELF64, multiboot headers, bzImages, notes.</summary>
public static class ImageBuilders
{
    public static void Put16(byte[] b, ulong at, ulong v) => BitConverter.TryWriteBytes(b.AsSpan((int)at), (ushort)v);
    public static void Put32(byte[] b, ulong at, ulong v) => BitConverter.TryWriteBytes(b.AsSpan((int)at), (uint)v);
    public static void Put64(byte[] b, ulong at, ulong v) => BitConverter.TryWriteBytes(b.AsSpan((int)at), v);

    /// <summary>An ELF executable: header, program headers, then each segment's bytes (8-aligned), then optional SHT_NOTE sections.</summary>
    public static ElfFile Elf(bool is64, ulong entry, IList<ElfSeg> segs, IList<byte[]>? noteSections = null, ushort machine = 0)
    {
        int ehsize = is64 ? 64 : 52, phsize = is64 ? 56 : 32, shsize = is64 ? 64 : 40;
        ulong offset = (ulong)(ehsize + phsize * segs.Count);
        var offsets = new ulong[segs.Count];
        for (int i = 0; i < segs.Count; i++)
        {
            offset = (offset + 7) & ~7UL;
            offsets[i] = offset;
            offset += (ulong)segs[i].Data.Length;
        }
        var noteOffsets = new List<ulong>();
        foreach (byte[] n in noteSections ?? Array.Empty<byte[]>())
        {
            offset = (offset + 7) & ~7UL;
            noteOffsets.Add(offset);
            offset += (ulong)n.Length;
        }
        ulong shoff = 0;
        int shnum = 0;
        if (noteSections != null)
        {
            offset = (offset + 7) & ~7UL;
            shoff = offset;
            shnum = noteSections.Count + 1;
            offset += (ulong)(shnum * shsize);
        }
        var b = new byte[offset];
        b[0] = 0x7F; b[1] = (byte)'E'; b[2] = (byte)'L'; b[3] = (byte)'F';
        b[4] = (byte)(is64 ? 2 : 1); b[5] = 1; b[6] = 1;
        Put16(b, 16, 2);
        Put16(b, 18, machine != 0 ? machine : (ushort)(is64 ? 62 : 3));
        Put32(b, 20, 1);
        if (is64)
        {
            Put64(b, 24, entry); Put64(b, 32, (ulong)ehsize); Put64(b, 40, shoff);
            Put16(b, 52, (ulong)ehsize); Put16(b, 54, (ulong)phsize); Put16(b, 56, (ulong)segs.Count);
            Put16(b, 58, (ulong)shsize); Put16(b, 60, (ulong)shnum);
        }
        else
        {
            Put32(b, 24, entry); Put32(b, 28, (ulong)ehsize); Put32(b, 32, shoff);
            Put16(b, 40, (ulong)ehsize); Put16(b, 42, (ulong)phsize); Put16(b, 44, (ulong)segs.Count);
            Put16(b, 46, (ulong)shsize); Put16(b, 48, (ulong)shnum);
        }
        for (int i = 0; i < segs.Count; i++)
        {
            ElfSeg s = segs[i];
            ulong ph = (ulong)(ehsize + phsize * i);
            ulong memsz = s.MemSize != 0 ? s.MemSize : (ulong)s.Data.Length;
            ulong vaddr = s.Vaddr != 0 ? s.Vaddr : s.Paddr;
            Put32(b, ph, s.Type);
            if (is64)
            {
                Put32(b, ph + 4, 7); Put64(b, ph + 8, offsets[i]); Put64(b, ph + 16, vaddr); Put64(b, ph + 24, s.Paddr);
                Put64(b, ph + 32, (ulong)s.Data.Length); Put64(b, ph + 40, memsz); Put64(b, ph + 48, 0x1000);
            }
            else
            {
                Put32(b, ph + 4, offsets[i]); Put32(b, ph + 8, vaddr); Put32(b, ph + 12, s.Paddr);
                Put32(b, ph + 16, (ulong)s.Data.Length); Put32(b, ph + 20, memsz); Put32(b, ph + 24, 7); Put32(b, ph + 28, 0x1000);
            }
            s.Data.CopyTo(b, (int)offsets[i]);
        }
        for (int i = 0; i < noteOffsets.Count; i++)
        {
            noteSections![i].CopyTo(b, (int)noteOffsets[i]);
            ulong sh = shoff + (ulong)((i + 1) * shsize);
            Put32(b, sh + 4, 7);   // SHT_NOTE
            if (is64) { Put64(b, sh + 24, noteOffsets[i]); Put64(b, sh + 32, (ulong)noteSections[i].Length); }
            else { Put32(b, sh + 16, noteOffsets[i]); Put32(b, sh + 20, (ulong)noteSections[i].Length); }
        }
        return new ElfFile { Bytes = b, SegmentOffsets = offsets, PhOff = (ulong)ehsize, PhEntSize = phsize };
    }

    /// <summary>A multiboot v1 header; with <paramref name="address"/> the flag-16 fields (header, load, load_end, bss_end, entry).</summary>
    public static byte[] Multiboot(uint flags, uint[]? address = null, uint? checksum = null)
    {
        if (address != null)
            flags |= 1u << 16;
        var b = new byte[address != null ? 32 : 12];
        Put32(b, 0, 0x1BADB002);
        Put32(b, 4, flags);
        Put32(b, 8, checksum ?? unchecked(0u - 0x1BADB002u - flags));
        if (address != null)
            for (int i = 0; i < 5; i++)
                Put32(b, (ulong)(12 + 4 * i), address[i]);
        return b;
    }

    /// <summary>A multiboot2 tag: type, flags, size, payload, padded to 8 bytes.</summary>
    public static byte[] Tag(ushort type, ushort flags, params uint[] payload)
    {
        int size = 8 + 4 * payload.Length;
        var b = new byte[(size + 7) & ~7];
        Put16(b, 0, type); Put16(b, 2, flags); Put32(b, 4, (ulong)size);
        for (int i = 0; i < payload.Length; i++)
            Put32(b, (ulong)(8 + 4 * i), payload[i]);
        return b;
    }

    /// <summary>A multiboot2 header with <paramref name="tags"/> and an end tag.</summary>
    public static byte[] Multiboot2(uint architecture, params byte[][] tags)
    {
        var body = new List<byte>();
        foreach (byte[] t in tags)
            body.AddRange(t);
        body.AddRange(Tag(0, 0));
        var b = new byte[16 + body.Count];
        body.CopyTo(b, 16);
        Put32(b, 0, 0xE85250D6);
        Put32(b, 4, architecture);
        Put32(b, 8, (ulong)b.Length);
        Put32(b, 12, unchecked(0u - 0xE85250D6u - architecture - (uint)b.Length));
        return b;
    }

    /// <summary>An ELF note: namesz, descsz, type, name, desc, each padded to 4.</summary>
    public static byte[] Note(string name, uint type, byte[] desc)
    {
        byte[] n = Encoding.ASCII.GetBytes(name + "\0");
        int nPad = (n.Length + 3) & ~3, dPad = (desc.Length + 3) & ~3;
        var b = new byte[12 + nPad + dPad];
        Put32(b, 0, (ulong)n.Length); Put32(b, 4, (ulong)desc.Length); Put32(b, 8, type);
        n.CopyTo(b, 12);
        desc.CopyTo(b, 12 + nPad);
        return b;
    }

    public static byte[] Concat(params byte[][] parts)
    {
        var list = new List<byte>();
        foreach (byte[] p in parts)
            list.AddRange(p);
        return list.ToArray();
    }

    /// <summary>Bytes 0, 1, 2, ... (mod 251) so that copies are checked byte for byte.</summary>
    public static byte[] Pattern(int length, int seed = 0)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++)
            b[i] = (byte)((i + seed) % 251 + 1);
        return b;
    }

    /// <summary>Setup header fields of a bzImage built by <see cref="BzImage"/>.</summary>
    public sealed class BzOptions
    {
        public byte SetupSects = 1;
        public ushort Version = 0x20F;
        public byte LoadFlags = 1;
        public ushort XLoadFlags = 1;
        public byte Relocatable = 1;
        public uint KernelAlignment = 0x20_0000;
        public ulong PrefAddress = 0x100_0000;
        public uint InitSize = 0x2_0000;
        public uint CmdlineSize = 0x7FF;
        public uint InitrdAddrMax = 0x7FFF_FFFF;
        public ushort BootFlag = 0xAA55;
        public byte HeaderLength = 0x66;    // the setup header ends at 0x202 + this (0x268)
        public int KernelBytes = 0x1000;
    }

    /// <summary>A bzImage: (setup_sects + 1) sectors of setup with the header at 0x1F1, then the protected-mode kernel (a pattern).</summary>
    public static byte[] BzImage(BzOptions o)
    {
        int setup = ((o.SetupSects == 0 ? 4 : o.SetupSects) + 1) * 512;
        var b = new byte[setup + o.KernelBytes];
        Pattern(o.KernelBytes, 7).CopyTo(b, setup);
        for (int i = 0x1F1; i < 0x268; i++)
            b[i] = 0xEE;   // fields the loader must copy, not invent
        b[0x1F1] = o.SetupSects;
        Put16(b, 0x1FE, o.BootFlag);
        b[0x200] = 0xEB; b[0x201] = o.HeaderLength;
        Put32(b, 0x202, 0x53726448);
        Put16(b, 0x206, o.Version);
        b[0x210] = 0;
        b[0x211] = o.LoadFlags;
        Put32(b, 0x214, 0x100000);
        Put32(b, 0x218, 0); Put32(b, 0x21C, 0); Put32(b, 0x228, 0);
        Put32(b, 0x22C, o.InitrdAddrMax);
        Put32(b, 0x230, o.KernelAlignment);
        b[0x234] = o.Relocatable;
        Put16(b, 0x236, o.XLoadFlags);
        Put32(b, 0x238, o.CmdlineSize);
        Put32(b, 0x23C, 0); Put64(b, 0x240, 0);
        Put64(b, 0x250, 0);
        Put64(b, 0x258, o.PrefAddress);
        Put32(b, 0x260, o.InitSize);
        return b;
    }
}
