using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace Tandem.Kernel.Tests;

/// <summary>Builds multiboot2 boot information the way a loader lays it out (spec 3.6): header, 8-aligned tags, end tag.</summary>
public static class Multiboot2Builder
{
    public static byte[] Info(params byte[][] tags)
    {
        var b = new List<byte>(new byte[8]);
        foreach (byte[] t in tags)
        {
            b.AddRange(t);
            while (b.Count % 8 != 0)
                b.Add(0);
        }
        b.AddRange(Tag(0, Array.Empty<byte>()));
        byte[] r = b.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)r.Length);
        return r;
    }

    public static byte[] Tag(uint type, byte[] payload)
    {
        var t = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(t, type);
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(4), (uint)t.Length);
        payload.CopyTo(t, 8);
        return t;
    }

    public static byte[] String(uint type, string s) => Tag(type, Encoding.ASCII.GetBytes(s + "\0"));

    public static byte[] Module(uint start, uint end, string name)
    {
        byte[] n = Encoding.ASCII.GetBytes(name + "\0");
        var p = new byte[8 + n.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(p, start);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), end);
        n.CopyTo(p, 8);
        return Tag(3, p);
    }

    public static byte[] MemoryMap(params (ulong Base, ulong Length, uint Type)[] entries)
    {
        var p = new byte[8 + 24 * entries.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 24);
        for (int i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8 + 24 * i), entries[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16 + 24 * i), entries[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(24 + 24 * i), entries[i].Type);
        }
        return Tag(6, p);
    }

    /// <summary>An ACPI tag (14: RSDP 1.0, 20 bytes; 15: 2.0, 36 bytes) holding a valid RSDP.</summary>
    public static byte[] Acpi(bool v2, uint rsdt = 0x7FE_0100, ulong xsdt = 0x7FE_0200) => Tag(v2 ? 15u : 14u, AcpiBuilder.Rsdp(v2, rsdt, xsdt));

    /// <summary>QEMU's map with 512 MiB (as its BIOS reports it).</summary>
    public static readonly (ulong, ulong, uint)[] QemuMap =
    {
        (0, 0x9_FC00, 1), (0x9_FC00, 0x400, 2), (0xF_0000, 0x1_0000, 2), (0x10_0000, 0x1FEE_0000, 1),
        (0x1FFE_0000, 0x2_0000, 2), (0xFEFF_C000, 0x4000, 2), (0xFFFC_0000, 0x4_0000, 2),
    };

    /// <summary>Valid boot information of several shapes: the fuzz test's seeds.</summary>
    public static byte[][] Seeds() => new[]
    {
        Info(String(1, "test=mem vm=linux,mem=256M"), String(2, "GRUB 2.12"), Module(0x20_0000, 0x30_0000, "linux"),
            Module(0x30_0000, 0x30_1000, "symbols"), MemoryMap(QemuMap), Acpi(false)),
        Info(MemoryMap((0, 0xA_0000, 1), (0x10_0000, 0x7FF0_0000, 1), (0x1_0000_0000, 0x1_0000_0000, 1), (0xE000_0000, 0x1000_0000, 2)),
            String(1, ""), Acpi(true)),
        Info(String(1, "vm=a vm=b"), MemoryMap((0x10_0000, 0x100_0000, 1), (0x80_0000, 0x100_0000, 1), (0x40_0000, 0x1000, 2), (0x200_0000, 0, 1)),
            Acpi(false), Acpi(true)),
        Info(MemoryMap((0x1000, 0x2345, 1), (0xFFFF_FFFF_FFFF_F000, 0x2000, 1), (0x10_0800, 0x10_0000, 1))),
    };
}
