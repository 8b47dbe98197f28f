using System;
using System.Runtime.InteropServices;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>Host "physical memory" for benchmarks: a native buffer; flushes are counted only.</summary>
public sealed unsafe class BenchMachine : IDisposable
{
    public readonly byte* Memory;
    public readonly ulong Size;
    public long Flushes;

    public BenchMachine(ulong size)
    {
        Size = size;
        Memory = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(Memory, (nuint)size);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    public MemoryManager<BenchPlatform> CreateManager() =>
        new MemoryManager<BenchPlatform>(new BenchPlatform(this), FrameCount, 16, FrameCount) { DropAnonymousWithoutSwap = true };

    public void Dispose() => NativeMemory.AlignedFree(Memory);
}
