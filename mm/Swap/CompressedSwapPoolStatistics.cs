namespace Tandem.Mm;

/// <summary>
/// A snapshot of a <see cref="CompressedSwapPool{TPlatform}"/>'s counters
/// (<see cref="CompressedSwapPool{TPlatform}.ReadStatistics"/>). Each field is read on its own
/// without the pool's lock, so fields may come from slightly different instants.
/// </summary>
public struct CompressedSwapPoolStatistics
{
    /// <summary>Stored zero-filled pages (markers: no storage).</summary>
    public long ZeroPages;
    /// <summary>Stored same-filled pages other than zero (markers: no storage).</summary>
    public long SameFilledPages;
    /// <summary>Stored pages kept as LZ4 blocks in chunks.</summary>
    public long CompressedPages;
    /// <summary>Stored pages kept uncompressed, one frame each.</summary>
    public long RawPages;
    /// <summary>Sum of the LZ4 block lengths of <see cref="CompressedPages"/> (without chunk headers or rounding).</summary>
    public long CompressedBytes;
    /// <summary>Frames the pool holds now (chunk frames and raw frames).</summary>
    public long FramesInUse;
    /// <summary>The most frames the pool may hold (its size limit in frames).</summary>
    public long LimitFrames;
    /// <summary>Stores refused because the limit was reached.</summary>
    public long RefusedFull;
    /// <summary>Stores refused because the frame allocator had no frame left below the limit.</summary>
    public long RefusedNoMemory;
    /// <summary>Loads or frees of handles that named nothing stored (stale, forged or corrupt).</summary>
    public long BadHandles;
    /// <summary>Loads whose stored block failed to decode to a whole page (corrupt pool memory).</summary>
    public long CorruptBlocks;
}
