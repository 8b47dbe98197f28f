namespace Tandem.Mm;

/// <summary>Outcome of a map or split. Expected failures are statuses, never exceptions.</summary>
public enum MapStatus
{
    /// <summary>Done.</summary>
    Ok,
    /// <summary>Something is already mapped there.</summary>
    AlreadyMapped,
    /// <summary>A huge mapping or a lower-level table is in the way.</summary>
    Conflict,
    /// <summary>No frame for a page table (or no reverse-map entry).</summary>
    OutOfMemory,
    /// <summary>Address or size not aligned, or size not 4 KiB / 2 MiB / 1 GiB.</summary>
    Misaligned,
    /// <summary>Nothing mapped there (split).</summary>
    NotMapped,
    /// <summary>The address space is dying: nothing new is mapped.</summary>
    Dead,
    /// <summary>A split of a tracked 2 MiB page found a transient reference on it (a secondary
    /// resolving it, an eviction holding it): try again once it is dropped.</summary>
    Busy,
}
