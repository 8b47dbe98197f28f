using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The per-address-space state of the generational LRU: its statistics and its dense-table filter
/// (compare MGLRU's per-mm Bloom filters). Lockless: bits are set with <c>Interlocked.Or</c>.
/// </summary>
/// <remarks>
/// The filter remembers which last-level tables (2 MiB spans) were dense with young pages, found
/// either by the aging walk (for the next walk) or by eviction's look-around (for the coming
/// walk). The aging walk for generation <c>S</c> reads filter <c>S &amp; 1</c> and walks only the
/// spans marked there; it first clears filter <c>(S + 1) &amp; 1</c> and marks into it the spans it
/// finds dense. A walk whose filter was never prepared (the first walk of a space) walks
/// everything. One hash, 4096 bits: a false positive only makes the walk look at a table it could
/// have skipped; a skipped table's young pages are caught by eviction's exact check and its
/// look-around, which marks the table again.
/// </remarks>
public sealed class SpaceLru
{
    private const int FilterWords = 64;
    private readonly ulong[] _filter0 = new ulong[FilterWords];
    private readonly ulong[] _filter1 = new ulong[FilterWords];
    private int _prepared0 = -1;
    private int _prepared1 = -1;

    /// <summary>This address space's counters.</summary>
    public readonly LruStats Stats = new LruStats();

    private ulong[] Filter(int seq) { return (seq & 1) == 0 ? _filter0 : _filter1; }

    private static int Bit(VirtAddr span)
    {
        ulong key = (span.Value >> 21) * 0x9E3779B97F4A7C15UL;
        return (int)(key >> 52);
    }

    /// <summary>True when the walk for <paramref name="seq"/> may trust its filter.</summary>
    internal bool FilterReady(int seq)
    {
        return Volatile.Read(ref (seq & 1) == 0 ? ref _prepared0 : ref _prepared1) == seq;
    }

    /// <summary>Start of the walk for <paramref name="seq"/>: empties the filter of <c>seq + 1</c>.</summary>
    internal void PrepareNext(int seq)
    {
        int next = seq + 1;
        ulong[] f = Filter(next);
        for (int i = 0; i < FilterWords; i++)
            Volatile.Write(ref f[i], 0UL);
        // Release: the cleared words before the mark that says the filter belongs to `next`.
        Volatile.Write(ref (next & 1) == 0 ? ref _prepared0 : ref _prepared1, next);
    }

    /// <summary>Marks the span at <paramref name="span"/> (2 MiB aligned) dense for the walk of <paramref name="seq"/>.</summary>
    internal void Mark(int seq, VirtAddr span)
    {
        int bit = Bit(span);
        // Atomic: look-around and the walk may mark at the same time.
        Interlocked.Or(ref Filter(seq)[bit >> 6], 1UL << (bit & 63));
    }

    /// <summary>True when the span is marked for the walk of <paramref name="seq"/>.</summary>
    internal bool Test(int seq, VirtAddr span)
    {
        int bit = Bit(span);
        return (Volatile.Read(ref Filter(seq)[bit >> 6]) & (1UL << (bit & 63))) != 0;
    }
}
