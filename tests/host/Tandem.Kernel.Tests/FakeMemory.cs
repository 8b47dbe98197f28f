using System;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel.Tests;

/// <summary>Physical memory for the ACPI parser: <see cref="AcpiBuilder.Size"/> bytes at <see cref="AcpiBuilder.Base"/>, nothing else readable.</summary>
public struct FakeMemory : IPhysicalReader
{
    public byte[] Bytes;
    public int Reads;
    public long BytesRead;
    /// <summary>Bytes the parser may read before the test stops it (0: no limit): a runaway loop fails fast instead of hanging.</summary>
    public long Budget;

    public FakeMemory(byte[] bytes, long budget = 0) { Bytes = bytes; Reads = 0; BytesRead = 0; Budget = budget; }

    public ReadOnlySpan<byte> Read(ulong address, int length)
    {
        Reads++;
        if (length < 0 || address < AcpiBuilder.Base || address - AcpiBuilder.Base > (ulong)Bytes.Length
            || (ulong)length > (ulong)Bytes.Length - (address - AcpiBuilder.Base))
            return ReadOnlySpan<byte>.Empty;
        BytesRead += length;
        if (Budget > 0 && BytesRead > Budget)
            throw new InvalidOperationException($"the parser read {BytesRead} bytes, more than its budget of {Budget}");
        return Bytes.AsSpan((int)(address - AcpiBuilder.Base), length);
    }
}
