using System;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// Reads guest-physical memory for the page-table walker and the instruction fetch. The kernel's
/// implementation reads guest RAM through the VM's primary MMU (<c>IGuestMemory.Read</c>); the host
/// tests read a byte array.
/// </summary>
public interface IGuestPhysicalReader
{
    /// <summary>
    /// Copies <c>destination.Length</c> bytes from guest-physical <paramref name="gpa"/> (never more
    /// than reaches the end of its 4 KiB page). False if any of it is not guest RAM.
    /// </summary>
    bool Read(ulong gpa, Span<byte> destination);
}
