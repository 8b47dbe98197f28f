using System;
using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The benchmarks' machine: "physical memory" for mm frames is one native buffer, EPT table pages
/// come from a second one at a distinct fake physical base. Unlike the tests' machine there is no
/// TLB model and no checkpoint hook: the platforms below cost what the kernel's cost (an INVEPT or
/// a shootdown is a counter increment), so the figures are those of mm and kvm/Ept themselves.
/// </summary>
public sealed unsafe class BenchMachine : IDisposable
{
    /// <summary>Fake physical address of the first EPT table page (far above the frame buffer).</summary>
    public const ulong TableBase = 1UL << 40;

    public readonly byte* Memory;
    public readonly ulong Size;
    public readonly int Cpus;
    private readonly byte* _tables;
    private readonly int _tableCapacity;
    private int _tablesAllocated;
    public long InvEpts;
    public long RemoteFlushes;
    public long PrimaryFlushes;

    [ThreadStatic] private static int t_cpu;

    public BenchMachine(ulong size, int cpus, int tablePages)
    {
        Size = size;
        Cpus = cpus;
        // Frames are zeroed by mm when it hands them out; the buffer itself starts zeroed (calloc).
        Memory = (byte*)NativeMemory.AllocZeroed((nuint)size);
        if (((ulong)Memory & 4095) != 0)
        {
            NativeMemory.Free(Memory);
            Memory = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
            NativeMemory.Clear(Memory, (nuint)size);
        }
        _tableCapacity = tablePages;
        // Table pages are zeroed one by one when allocated, as the kernel's platform does.
        _tables = (byte*)NativeMemory.AlignedAlloc((nuint)tablePages * 4096, 4096);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    public int TablesAllocated => Volatile.Read(ref _tablesAllocated);

    /// <summary>The CPU index of the calling thread (set by each benchmark thread).</summary>
    public static int ThreadCpu { get => t_cpu; set => t_cpu = value; }

    public BenchMmPlatform MmPlatform => new BenchMmPlatform(this);

    public BenchEptPlatform EptPlatform => new BenchEptPlatform(this);

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
        NativeMemory.Clear(entries, 4096);
        return true;
    }

    public ulong* TableAt(PhysAddr address) => (ulong*)(_tables + (address.Value - TableBase));

    public void Dispose()
    {
        NativeMemory.Free(Memory);
        NativeMemory.AlignedFree(_tables);
    }
}

/// <summary>mm's platform for the benchmarks: flushes are counted, checkpoints are empty (as in the kernel).</summary>
public readonly unsafe struct BenchMmPlatform : IMmPlatform
{
    private readonly BenchMachine _machine;
    public BenchMmPlatform(BenchMachine machine) { _machine = machine; }
    public byte* PhysToVirt(PhysAddr address) => _machine.Memory + address.Value;
    public int CurrentCpu => BenchMachine.ThreadCpu;
    public int CpuCount => _machine.Cpus;
    public void FlushTlb(in TlbFlushRequest request) => Interlocked.Increment(ref _machine.PrimaryFlushes);
    public void SpinPause() => Thread.SpinWait(1);

    public void PreemptDisable() { }

    public void PreemptEnable() { }
    public void DeferFree(object retired) { }
    public void FrameFreed(Pfn frame) { }
    public void WaitForChange(ref int word, int observed) => Thread.SpinWait(1);
    public void Checkpoint(MmCheckpoint site) { }
}

/// <summary>The EPT platform for the benchmarks: INVEPT and remote flushes are counted, checkpoints are empty.</summary>
public readonly unsafe struct BenchEptPlatform : IEptPlatform
{
    private readonly BenchMachine _machine;
    public BenchEptPlatform(BenchMachine machine) { _machine = machine; }
    public bool AllocateTable(out PhysAddr address, out ulong* entries) => _machine.AllocateTable(out address, out entries);
    public ulong* TableAt(PhysAddr address) => _machine.TableAt(address);
    public void FreeTable(PhysAddr address) { }
    public void InvEptSingleContext(ulong eptPointer) => Interlocked.Increment(ref _machine.InvEpts);
    public void FlushRemote(ulong eptPointer, ulong cpuMask) => Interlocked.Increment(ref _machine.RemoteFlushes);
    public int CurrentCpu => BenchMachine.ThreadCpu;
    public void SpinPause() => Thread.SpinWait(1);

    public void PreemptDisable() { }

    public void PreemptEnable() { }
    public void Checkpoint(MmCheckpoint site) { }
}
