namespace Tandem.Mm;

/// <summary>
/// Where evicted anonymous pages go (compare Linux's swap device and the zswap/zram backends). The
/// memory manager owns the swap entries in the page tables and the swap cache; a device only stores
/// and returns page images under handles it chooses.
/// </summary>
/// <remarks>
/// Every method may be called from several threads at once and is never called with an mm lock
/// held (page-table, reverse-map or swap-map lock). A device may take its own lock and, inside it,
/// the frame allocator (lock order: device lock → per-CPU frame cache → zone lock).
/// </remarks>
public unsafe interface ISwapDevice
{
    /// <summary>
    /// Stores a copy of the 4 KiB page at <paramref name="page"/>. False when the device is full:
    /// nothing was stored and the caller keeps the page in memory. On success
    /// <paramref name="handle"/> names the copy; it is never 0.
    /// </summary>
    bool TryStore(byte* page, out ulong handle);

    /// <summary>
    /// Writes the copy named by <paramref name="handle"/> into the 4 KiB at <paramref name="page"/>.
    /// False when the stored block is corrupt or the handle names nothing: then no byte outside
    /// <c>[page, page + 4096)</c> was written. The copy stays stored.
    /// </summary>
    bool TryLoad(ulong handle, byte* page);

    /// <summary>Frees the copy named by <paramref name="handle"/>.</summary>
    void Free(ulong handle);
}
