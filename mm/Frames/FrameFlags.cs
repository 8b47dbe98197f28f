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
}
