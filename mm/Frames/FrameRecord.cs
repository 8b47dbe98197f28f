namespace Tandem.Mm;

/// <summary>
/// The record of one physical frame (compare Linux's <c>struct page</c>). Lives in the
/// <see cref="FrameDatabase{TPlatform}"/> array for the whole uptime, so lockless readers may
/// always dereference it.
/// </summary>
/// <remarks>
/// <see cref="Flags"/>, <see cref="RefCount"/>, <see cref="LruGeneration"/> change with
/// Interlocked; <see cref="MapCount"/> and <see cref="RmapHead"/> under the reverse-map lock;
/// <see cref="Order"/>, <see cref="NextFree"/>, <see cref="PrevFree"/> under the zone lock.
/// </remarks>
public struct FrameRecord
{
    /// <summary><see cref="FrameFlags"/> as an int (Interlocked.Or/And).</summary>
    public int Flags;
    /// <summary>References: one per tracked primary mapping plus temporary ones. The frame is freed when it drops to 0.</summary>
    public int RefCount;
    /// <summary>Number of primary entries that map the frame (= reverse-map entries).</summary>
    public int MapCount;
    /// <summary>The LRU generation in which the frame was last seen young.</summary>
    public int LruGeneration;
    /// <summary>Index of the first reverse-map entry, -1 for none.</summary>
    public int RmapHead;
    /// <summary>Order of a free buddy block whose head this is.</summary>
    public int Order;
    /// <summary>Buddy free-list link (frame index), -1 for none.</summary>
    public int NextFree;
    /// <summary>Buddy free-list link (frame index), -1 for none.</summary>
    public int PrevFree;
}
