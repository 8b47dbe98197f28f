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
}
