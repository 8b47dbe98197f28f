namespace Tandem.Mm;

/// <summary>Why a range is being invalidated (compare Linux's <c>enum mmu_notifier_event</c>).</summary>
public enum MmuNotifierEvent
{
    /// <summary>The range was unmapped (<c>MMU_NOTIFY_UNMAP</c>).</summary>
    Unmap,
    /// <summary>A frame is being unmapped from every mapping for reclaim (<c>MMU_NOTIFY_CLEAR</c>).</summary>
    Clear,
    /// <summary>Access rights were reduced (<c>MMU_NOTIFY_PROTECTION_VMA</c>).</summary>
    ProtectionChange,
    /// <summary>The address space is being torn down (<c>MMU_NOTIFY_RELEASE</c>).</summary>
    Release,
    /// <summary>
    /// A huge leaf was split into smaller leaves with the same translation (Linux notifies
    /// <c>MMU_NOTIFY_CLEAR</c> around a huge-PMD split): nothing is freed or write-protected, but
    /// a secondary's huge leaf over the range is dropped, to fault back at the new size.
    /// </summary>
    Split,
}
