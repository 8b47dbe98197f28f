using System;
using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Mm;

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

    public HostMachine(ulong size, int cpus)
    {
        Size = size;
        Cpus = cpus;
        Memory = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        new Span<byte>(Memory, (int)Math.Min(size, int.MaxValue)).Clear();
        if (size > int.MaxValue)
            NativeMemory.Clear(Memory, (nuint)size);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    /// <summary>The CPU index of the calling thread (set it on worker threads).</summary>
    public static int ThreadCpu { get => t_cpu; set => t_cpu = value; }

    /// <summary>Per-thread checkpoint hook (used by the interleaving scheduler).</summary>
    public static Action<MmCheckpoint>? ThreadCheckpoint { get => t_checkpoint; set => t_checkpoint = value; }

    public HostPlatform Platform => new HostPlatform(this);

    public MemoryManager<HostPlatform> CreateManager(int rmapCapacity = 0)
    {
        return new MemoryManager<HostPlatform>(Platform, FrameCount, 16, rmapCapacity == 0 ? FrameCount : rmapCapacity);
    }

    public void RecordFlush(in TlbFlushRequest request)
    {
        Interlocked.Increment(ref FlushCount);
        Interlocked.Add(ref FlushedBytes, (long)(request.End.Value - request.Start.Value));
        OnFlush?.Invoke(request);
    }

    public void Dispose() => NativeMemory.AlignedFree(Memory);
}
