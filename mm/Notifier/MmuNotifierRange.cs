namespace Tandem.Mm;

/// <summary>
/// The argument of <see cref="IMmuNotifier.InvalidateRangeStart"/>/<see cref="IMmuNotifier.InvalidateRangeEnd"/>
/// (compare Linux's <c>struct mmu_notifier_range</c>). Passed by <c>in</c>; never stored.
/// </summary>
public readonly struct MmuNotifierRange
{
    /// <summary>The address space whose primary mappings changed.</summary>
    public readonly IAddressSpace Space;
    /// <summary>First byte of the range (4 KiB aligned).</summary>
    public readonly VirtAddr Start;
    /// <summary>One past the last byte (4 KiB aligned).</summary>
    public readonly VirtAddr End;
    /// <summary>Why.</summary>
    public readonly MmuNotifierEvent Event;
    /// <summary>The callee may wait (take a sleeping lock). False from atomic contexts.</summary>
    public readonly bool MayBlock;

    /// <summary>Creates a range.</summary>
    public MmuNotifierRange(IAddressSpace space, VirtAddr start, VirtAddr end, MmuNotifierEvent evt, bool mayBlock)
    {
        Space = space;
        Start = start;
        End = end;
        Event = evt;
        MayBlock = mayBlock;
    }

    /// <summary>True when <c>[start, end)</c> intersects this range.</summary>
    public bool Overlaps(VirtAddr start, VirtAddr end) { return start < End && Start < end; }
}
