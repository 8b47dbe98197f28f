using System;
using System.Collections.Generic;
using Tandem.Kvm.Mmio;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>Sparse guest-physical RAM: 4 KiB pages that exist only once written or mapped.</summary>
internal sealed class GuestRam
{
    private readonly Dictionary<ulong, byte[]> _pages = new();

    public byte[] Page(ulong gpa)
    {
        ulong frame = gpa & ~0xFFFUL;
        if (!_pages.TryGetValue(frame, out byte[]? page))
        {
            page = new byte[4096];
            _pages[frame] = page;
        }
        return page;
    }

    public void Write(ulong gpa, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
            Page(gpa + (ulong)i)[(gpa + (ulong)i) & 0xFFF] = data[i];
    }

    public void Write64(ulong gpa, ulong value) => Write(gpa, BitConverter.GetBytes(value));

    public void Write32(ulong gpa, ulong value) => Write(gpa, BitConverter.GetBytes((uint)value));

    public bool Read(ulong gpa, Span<byte> destination)
    {
        if ((gpa & 0xFFF) + (ulong)destination.Length > 4096)
            throw new InvalidOperationException("a read crosses a page: the walker must split it");
        if (!_pages.TryGetValue(gpa & ~0xFFFUL, out byte[]? page))
            return false;
        new ReadOnlySpan<byte>(page, (int)(gpa & 0xFFF), destination.Length).CopyTo(destination);
        return true;
    }
}

/// <summary>The walker's view of <see cref="GuestRam"/>.</summary>
internal struct RamReader : IGuestPhysicalReader
{
    public GuestRam Ram;

    public RamReader(GuestRam ram) { Ram = ram; }

    public bool Read(ulong gpa, Span<byte> destination) => Ram.Read(gpa, destination);
}

/// <summary>What the fake bus saw, and the values its device registers hold.</summary>
internal sealed class BusRecord
{
    public readonly List<(bool Write, ulong Gpa, int Size, ulong Value)> Accesses = new();
    public readonly Dictionary<ulong, ulong> Registers = new();
    public ulong? Hole; // a gpa page nothing answers at

    public ulong ValueAt(ulong gpa, int size)
    {
        ulong value = Registers.TryGetValue(gpa, out ulong v) ? v : 0xA5A5_A5A5_A5A5_A5A5UL ^ gpa;
        return size == 8 ? value : value & ((1UL << (8 * size)) - 1);
    }
}

/// <summary>An MMIO bus that records every access and answers from <see cref="BusRecord.Registers"/>.</summary>
internal struct FakeBus : IMmioBus
{
    public BusRecord Record;

    public FakeBus(BusRecord record) { Record = record; }

    public bool Read(ulong gpa, int size, out ulong value)
    {
        value = 0;
        if (Record.Hole == (gpa & ~0xFFFUL))
            return false;
        value = Record.ValueAt(gpa, size);
        Record.Accesses.Add((false, gpa, size, value));
        return true;
    }

    public bool Write(ulong gpa, int size, ulong value)
    {
        if (Record.Hole == (gpa & ~0xFFFUL))
            return false;
        Record.Accesses.Add((true, gpa, size, value));
        Record.Registers[gpa] = value;
        return true;
    }
}
