namespace Tandem.Mm;

/// <summary>Outcome of a fault or a resolve. Expected failures are statuses, never exceptions.</summary>
public enum FaultStatus
{
    /// <summary>The page is mapped with the requested access.</summary>
    Ok,
    /// <summary>No region covers the address.</summary>
    NoRegion,
    /// <summary>The region forbids the requested access.</summary>
    AccessDenied,
    /// <summary>No free frame.</summary>
    OutOfMemory,
    /// <summary>A userfault fill found the page already mapped (compare EEXIST).</summary>
    Exists,
    /// <summary>The address space is dying (or the secondary MMU was released): nothing new is mapped.</summary>
    Dead,
    /// <summary>The page is in swap and the swap device could not return it (corrupt or missing copy): nothing was mapped.</summary>
    SwapError,
}
