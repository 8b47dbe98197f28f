using System;
using System.Collections.Generic;
using System.Text;
using Tandem.Kvm.Boot;
using Xunit;

namespace Tandem.Kvm.Tests.Acpi;

/// <summary>The first MiB of a guest as a byte array indexed by guest-physical address; the tables go into its BIOS area.</summary>
public sealed unsafe class LowRam
{
    public readonly byte[] Bytes = new byte[0x10_0000];
    public ulong LowestWrite = ulong.MaxValue;
    public ulong HighestWriteEnd;
    public int Writes;

    public bool Write(ulong gpa, byte* source, ulong length)
    {
        if (gpa > (ulong)Bytes.Length || length > (ulong)Bytes.Length - gpa)
            return false;
        new ReadOnlySpan<byte>(source, (int)length).CopyTo(Bytes.AsSpan((int)gpa));
        LowestWrite = Math.Min(LowestWrite, gpa);
        HighestWriteEnd = Math.Max(HighestWriteEnd, gpa + length);
        Writes++;
        return true;
    }
}

public readonly unsafe struct LowRamRef : IGuestRam
{
    private readonly LowRam _ram;
    public LowRamRef(LowRam ram) { _ram = ram; }
    public bool Write(ulong gpa, byte* source, ulong length) => _ram.Write(gpa, source, length);
    public bool Zero(ulong gpa, ulong length) => throw new InvalidOperationException("the tables never zero RAM");
}

/// <summary>
/// A small independent reader of the tables as a guest sees them: it checks each table's
/// signature, length and checksum as it is reached (RSDP → XSDT/RSDT → FADT/MADT → DSDT/FACS).
/// </summary>
public sealed class AcpiReader
{
    private readonly byte[] _m;

    public AcpiReader(byte[] memory) { _m = memory; }

    public byte U8(ulong a) => _m[a];
    public ushort U16(ulong a) => BitConverter.ToUInt16(_m, (int)a);
    public uint U32(ulong a) => BitConverter.ToUInt32(_m, (int)a);
    public ulong U64(ulong a) => BitConverter.ToUInt64(_m, (int)a);
    public string Ascii(ulong a, int n) => Encoding.ASCII.GetString(_m, (int)a, n);
    public byte[] Slice(ulong a, int n) => _m.AsSpan((int)a, n).ToArray();

    public static int Sum(byte[] m, ulong a, int n)
    {
        int s = 0;
        for (int i = 0; i < n; i++)
            s += m[(int)a + i];
        return s & 0xFF;
    }

    /// <summary>The legacy scan: 16-byte steps over [start, end) for "RSD PTR " with a valid 20-byte checksum.</summary>
    public ulong ScanForRsdp(ulong start, ulong end)
    {
        for (ulong a = start; a + 20 <= end; a += 16)
        {
            if (Ascii(a, 8) == "RSD PTR " && Sum(_m, a, 20) == 0)
                return a;
        }
        return 0;
    }

    /// <summary>Checks the RSDP at <paramref name="a"/> (both checksums, revision 2, length 36) and returns it.</summary>
    public (ulong Rsdt, ulong Xsdt) Rsdp(ulong a)
    {
        Assert.Equal("RSD PTR ", Ascii(a, 8));
        Assert.Equal(0, Sum(_m, a, 20));
        Assert.Equal(2, U8(a + 15));
        Assert.Equal(36u, U32(a + 20));
        Assert.Equal(0, Sum(_m, a, 36));
        Assert.Equal("TANDEM", Ascii(a + 9, 6));
        Assert.Equal(0, U8(a + 33) | U8(a + 34) | U8(a + 35));
        return (U32(a + 16), U64(a + 24));
    }

    /// <summary>Checks a table's header at <paramref name="a"/> (signature, checksum over its length, OEM fields) and returns its length.</summary>
    public int Table(ulong a, string signature)
    {
        Assert.Equal(signature, Ascii(a, 4));
        int length = (int)U32(a + 4);
        Assert.True(length >= 36, $"{signature} length {length}");
        Assert.Equal(0, Sum(_m, a, length));
        Assert.Equal("TANDEM", Ascii(a + 10, 6));
        Assert.Equal("TANDEM  ", Ascii(a + 16, 8));
        Assert.Equal(1u, U32(a + 24));
        Assert.Equal("TNDM", Ascii(a + 28, 4));
        return length;
    }

    /// <summary>The XSDT's (8-byte) or RSDT's (4-byte) entries, each checked to be a table; returned by signature.</summary>
    public Dictionary<string, ulong> Root(ulong a, string signature, int entrySize)
    {
        int length = Table(a, signature);
        Assert.Equal(0, (length - 36) % entrySize);
        Dictionary<string, ulong> tables = new();
        for (ulong p = a + 36; p < a + (ulong)length; p += (ulong)entrySize)
        {
            ulong t = entrySize == 8 ? U64(p) : U32(p);
            string sig = Ascii(t, 4);
            Table(t, sig);
            tables.Add(sig, t);
        }
        return tables;
    }

    /// <summary>One MADT entry: its type, length and address.</summary>
    public readonly record struct MadtEntry(byte Type, byte Length, ulong Address);

    /// <summary>The MADT's entries; every one must end inside the table.</summary>
    public List<MadtEntry> MadtEntries(ulong madt)
    {
        int length = Table(madt, "APIC");
        List<MadtEntry> entries = new();
        ulong p = madt + 44;
        while (p < madt + (ulong)length)
        {
            byte len = U8(p + 1);
            Assert.True(len >= 2 && p + len <= madt + (ulong)length, $"MADT entry at 0x{p:X} length {len}");
            entries.Add(new MadtEntry(U8(p), len, p));
            p += len;
        }
        Assert.Equal(madt + (ulong)length, p);
        return entries;
    }
}

/// <summary>
/// Just enough of an AML reader to find <c>Name (_S5_, Package () {...})</c> in a DSDT and return
/// its integers, written from the ACPI spec (20.2), independent of Tandem's encoder.
/// </summary>
public static class AmlReader
{
    /// <summary>Decodes a PkgLength at <paramref name="p"/>: (value including its own bytes, bytes it took).</summary>
    public static (int Value, int Size) PkgLength(byte[] b, int p)
    {
        byte lead = b[p];
        int follow = lead >> 6;
        if (follow == 0)
            return (lead & 0x3F, 1);
        Assert.Equal(0, lead & 0x30); // bits 5:4 reserved in the multi-byte form
        int value = lead & 0x0F;
        for (int i = 0; i < follow; i++)
            value |= b[p + 1 + i] << (4 + 8 * i);
        return (value, 1 + follow);
    }

    /// <summary>One integer term: (value, bytes).</summary>
    public static (ulong Value, int Size) Integer(byte[] b, int p) => b[p] switch
    {
        0x00 => (0, 1),
        0x01 => (1, 1),
        0xFF => (ulong.MaxValue, 1),
        0x0A => (b[p + 1], 2),
        0x0B => (BitConverter.ToUInt16(b, p + 1), 3),
        0x0C => (BitConverter.ToUInt32(b, p + 1), 5),
        0x0E => (BitConverter.ToUInt64(b, p + 1), 9),
        _ => throw new InvalidOperationException($"not an integer term: 0x{b[p]:X2} at {p}"),
    };

    /// <summary>The elements of the package named <paramref name="name"/> at the DSDT's top level (whose AML starts at 36).</summary>
    public static ulong[] NamedPackage(byte[] table, string name)
    {
        int length = BitConverter.ToInt32(table, 4);
        int p = 36;
        while (p < length)
        {
            Assert.Equal(0x08, table[p]); // NameOp: the only term this DSDT holds
            string seg = Encoding.ASCII.GetString(table, p + 1, 4);
            p += 5;
            Assert.Equal(0x12, table[p]); // PackageOp
            int pkgStart = p + 1;
            (int pkgLength, int size) = PkgLength(table, pkgStart);
            int end = pkgStart + pkgLength;
            Assert.True(end <= length, "package runs past the table");
            int count = table[pkgStart + size];
            ulong[] values = new ulong[count];
            int q = pkgStart + size + 1;
            for (int i = 0; i < count; i++)
            {
                (values[i], int n) = Integer(table, q);
                q += n;
            }
            Assert.Equal(end, q); // the PkgLength covers exactly the elements
            if (seg == name)
                return values;
            p = end;
        }
        throw new InvalidOperationException($"no {name} in the DSDT");
    }
}
