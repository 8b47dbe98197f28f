using System.Threading;
using Tandem.Mm;

namespace Tandem.Mm.Tests;

/// <summary>
/// A secondary MMU for the LRU tests that maps nothing but answers aging questions about a window
/// of pages: <see cref="Young"/> is its accessed bit per page (set by the test, cleared by the
/// aging calls), <see cref="HeldYoung"/> makes the exact calls always answer young for a page (a
/// secondary that keeps using it). Counts every call, so a test can tell how many fast-only calls
/// the aging walk or a look-around made. Lockless (Interlocked) like a real fast MMU.
/// </summary>
public sealed unsafe class AgingProbeNotifier : IMmuNotifier, IBitmapAgingNotifier
{
    private readonly ulong _base;
    public readonly int[] Young;
    public readonly bool[] HeldYoung;
    public int BitmapCalls, PageFastCalls, ExactCalls;
    public long EntriesExamined;

    public AgingProbeNotifier(VirtAddr windowBase, int pages)
    {
        _base = windowBase.Value;
        Young = new int[pages];
        HeldYoung = new bool[pages];
    }

    private bool InWindow(ulong va, out int i)
    {
        i = (int)((long)(va - _base) >> 12);
        return va >= _base && i < Young.Length;
    }

    private bool Age(VirtAddr start, VirtAddr end, bool clear, bool exact)
    {
        bool young = false;
        for (ulong va = start.Value; va < end.Value; va += 4096)
        {
            if (!InWindow(va, out int i))
                continue;
            Interlocked.Increment(ref EntriesExamined);
            bool y = clear ? Interlocked.Exchange(ref Young[i], 0) != 0 : Volatile.Read(ref Young[i]) != 0;
            young |= y || (exact && HeldYoung[i]);
        }
        return young;
    }

    public void InvalidateRangeStart(in MmuNotifierRange range) { }
    public void InvalidateRangeEnd(in MmuNotifierRange range) { }

    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        Interlocked.Increment(ref ExactCalls);
        return Age(start, end, true, true);
    }

    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        Interlocked.Increment(ref ExactCalls);
        return Age(start, end, true, true);
    }

    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => Age(start, end, false, true);

    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        Interlocked.Increment(ref PageFastCalls);
        return Age(start, end, clear, false);
    }

    public void TestClearYoungFastOnlyBitmap(IAddressSpace space, VirtAddr start, int pages, ulong* ask, ulong* young)
    {
        Interlocked.Increment(ref BitmapCalls);
        for (int p = 0; p < pages; p++)
        {
            if ((ask[p >> 6] & (1UL << (p & 63))) == 0)
                continue;
            VirtAddr va = start + (ulong)p * PageSizes.Size4K;
            if (Age(va, va + PageSizes.Size4K, true, false))
                young[p >> 6] |= 1UL << (p & 63);
        }
    }

    public void Release(IAddressSpace space) { }
}
