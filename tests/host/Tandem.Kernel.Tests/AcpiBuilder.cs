using System;
using System.Buffers.Binary;
using System.Text;

namespace Tandem.Kernel.Tests;

/// <summary>ACPI tables in a small fake physical memory (ACPI 6.5, 5.2).</summary>
public static class AcpiBuilder
{
    /// <summary>Where the fake memory lies, and its size.</summary>
    public const ulong Base = 0x7FE_0000;
    public const int Size = 0x4000;
    public const int RsdtAt = 0x100, XsdtAt = 0x200, FacpAt = 0x300, MadtAt = 0x1000;

    public static byte[] Rsdp(bool v2, uint rsdt, ulong xsdt)
    {
        var r = new byte[v2 ? 36 : 20];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(r, 0);
        Encoding.ASCII.GetBytes("TANDEM").CopyTo(r, 9);
        r[15] = (byte)(v2 ? 2 : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(16), rsdt);
        if (v2)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(20), 36);
            BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(24), xsdt);
        }
        FixRsdp(r);
        return r;
    }

    public static void FixRsdp(byte[] r)
    {
        if (r.Length < 20)
            return;
        r[8] = 0;
        r[8] = (byte)-Sum(r.AsSpan(0, 20));
        if (r.Length >= 36)
        {
            r[32] = 0;
            r[32] = (byte)-Sum(r.AsSpan(0, 36));
        }
    }

    public static byte Sum(ReadOnlySpan<byte> b)
    {
        byte s = 0;
        foreach (byte x in b)
            s += x;
        return s;
    }

    /// <summary>Writes a table header (signature, length) at <paramref name="at"/>; <see cref="FixTable"/> sets the checksum.</summary>
    public static void Header(byte[] m, int at, string signature, int length)
    {
        Encoding.ASCII.GetBytes(signature).CopyTo(m, at);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(at + 4), (uint)length);
        m[at + 8] = 1;
        Encoding.ASCII.GetBytes("TANDEM").CopyTo(m, at + 10);
    }

    /// <summary>Recomputes the checksum of the table at <paramref name="at"/> if its length still fits.</summary>
    public static void FixTable(byte[] m, int at)
    {
        if (at + 36 > m.Length)
            return;
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(at + 4));
        if (length < 10 || at + length > m.Length)
            return;
        m[at + 9] = 0;
        m[at + 9] = (byte)-Sum(m.AsSpan(at, (int)length));
    }

    /// <summary>A processor entry: type 0 (local APIC, 8 bytes) or type 9 (local x2APIC, 16 bytes).</summary>
    public record struct Cpu(bool X2, uint Id, uint Flags);

    /// <summary>
    /// A fake memory holding an RSDT and an XSDT (each listing a FACP, then the MADT), a FACP, and
    /// a MADT with the given processors plus an I/O APIC entry and an interrupt override.
    /// </summary>
    public static byte[] Memory(Cpu[] cpus)
    {
        var m = new byte[Size];
        Header(m, RsdtAt, "RSDT", 36 + 8);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(RsdtAt + 36), (uint)(Base + FacpAt));
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(RsdtAt + 40), (uint)(Base + MadtAt));
        Header(m, XsdtAt, "XSDT", 36 + 16);
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(XsdtAt + 36), Base + FacpAt);
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(XsdtAt + 44), Base + MadtAt);
        Header(m, FacpAt, "FACP", 116);
        int at = MadtAt + 44;
        m[at] = 1; m[at + 1] = 12; m[at + 2] = 0;                            // I/O APIC
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(at + 4), 0xFEC0_0000);
        at += 12;
        m[at] = 2; m[at + 1] = 10; m[at + 3] = 0; m[at + 4] = 2;               // ISA IRQ 0 → GSI 2
        at += 10;
        foreach (Cpu c in cpus)
        {
            if (at + 16 > m.Length)
                break;
            if (c.X2)
            {
                m[at] = 9; m[at + 1] = 16;
                BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(at + 4), c.Id);
                BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(at + 8), c.Flags);
                at += 16;
            }
            else
            {
                m[at] = 0; m[at + 1] = 8; m[at + 2] = (byte)c.Id; m[at + 3] = (byte)c.Id;
                BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(at + 4), c.Flags);
                at += 8;
            }
        }
        Header(m, MadtAt, "APIC", at - MadtAt);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(MadtAt + 36), 0xFEE0_0000);
        FixAll(m);
        return m;
    }

    public static void FixAll(byte[] m)
    {
        foreach (int at in new[] { RsdtAt, XsdtAt, FacpAt, MadtAt })
            FixTable(m, at);
    }
}
