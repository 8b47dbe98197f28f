using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The root of the portable memory manager: the frame database, the reverse map, and the
/// frame-centred operations (unmap from every mapping, aging, reclaim).
/// </summary>
public sealed partial class MemoryManager<TPlatform> where TPlatform : struct, IMmPlatform
{
    private int _nextSpaceId;

    /// <summary>The platform.</summary>
    public readonly TPlatform Platform;
    /// <summary>The frame database and allocator.</summary>
    public readonly FrameDatabase<TPlatform> Frames;
    /// <summary>The reverse map.</summary>
    public readonly ReverseMap<TPlatform> Rmap;
    /// <summary>The generations of anonymous pages (mm/Reclaim, docs/reclaim.md).</summary>
    public readonly LruGenerations<TPlatform> Lru;

    /// <summary>
    /// Creates the memory manager for frames <c>[0, frameCount)</c> (frames below
    /// <paramref name="firstUsable"/> reserved) with <paramref name="rmapCapacity"/> reverse-map entries.
    /// </summary>
    public MemoryManager(TPlatform platform, int frameCount, int firstUsable, int rmapCapacity)
    {
        Platform = platform;
        Frames = new FrameDatabase<TPlatform>(platform, frameCount, firstUsable);
        Rmap = new ReverseMap<TPlatform>(platform, Frames, rmapCapacity);
        Lru = new LruGenerations<TPlatform>(platform, Frames);
        Rmap.Lru = Lru;
    }

    /// <summary>The current (youngest) LRU generation, <see cref="LruGenerations{TPlatform}.MaxSeq"/>.</summary>
    public int Generation { get { return Lru.MaxSeq; } }

    /// <summary>Creates an empty address space; null if no frame is left for its root table.</summary>
    public AddressSpace<TPlatform>? CreateAddressSpace()
    {
        if (!Frames.AllocateFrame(out Pfn root))
            return null;
        int id = Interlocked.Increment(ref _nextSpaceId);
        AddressSpace<TPlatform> space = new AddressSpace<TPlatform>(this, id, root);
        RegisterSpace(space);
        return space;
    }
}
