namespace Tandem.Mm;

/// <summary>State bits of a <see cref="FrameRecord"/>.</summary>
public enum FrameFlags
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>Never allocatable (firmware, kernel image, frame 0).</summary>
    Reserved = 1,
    /// <summary>Head of a free buddy block (its order is in <see cref="FrameRecord.Order"/>).</summary>
    Free = 2,
    /// <summary>Holds a page table.</summary>
    PageTable = 4,
    /// <summary>Anonymous memory of some address space.</summary>
    Anonymous = 8,
    /// <summary>Written since it was last cleaned (from a primary or secondary dirty bit).</summary>
    Dirty = 16,
    /// <summary>In the swap cache (<see cref="SwapMap{TPlatform}"/>), which holds a reference; cleared when it leaves it.</summary>
    SwapCache = 256,
    /// <summary>A shared frame of the merge scanner (mm/Merge, or the shared zero frame): its
    /// contents never change; it is read-only in every MMU; a write takes a copy-on-write fault that
    /// gives the writer a private copy (docs/reclaim.md, "Page merging").</summary>
    Merged = 1 << 10,
    /// <summary>Transient: no mapping of the frame may be made writable in place; a write copies it
    /// instead. Set on a page between the merge scanner's write-protect and its remap (or abort),
    /// and on a fresh copy-on-write copy until the old frame's secondaries were invalidated.</summary>
    CopyOnWrite = 1 << 11,
    /// <summary>
    /// The head of a tracked 2 MiB anonymous page (an order-9 block, compare Linux's large folio):
    /// the head's record holds the reference count, the map count, the reverse-map entry and the
    /// LRU place for all 512 frames; the tails' counts stay 0 until a split gives each its own
    /// (<c>AddressSpace.SplitHuge</c>). Freed as one block.
    /// </summary>
    Huge = 1 << 12,
}
