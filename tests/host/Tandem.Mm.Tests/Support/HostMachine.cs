using System;
using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;

namespace Tandem.Mm.Tests;

/// <summary>The host stand-in for a machine: "physical memory" is a native buffer; flushes are recorded.</summary>
public sealed unsafe class HostMachine : IDisposable
{
    [ThreadStatic] private static int t_cpu;
    [ThreadStatic] private static Action<MmCheckpoint>? t_checkpoint;

    public readonly byte* Memory;
    public readonly ulong Size;
    public readonly int Cpus;
    public long FlushCount;
    public long FlushedBytes;
    public Action<TlbFlushRequest>? OnFlush;

    /// <summary>
    /// The frame database whose reference counts say which frames are free (set by
    /// <see cref="CreateManager"/>): a PteOps access inside a free frame is a failure.
    /// </summary>
    public FrameDatabase<HostPlatform>? Frames;

    /// <summary>Freed-table checks over the whole buffer (failures stay recorded here).</summary>
    public readonly FreedPageWatch FreedWatch;
    private readonly IDisposable _watching;

    /// <summary>
    /// True (default): every CPU allocates from and frees to the same per-CPU cache, which is LIFO,
    /// so a frame freed by one thread is the next one any thread gets (freed memory is reused at once).
    /// </summary>
    public bool ReuseFreedFramesAtOnce = true;

    /// <summary>Frames poisoned by <see cref="IMmPlatform.FrameFreed"/>.</summary>
    public long FramesPoisoned;

    public HostMachine(ulong size, int cpus)
    {
        Size = size;
        Cpus = cpus;
        Memory = NativeBufferPool.Rent(size);
        FreedWatch = new FreedPageWatch((ulong)Memory, (ulong)Memory + size, "frame", IsFrameFree);
        _watching = AccessMonitor.Watch(FreedWatch);
    }

    private bool IsFrameFree(long frame)
    {
        FrameDatabase<HostPlatform>? frames = Frames;
        return frames != null && frame >= FirstUsableFrame && frames.RefCountOf(new Pfn((ulong)frame)) <= 0;
    }

    /// <summary>Frames below this are reserved (never allocated, never checked).</summary>
    public const int FirstUsableFrame = 16;

    /// <summary>A frame's last reference went: fill it with entries that look present and lead outside the buffer.</summary>
    public void PoisonFrame(Pfn frame)
    {
        Interlocked.Increment(ref FramesPoisoned);
        Poison.Fill(Memory + frame.Address.Value, Poison.PrimaryEntry);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    /// <summary>The CPU index of the calling thread (set it on worker threads).</summary>
    public static int ThreadCpu { get => t_cpu; set => t_cpu = value; }

    /// <summary>Per-thread checkpoint hook (used by the interleaving scheduler).</summary>
    public static Action<MmCheckpoint>? ThreadCheckpoint { get => t_checkpoint; set => t_checkpoint = value; }

    public HostPlatform Platform => new HostPlatform(this);

    public MemoryManager<HostPlatform> CreateManager(int rmapCapacity = 0)
    {
        MemoryManager<HostPlatform> mm = new MemoryManager<HostPlatform>(Platform, FrameCount, FirstUsableFrame, rmapCapacity == 0 ? FrameCount : rmapCapacity);
        mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        Frames = mm.Frames;
        return mm;
    }

    public void RecordFlush(in TlbFlushRequest request)
    {
        Interlocked.Increment(ref FlushCount);
        Interlocked.Add(ref FlushedBytes, (long)(request.End.Value - request.Start.Value));
        OnFlush?.Invoke(request);
    }

    public void Dispose()
    {
        _watching.Dispose();
        NativeBufferPool.Return(Memory, Size);
    }
}
