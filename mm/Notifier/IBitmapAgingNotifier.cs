namespace Tandem.Mm;

/// <summary>
/// Optional for a notifier registered with <see cref="MmuNotifierFlags.LocklessAging"/>: fast-only
/// aging of a whole span in one call with a per-page answer (compare the bitmap of MGLRU's
/// look-around notifier, Yu Zhao's v2). The aging walk and look-around make one such call per
/// last-level table instead of one call per page.
/// </summary>
public unsafe interface IBitmapAgingNotifier
{
    /// <summary>
    /// For each page <c>i</c> of <c>[start, start + pages * 4 KiB)</c> whose bit is set in
    /// <paramref name="ask"/> (bit <c>i % 64</c> of word <c>i / 64</c>): tests, and clears, the
    /// accessed bit of the secondary entries of that page, and sets bit <c>i</c> in
    /// <paramref name="young"/> if any was set (never clears a bit there). The same rules as
    /// <see cref="IMmuNotifier.TestClearYoungFastOnly"/>: no lock taken, tried or waited on; a
    /// failed compare-exchange counts as young.
    /// </summary>
    void TestClearYoungFastOnlyBitmap(IAddressSpace space, VirtAddr start, int pages, ulong* ask, ulong* young);
}
