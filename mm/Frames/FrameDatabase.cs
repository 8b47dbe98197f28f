using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// One <see cref="FrameRecord"/> per physical frame of <c>[0, frameCount)</c>, a buddy allocator of
/// orders 0..<see cref="MaxOrder"/> over them, and per-CPU caches of order-0 frames.
/// </summary>
public sealed unsafe partial class FrameDatabase<TPlatform> where TPlatform : struct, IMmPlatform
{
    /// <summary>Largest buddy order (4 MiB blocks).</summary>
    public const int MaxOrder = 10;

    private readonly TPlatform _platform;
    private readonly FrameRecord[] _frames;

    /// <summary>
    /// Creates the database for frames <c>[0, frameCount)</c>; frames below
    /// <paramref name="firstUsable"/> are reserved, the rest start free.
    /// </summary>
    public FrameDatabase(TPlatform platform, int frameCount, int firstUsable)
    {
        _platform = platform;
        _frames = new FrameRecord[frameCount];
        _freeHead = new int[MaxOrder + 1];
        _freeBlocks = new int[MaxOrder + 1];
        for (int o = 0; o <= MaxOrder; o++)
            _freeHead[o] = -1;
        for (int i = 0; i < frameCount; i++)
        {
            _frames[i].RmapHead = -1;
            _frames[i].NextFree = -1;
            _frames[i].PrevFree = -1;
            if (i < firstUsable)
                _frames[i].Flags = (int)FrameFlags.Reserved;
        }
        SeedBuddy(firstUsable, frameCount);
        _perCpu = new PerCpuFrameCache[platform.CpuCount];
        for (int c = 0; c < _perCpu.Length; c++)
            _perCpu[c] = new PerCpuFrameCache();
    }

    /// <summary>Number of frames described.</summary>
    public int FrameCount { get { return _frames.Length; } }

    /// <summary>The record of <paramref name="frame"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref FrameRecord Record(Pfn frame) { return ref _frames[(int)frame.Value]; }

    /// <summary>Reads the flags once.</summary>
    public FrameFlags FlagsOf(Pfn frame) { return (FrameFlags)Volatile.Read(ref _frames[(int)frame.Value].Flags); }

    /// <summary>Atomically sets flags.</summary>
    public void SetFlags(Pfn frame, FrameFlags flags)
    {
        // Atomic RMW: flags of one frame are changed from several CPUs (dirty from a secondary zap).
        Interlocked.Or(ref _frames[(int)frame.Value].Flags, (int)flags);
    }

    /// <summary>Atomically clears flags.</summary>
    public void ClearFlags(Pfn frame, FrameFlags flags)
    {
        // Atomic RMW, as SetFlags.
        Interlocked.And(ref _frames[(int)frame.Value].Flags, ~(int)flags);
    }

    /// <summary>Current reference count (racy snapshot).</summary>
    public int RefCountOf(Pfn frame) { return Volatile.Read(ref _frames[(int)frame.Value].RefCount); }

    /// <summary>Current map count (racy snapshot).</summary>
    public int MapCountOf(Pfn frame) { return Volatile.Read(ref _frames[(int)frame.Value].MapCount); }

    /// <summary>Takes a reference on a frame the caller already knows is live.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void GetRef(Pfn frame)
    {
        // Caller holds a reference or the page-table lock of a mapping of the frame, so the count
        // cannot be 0 here.
        Interlocked.Increment(ref _frames[(int)frame.Value].RefCount);
    }

    /// <summary>Takes a reference unless the count is 0 (the frame is being freed).</summary>
    public bool TryGetRef(Pfn frame)
    {
        ref int count = ref _frames[(int)frame.Value].RefCount;
        int old = Volatile.Read(ref count);
        while (old > 0)
        {
            // CAS so we never resurrect a frame whose count reached 0; pairs with the
            // Interlocked.Decrement in PutRef.
            int seen = Interlocked.CompareExchange(ref count, old + 1, old);
            if (seen == old)
                return true;
            old = seen;
        }
        return false;
    }

    /// <summary>Drops a reference; frees the (order-0) frame when it was the last.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PutRef(Pfn frame)
    {
        // Full barrier: every use of the frame by this holder happens before the free; pairs with
        // the other holders' decrements (the last one frees).
        int left = Interlocked.Decrement(ref _frames[(int)frame.Value].RefCount);
        if (left == 0)
            FreeReleased(frame);
        else if (left < 0)
            throw new InvalidOperationException("FrameDatabase: reference count below zero");
    }

    private void FreeReleased(Pfn frame)
    {
        ref FrameRecord r = ref _frames[(int)frame.Value];
        if (r.MapCount != 0 || r.RmapHead != -1)
            throw new InvalidOperationException("FrameDatabase: freeing a mapped frame");
        bool huge = (Volatile.Read(ref r.Flags) & (int)FrameFlags.Huge) != 0;
        Volatile.Write(ref r.Flags, 0);
        _platform.FrameFreed(frame);
        if (!huge)
        {
            Free(frame, 0);
            return;
        }
        // A 2 MiB page goes back whole; its tails may carry flags a secondary's dirty bit set.
        for (int i = 1; i < HugeFrames; i++)
        {
            ref FrameRecord t = ref _frames[(int)frame.Value + i];
            if (t.RefCount != 0 || t.MapCount != 0 || t.RmapHead != -1)
                throw new InvalidOperationException("FrameDatabase: freeing a 2 MiB page whose tail is in use");
            Volatile.Write(ref t.Flags, 0);
            _platform.FrameFreed(new Pfn(frame.Value + (ulong)i));
        }
        Free(frame, HugeOrder);
    }

    /// <summary>The order of a 2 MiB page.</summary>
    public const int HugeOrder = 9;

    /// <summary>Frames in a 2 MiB page.</summary>
    public const int HugeFrames = 1 << HugeOrder;

    /// <summary>
    /// Allocates a 2 MiB page (an order-9 block, naturally aligned) for a tracked huge mapping: the
    /// head's count is 1 and it is marked <see cref="FrameFlags.Huge"/> (so that its last
    /// reference frees the whole block); the tails' records are reset. The contents are not
    /// cleared. False when no such block is free.
    /// </summary>
    public bool AllocateHuge(out Pfn head)
    {
        if (!TryAllocate(HugeOrder, out head))
            return false;
        for (int i = 1; i < HugeFrames; i++)
        {
            ref FrameRecord t = ref _frames[(int)head.Value + i];
            t.RefCount = 0;
            t.MapCount = 0;
            t.RmapHead = -1;
            Volatile.Write(ref t.Flags, 0);
        }
        SetFlags(head, FrameFlags.Huge);
        return true;
    }

    /// <summary>
    /// Freezes the count of <paramref name="frame"/> at 0 if it is exactly <paramref name="expected"/>
    /// (compare Linux's <c>folio_ref_freeze</c>): from then on <see cref="TryGetRef"/> fails, as for
    /// a frame being freed, until <see cref="UnfreezeRefs"/>. The caller must be the only one that
    /// can take an unconditional reference (it holds the page-table lock of the only mapping).
    /// </summary>
    public bool TryFreezeRefs(Pfn frame, int expected)
    {
        return Interlocked.CompareExchange(ref _frames[(int)frame.Value].RefCount, 0, expected) == expected;
    }

    /// <summary>Ends a freeze: the count becomes <paramref name="count"/> (release: the frozen changes are visible first).</summary>
    public void UnfreezeRefs(Pfn frame, int count)
    {
        Volatile.Write(ref _frames[(int)frame.Value].RefCount, count);
    }

    /// <summary>Gives a split tail of a 2 MiB page its own reference (the mapping's) and <paramref name="flags"/>, under a freeze of the head.</summary>
    internal void MakeIndependent(Pfn tail, FrameFlags flags)
    {
        ref FrameRecord t = ref _frames[(int)tail.Value];
        Interlocked.Or(ref t.Flags, (int)flags);
        Volatile.Write(ref t.RefCount, 1);
    }
}
