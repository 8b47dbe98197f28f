using System;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// Fetches the bytes of the guest instruction at CS:RIP through the guest's page tables, so the
/// decoder can see the instruction an EPT violation gave no operand for.
/// </summary>
public static class InstructionFetcher
{
    private const ulong PageMask = 0xFFF;

    /// <summary>
    /// Copies up to <c>destination.Length</c> bytes (at most 15 are ever needed) from guest-linear
    /// <paramref name="linear"/>, page by page, translating each page for an instruction fetch.
    /// Returns how many bytes were fetched; <paramref name="stop"/> says why it stopped short
    /// (<see cref="GuestWalkStatus.Ok"/> if it did not). An instruction that ends before the
    /// unmapped page decodes normally; one that needs bytes from it is refused as truncated.
    /// <paramref name="linearIs32Bit"/> is true outside 64-bit code: the linear address wraps at 4 GiB.
    /// </summary>
    public static int Fetch<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong linear, bool linearIs32Bit,
        Span<byte> destination, out GuestWalkStatus stop)
        where TMemory : struct, IGuestPhysicalReader
    {
        int done = 0;
        stop = GuestWalkStatus.Ok;
        while (done < destination.Length)
        {
            if (linearIs32Bit)
                linear &= 0xFFFF_FFFFUL;
            stop = GuestWalker.Translate(ref memory, paging, linear, GuestAccessKind.Fetch, out ulong gpa, out _);
            if (stop != GuestWalkStatus.Ok)
                return done;
            int chunk = (int)Math.Min((ulong)(destination.Length - done), PageMask + 1 - (linear & PageMask));
            if (!memory.Read(gpa, destination.Slice(done, chunk)))
            {
                stop = GuestWalkStatus.MemoryError;
                return done;
            }
            done += chunk;
            linear += (ulong)chunk;
        }
        return done;
    }
}
