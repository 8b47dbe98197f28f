namespace Tandem.Mm;

/// <summary>Outcome of <see cref="MemoryManager{TPlatform}.TrySwapOut(Pfn)"/>.</summary>
public enum SwapOutResult
{
    /// <summary>The page's contents are in the device, every mapping is a swap entry, and the frame left memory (freed once the last temporary reference goes).</summary>
    Evicted,
    /// <summary>No swap device is attached.</summary>
    NoSwap,
    /// <summary>The frame is free (nothing to do).</summary>
    NotResident,
    /// <summary>Not an anonymous page mapped at most once (shared anonymous pages are not swapped yet).</summary>
    Refused,
    /// <summary>Another swap-out or a swap-in owns the frame, or no swap slot is free.</summary>
    Busy,
    /// <summary>A new mapping appeared while unmapping: the frame stays (in the swap cache).</summary>
    StillMapped,
    /// <summary>The device is full: the frame stays in the swap cache, unmapped; the next fault finds it there. Never a lost page.</summary>
    DeviceFull,
    /// <summary>Someone took the frame from the swap cache while it was written (a fault mapped it, or a temporary reference): it stays cached.</summary>
    Remapped,
}
