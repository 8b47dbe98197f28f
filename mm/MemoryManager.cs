using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The root of the portable memory manager: the frame database, the reverse map, and the
/// frame-centred operations (unmap from every mapping, aging, reclaim).
/// </summary>
public sealed partial class MemoryManager<TPlatform> where TPlatform : struct, IMmPlatform
{
    private int _nextSpaceId;
    private int _generation;

    /// <summary>The platform.</summary>
    public readonly TPlatform Platform;
    /// <summary>The frame database and allocator.</summary>
    public readonly FrameDatabase<TPlatform> Frames;
    /// <summary>The reverse map.</summary>
    public readonly ReverseMap<TPlatform> Rmap;

    /// <summary>
    /// Creates the memory manager for frames <c>[0, frameCount)</c> (frames below
    /// <paramref name="firstUsable"/> reserved) with <paramref name="rmapCapacity"/> reverse-map entries.
    /// </summary>
    public MemoryManager(TPlatform platform, int frameCount, int firstUsable, int rmapCapacity)
    {
        Platform = platform;
        Frames = new FrameDatabase<TPlatform>(platform, frameCount, firstUsable);
        Rmap = new ReverseMap<TPlatform>(platform, Frames, rmapCapacity);
    }

    /// <summary>The current LRU generation.</summary>
    public int Generation { get { return Volatile.Read(ref _generation); } }

    /// <summary>Starts a new LRU generation (after an aging pass).</summary>
    public int AdvanceGeneration()
    {
        // Atomic: several aging walkers may advance it.
        return Interlocked.Increment(ref _generation);
    }

    /// <summary>Creates an empty address space; null if no frame is left for its root table.</summary>
    public AddressSpace<TPlatform>? CreateAddressSpace()
    {
        if (!Frames.AllocateFrame(out Pfn root))
            return null;
        int id = Interlocked.Increment(ref _nextSpaceId);
        return new AddressSpace<TPlatform>(this, id, root);
    }
}
