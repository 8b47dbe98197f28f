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
        Volatile.Write(ref r.Flags, 0);
        _platform.FrameFreed(frame);
        Free(frame, 0);
    }
}
