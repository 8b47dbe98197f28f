using System;
using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Tests.Loaders;

/// <summary>
/// Guest RAM for the loader tests: a byte array of the VM's RAM size (below 3 GiB, so linear).
/// Every write is checked: inside the array and never into the legacy hole (0xA0000-0xFFFFF). A
/// bad write is recorded in <see cref="Violation"/> and refused; the tests assert there is none.
/// </summary>
public sealed unsafe class TestRam
{
    public readonly byte[] Bytes;
    public string? Violation;
    public int Writes;

    public TestRam(ulong size) { Bytes = new byte[size]; }

    public ulong Size => (ulong)Bytes.LongLength;

    private bool Check(ulong gpa, ulong length)
    {
        if (gpa > Size || length > Size - gpa)
        {
            Violation ??= $"write outside guest RAM: gpa 0x{gpa:X}, length 0x{length:X}, RAM 0x{Size:X}";
            return false;
        }
        if (length != 0 && gpa < GuestMemoryMap.LegacyHoleEnd && gpa + length > GuestMemoryMap.LegacyHoleStart)
        {
            Violation ??= $"write into the legacy hole: gpa 0x{gpa:X}, length 0x{length:X}";
            return false;
        }
        Writes++;
        return true;
    }

    public bool Write(ulong gpa, byte* source, ulong length)
    {
        if (!Check(gpa, length))
            return false;
        new ReadOnlySpan<byte>(source, checked((int)length)).CopyTo(Bytes.AsSpan(checked((int)gpa)));
        return true;
    }

    public bool Zero(ulong gpa, ulong length)
    {
        if (!Check(gpa, length))
            return false;
        Bytes.AsSpan(checked((int)gpa), checked((int)length)).Clear();
        return true;
    }

    public void Reset() { Violation = null; Writes = 0; }

    public uint U32(ulong gpa) => BitConverter.ToUInt32(Bytes, checked((int)gpa));
    public ulong U64(ulong gpa) => BitConverter.ToUInt64(Bytes, checked((int)gpa));
    public ushort U16(ulong gpa) => BitConverter.ToUInt16(Bytes, checked((int)gpa));
    public byte U8(ulong gpa) => Bytes[checked((int)gpa)];

    /// <summary>The NUL-terminated string at <paramref name="gpa"/> (ASCII).</summary>
    public string CString(ulong gpa)
    {
        int start = checked((int)gpa);
        int end = Array.IndexOf(Bytes, (byte)0, start);
        if (end < 0)
            throw new InvalidOperationException($"no NUL after 0x{gpa:X}");
        return System.Text.Encoding.ASCII.GetString(Bytes, start, end - start);
    }

    public byte[] Slice(ulong gpa, int length) => Bytes.AsSpan(checked((int)gpa), length).ToArray();
}

/// <summary>The struct the loaders are instantiated with (they take a struct platform, as the kernel's adapter is one).</summary>
public readonly unsafe struct TestRamRef : IGuestRam
{
    private readonly TestRam _ram;
    public TestRamRef(TestRam ram) { _ram = ram; }
    public bool Write(ulong gpa, byte* source, ulong length) => _ram.Write(gpa, source, length);
    public bool Zero(ulong gpa, ulong length) => _ram.Zero(gpa, length);
}
