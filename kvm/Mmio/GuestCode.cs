using System;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// The guest's instruction bytes around RIP for a crash report (kvm/Vmx/StopDump.cs): the bytes
/// before RIP as well as after it, each side read as far as it translates, so a RIP at the start
/// of a page whose predecessor is unmapped still shows its own bytes.
/// </summary>
public static class GuestCode
{
    /// <summary>
    /// Fills <paramref name="destination"/> so that index <paramref name="before"/> holds the byte at
    /// guest-linear <paramref name="rip"/>: returns the first index filled, and sets
    /// <paramref name="end"/> to the index after the last (equal to <paramref name="before"/> when
    /// RIP itself could not be read; <paramref name="stop"/> then says why).
    /// </summary>
    public static int Fetch<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong rip, bool linearIs32Bit,
        Span<byte> destination, int before, out int end, out GuestWalkStatus stop)
        where TMemory : struct, IGuestPhysicalReader
    {
        end = before + InstructionFetcher.Fetch(ref memory, paging, rip, linearIs32Bit, destination.Slice(before), out stop);
        if (end == before)
            return before;
        // The bytes before RIP: all of them, else those on RIP's own page (the fetch stops at the
        // first page that does not translate, so a shorter answer is no use: it does not end at RIP).
        if (InstructionFetcher.Fetch(ref memory, paging, rip - (ulong)before, linearIs32Bit, destination.Slice(0, before), out _) == before)
            return 0;
        int onPage = (int)Math.Min((ulong)before, rip & 0xFFF);
        if (onPage > 0 && InstructionFetcher.Fetch(ref memory, paging, rip - (ulong)onPage, linearIs32Bit, destination.Slice(before - onPage, onPage), out _) == onPage)
            return before - onPage;
        return before;
    }
}
