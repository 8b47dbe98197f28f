using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Tandem.Testing;

/// <summary>
/// Page-aligned native buffers for the host machines' "physical memory", kept for reuse: the
/// interleaving explorer builds a fresh machine for every schedule, and mapping and faulting in a
/// new buffer each time costs more than the schedule. A rented buffer is zeroed.
/// </summary>
public static unsafe class NativeBufferPool
{
    private static readonly ConcurrentDictionary<ulong, ConcurrentBag<nint>> s_free = new ConcurrentDictionary<ulong, ConcurrentBag<nint>>();

    public static byte* Rent(ulong size)
    {
        ConcurrentBag<nint> bag = s_free.GetOrAdd(size, _ => new ConcurrentBag<nint>());
        byte* p = bag.TryTake(out nint kept) ? (byte*)kept : (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(p, (nuint)size);
        return p;
    }

    /// <summary>Gives a buffer back (at most a few of each size are kept; big ones are freed).</summary>
    public static void Return(byte* buffer, ulong size)
    {
        ConcurrentBag<nint> bag = s_free.GetOrAdd(size, _ => new ConcurrentBag<nint>());
        if (size <= (4UL << 20) && bag.Count < 8)
            bag.Add((nint)buffer);
        else
            NativeMemory.AlignedFree(buffer);
    }
}
