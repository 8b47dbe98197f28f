using System;
using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Tests;

/// <summary>
/// The host stand-in for a machine running one VM: "physical memory" for mm frames is a native
/// buffer, EPT table pages come from a second buffer at a distinct fake physical base, and the
/// CPUs' EPT TLBs are modelled by <see cref="EptTlbModel"/>. INVEPT and remote flushes are counted.
/// </summary>
public sealed unsafe class KvmMachine : IDisposable
{
    [ThreadStatic] private static int t_cpu;
    [ThreadStatic] private static Action<MmCheckpoint>? t_checkpoint;

    /// <summary>Fake physical address of the first EPT table page (far above the frame buffer).</summary>
    public const ulong TableBase = 1UL << 40;

    public readonly byte* Memory;
    public readonly ulong Size;
    public readonly int Cpus;
    public readonly EptTlbModel Tlb;

    private readonly byte* _tables;
    private readonly int _tableCapacity;
    private int _tablesAllocated;
    public long TablesFreed;
    public long InvEptCount;
    public long RemoteFlushCount;
    public long PrimaryFlushCount;

    /// <summary>Mutation switch: the platform "forgets" INVEPT and remote flushes.</summary>
    public bool DropEptFlushes;

    public KvmMachine(ulong size, int cpus, int tablePages = 4096)
    {
        Size = size;
        Cpus = cpus;
        Memory = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(Memory, (nuint)size);
        _tableCapacity = tablePages;
        _tables = (byte*)NativeMemory.AlignedAlloc((nuint)tablePages * 4096, 4096);
        NativeMemory.Clear(_tables, (nuint)tablePages * 4096);
        Tlb = new EptTlbModel(this, cpus);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    public int TablesAllocated => Volatile.Read(ref _tablesAllocated);

    /// <summary>The CPU index of the calling thread.</summary>
    public static int ThreadCpu { get => t_cpu; set => t_cpu = value; }

    /// <summary>Per-thread checkpoint hook (used by the interleaving explorer).</summary>
    public static Action<MmCheckpoint>? ThreadCheckpoint { get => t_checkpoint; set => t_checkpoint = value; }

    public MmHostPlatform MmPlatform => new MmHostPlatform(this);

    public EptHostPlatform EptPlatform => new EptHostPlatform(this);

    public bool AllocateTable(out PhysAddr address, out ulong* entries)
    {
        int index = Interlocked.Increment(ref _tablesAllocated) - 1;
        if (index >= _tableCapacity)
        {
            address = default;
            entries = null;
            return false;
        }
        address = new PhysAddr(TableBase + (ulong)index * 4096);
        entries = (ulong*)(_tables + (ulong)index * 4096);
        return true;
    }

    public ulong* TableAt(PhysAddr address)
    {
        ulong offset = address.Value - TableBase;
        if (address.Value < TableBase || offset >= (ulong)_tableCapacity * 4096)
            throw new ArgumentOutOfRangeException(nameof(address), "not an EPT table page");
        return (ulong*)(_tables + offset);
    }

    public byte* FrameBytes(Pfn frame)
    {
        if (frame.Address.Value >= Size)
            throw new ArgumentOutOfRangeException(nameof(frame), "frame outside the host buffer");
        return Memory + frame.Address.Value;
    }

    public void InvEpt(ulong eptPointer)
    {
        Interlocked.Increment(ref InvEptCount);
        if (!DropEptFlushes)
            Tlb.FlushCpu(ThreadCpu % Cpus);
    }

    public void FlushRemote(ulong eptPointer, ulong mask)
    {
        Interlocked.Increment(ref RemoteFlushCount);
        if (DropEptFlushes)
            return;
        for (int c = 0; c < Cpus; c++)
        {
            if ((mask & (1UL << c)) != 0)
                Tlb.FlushCpu(c);
        }
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(Memory);
        NativeMemory.AlignedFree(_tables);
    }
}
