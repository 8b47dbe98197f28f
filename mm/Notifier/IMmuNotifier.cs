namespace Tandem.Mm;

/// <summary>
/// The one interface every secondary MMU (EPT shadow, mirror, inspector) implements to follow an
/// address space's primary page tables. Registered per address space with
/// <c>MmuNotifierList.Register</c>; the address space finds its notifiers in O(1).
/// </summary>
/// <remarks>
/// Calling context common to all callbacks: no primary lock (page-table lock, region lock, rmap
/// lock) is held, so a callback may take its own MMU lock. Callbacks of one address space may run
/// concurrently on several CPUs. A callback never faults pages in.
/// The teardown order (invariant 1): the primary entry is cleared and the primary TLB flushed
/// before <see cref="InvalidateRangeStart"/>; the frame reference is dropped only after
/// <see cref="InvalidateRangeEnd"/>.
/// </remarks>
public interface IMmuNotifier
{
    /// <summary>
    /// Called when the primary mappings of <c>range</c> have been (or are being) torn down or
    /// reduced. The notifier must raise its in-progress count
    /// (<see cref="InvalidationSequence.BeginUnderLock"/>) and zap every secondary entry of the
    /// range before returning; dirty bits found while zapping go to
    /// <see cref="IAddressSpace.MarkFrameDirty"/>. May block only if <c>range.MayBlock</c>.
    /// </summary>
    void InvalidateRangeStart(in MmuNotifierRange range);

    /// <summary>
    /// Pairs with <see cref="InvalidateRangeStart"/> (same range, same notifier snapshot). The
    /// notifier bumps its sequence and lowers its in-progress count
    /// (<see cref="InvalidationSequence.EndUnderLock"/>). Faults blocked by the range may proceed.
    /// </summary>
    void InvalidateRangeEnd(in MmuNotifierRange range);

    /// <summary>
    /// Exact aging (eviction): tests and clears the accessed bits of secondary entries in
    /// <c>[start, end)</c> and flushes the secondary TLB for those cleared. May take locks. Returns
    /// whether any was set.
    /// </summary>
    bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end);

    /// <summary>As <see cref="ClearFlushYoung"/> without the secondary TLB flush. May take locks.</summary>
    bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end);

    /// <summary>Tests the accessed bits of secondary entries in <c>[start, end)</c> without clearing. May take locks.</summary>
    bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end);

    /// <summary>
    /// Fast-only aging for aging walks and look-around. Called only on notifiers registered with
    /// <see cref="MmuNotifierFlags.LocklessAging"/>. Must not take, try or wait on any lock: entries
    /// are read with Volatile.Read and cleared with Interlocked; a failed compare-exchange counts
    /// as young. Returns whether any entry in <c>[start, end)</c> was young (and clears it if
    /// <paramref name="clear"/>).
    /// </summary>
    bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear);

    /// <summary>
    /// The registration ends (Unregister) or the address space is dying (every primary mapping is
    /// about to go). The notifier drops all of its mappings of <paramref name="space"/>, flushes its
    /// TLBs, and must not install or resolve through it again. Called exactly once per
    /// registration, while the notifier is still published, so an invalidation that runs meanwhile
    /// still reaches it. Callbacks that began before the unpublish may still arrive after Release
    /// returns, until Unregister/ReleaseAll returns: a released notifier must treat them as no-ops
    /// and must not free anything they could touch before that point.
    /// </summary>
    void Release(IAddressSpace space);
}
