using System;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel.Tests;

/// <summary>Physical memory for the ACPI parser: <see cref="AcpiBuilder.Size"/> bytes at <see cref="AcpiBuilder.Base"/>, nothing else readable.</summary>
public struct FakeMemory : IPhysicalReader
{
    public byte[] Bytes;
    public int Reads;
    public long BytesRead;

    public FakeMemory(byte[] bytes) { Bytes = bytes; Reads = 0; }

    public ReadOnlySpan<byte> Read(ulong address, int length)
    {
        Reads++;
        if (length < 0 || address < AcpiBuilder.Base || address - AcpiBuilder.Base > (ulong)Bytes.Length
            || (ulong)length > (ulong)Bytes.Length - (address - AcpiBuilder.Base))
            return ReadOnlySpan<byte>.Empty;
        BytesRead += length;
        return Bytes.AsSpan((int)(address - AcpiBuilder.Base), length);
    }
}
