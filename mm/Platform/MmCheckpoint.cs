namespace Tandem.Mm;

/// <summary>Named points between shared-memory steps, reported through <see cref="IMmPlatform.Checkpoint"/>.</summary>
public enum MmCheckpoint
{
    /// <summary>A primary entry was cleared (not yet flushed).</summary>
    PrimaryEntryCleared,
    /// <summary>The primary TLB flush for an operation finished.</summary>
    PrimaryTlbFlushed,
    /// <summary>All notifiers saw <c>InvalidateRangeStart</c>.</summary>
    NotifierStartDone,
    /// <summary>All notifiers saw <c>InvalidateRangeEnd</c>.</summary>
    NotifierEndDone,
    /// <summary>The reference of a torn-down mapping was dropped.</summary>
    ReferenceDropped,
    /// <summary>A secondary fault took its sequence snapshot.</summary>
    SequenceRead,
    /// <summary>A secondary fault resolved its page through the primary MMU.</summary>
    SecondaryResolved,
    /// <summary>A secondary fault finished its locked check-and-install step.</summary>
    SecondaryInstallDone,
    /// <summary>A secondary fault failed its check and is about to start again (a spin: a fair
    /// scheduler lets someone else run next).</summary>
    SecondaryRetry,
    /// <summary>A demand fault installed a primary entry.</summary>
    PrimaryEntryInstalled,
    /// <summary>A memslot was marked invalid (faults no longer find it); its zap comes next.</summary>
    MemslotInvalidated,
    /// <summary>A lockless secondary walker (zap or aging) entered its grace-period section and is about to walk.</summary>
    SecondaryWalkBegun,
    /// <summary>A zap walk read a leaf and is about to clear it.</summary>
    SecondaryZapLeaf,
    /// <summary>A reverse-map walker copied one mapping out of the rmap (no reference on its address space yet).</summary>
    RmapEntryCopied,
    /// <summary>A lockless secondary walker (zap or 4 KiB aging) read a present leaf and is about to
    /// change it with a compare-exchange: the CPU may set A/D (or a zapper clear it) in between
    /// (docs/locking.md, races 3 and 4). Also reached under the EPT's MMU lock when a fault zaps a
    /// large leaf in its way.</summary>
    SecondaryLeafRead,
    /// <summary>The merge scanner compared a page with its merge target (first compare) and is about
    /// to write-protect it.</summary>
    MergeBeforeWriteProtect,
    /// <summary>The merge scanner write-protected the page (primary flushed, notifiers called); the
    /// second byte-for-byte compare comes next.</summary>
    MergeWriteProtected,
}
