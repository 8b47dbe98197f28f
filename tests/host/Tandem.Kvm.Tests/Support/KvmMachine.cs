using System;
using System.Runtime.InteropServices;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;

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
    // Freed table pages, reused last-freed-first by AllocateTable; guarded by _tableLock.
    private readonly Stack<int> _freeTables = new Stack<int>();
    private readonly bool[] _tableFreed;
    private readonly object _tableLock = new object();

    /// <summary>The frame database whose reference counts say which mm frames are free (set by the bed).</summary>
    public FrameDatabase<MmHostPlatform>? Frames;

    /// <summary>Freed-page checks: mm page-table frames (reference count 0) and freed EPT table pages.</summary>
    public readonly FreedPageWatch FreedFrameWatch, FreedTableWatch;
    private readonly IDisposable _watchingFrames, _watchingTables;

    /// <summary>Frames below this are reserved (never allocated, never checked).</summary>
    public const int FirstUsableFrame = 16;

    /// <summary>True (default): mm frees to and allocates from one LIFO per-CPU cache, so a freed frame is reused at once.</summary>
    public bool ReuseFreedFramesAtOnce = true;

    public long FramesPoisoned;
    public long InvEptCount;
    public long RemoteFlushCount;
    public long PrimaryFlushCount;

    /// <summary>Mutation switch: the platform "forgets" INVEPT and remote flushes.</summary>
    public bool DropEptFlushes;

    public KvmMachine(ulong size, int cpus, int tablePages = 4096)
    {
        Size = size;
        Cpus = cpus;
        Memory = NativeBufferPool.Rent(size);
        _tableCapacity = tablePages;
        _tables = NativeBufferPool.Rent((ulong)tablePages * 4096);
        _tableFreed = new bool[tablePages];
        Tlb = new EptTlbModel(this, cpus);
        FreedFrameWatch = new FreedPageWatch((ulong)Memory, (ulong)Memory + size, "mm frame", IsFrameFree);
        FreedTableWatch = new FreedPageWatch((ulong)_tables, (ulong)_tables + (ulong)tablePages * 4096, "EPT table page", i => Volatile.Read(ref _tableFreed[i]));
        _watchingFrames = AccessMonitor.Watch(FreedFrameWatch);
        _watchingTables = AccessMonitor.Watch(FreedTableWatch);
    }

    public int FrameCount => (int)(Size / PageSizes.Size4K);

    public int TablesAllocated => Volatile.Read(ref _tablesAllocated);

    /// <summary>The CPU index of the calling thread.</summary>
    public static int ThreadCpu { get => t_cpu; set => t_cpu = value; }

    /// <summary>Per-thread checkpoint hook (used by the interleaving explorer).</summary>
    public static Action<MmCheckpoint>? ThreadCheckpoint { get => t_checkpoint; set => t_checkpoint = value; }

    /// <summary>Makes the calling thread run as <paramref name="cpu"/> with that checkpoint hook (null unbinds): the explorer's thread binding.</summary>
    public static void BindThread(int cpu, Action<MmCheckpoint>? hook)
    {
        ThreadCpu = cpu;
        ThreadCheckpoint = hook;
    }

    public MmHostPlatform MmPlatform => new MmHostPlatform(this);

    public EptHostPlatform EptPlatform => new EptHostPlatform(this);

    /// <summary>Both watches' failures (recorded even when the exception was swallowed).</summary>
    public int FreedAccessFailures => FreedFrameWatch.Failures + FreedTableWatch.Failures;

    public string FreedAccessMessages => FreedFrameWatch.AllFailures + FreedTableWatch.AllFailures;

    private bool IsFrameFree(long frame)
    {
        FrameDatabase<MmHostPlatform>? frames = Frames;
        return frames != null && frame >= FirstUsableFrame && frames.RefCountOf(new Pfn((ulong)frame)) <= 0;
    }

    /// <summary>mm freed a frame: fill it with entries that look present and lead outside the buffer.</summary>
    public void PoisonFrame(Pfn frame)
    {
        Interlocked.Increment(ref FramesPoisoned);
        Poison.Fill(FrameBytes(frame), Poison.PrimaryEntry);
    }

    /// <summary>A zeroed table page: the last freed one if any (LIFO: freed tables are reused at once), else a new one.</summary>
    public bool AllocateTable(out PhysAddr address, out ulong* entries)
    {
        int index = -1;
        lock (_tableLock)
        {
            if (_freeTables.Count > 0)
            {
                index = _freeTables.Pop();
                NativeMemory.Clear(_tables + (ulong)index * 4096, 4096);
                Volatile.Write(ref _tableFreed[index], false);
            }
        }
        if (index < 0)
            index = Interlocked.Increment(ref _tablesAllocated) - 1;
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

    /// <summary>IEptPlatform.FreeTable: the page is freed now: poisoned, marked freed, and next in line for AllocateTable.</summary>
    public void FreeTable(PhysAddr address)
    {
        ulong* page = TableAt(address);
        int index = (int)((address.Value - TableBase) / 4096);
        Interlocked.Increment(ref TablesFreed);
        lock (_tableLock)
        {
            if (_tableFreed[index])
                throw new InvalidOperationException("EPT table page 0x" + address.Value.ToString("x") + " freed twice");
            // Marked before poisoned: a walker that reads the poison is caught by the watch.
            Volatile.Write(ref _tableFreed[index], true);
            Poison.Fill(page, Poison.EptEntry);
            _freeTables.Push(index);
        }
    }

    /// <summary>True when the table page at <paramref name="address"/> is currently freed.</summary>
    public bool IsTableFreed(PhysAddr address) => Volatile.Read(ref _tableFreed[(int)((address.Value - TableBase) / 4096)]);

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

    /// <summary>
    /// Called at every INVEPT and remote flush, after the modelled TLBs were cleared (a test may
    /// make it wait for in-flight guest accesses, as the IPI does: the target CPU flushes, then
    /// acknowledges once its current access is done). Waiting before the clear was wrong: an
    /// access that began after the wait still hit the stale entry, and ran on while the caller
    /// freed the frame (SwapInThroughEptFaultsRacesEviction read a freed frame under load).
    /// </summary>
    public Action? OnEptFlush;

    public void InvEpt(ulong eptPointer)
    {
        Interlocked.Increment(ref InvEptCount);
        if (!DropEptFlushes)
            Tlb.FlushCpu(ThreadCpu % Cpus);
        OnEptFlush?.Invoke();
    }

    public void FlushRemote(ulong eptPointer, ulong mask)
    {
        Interlocked.Increment(ref RemoteFlushCount);
        if (!DropEptFlushes)
        {
            for (int c = 0; c < Cpus; c++)
            {
                if ((mask & (1UL << c)) != 0)
                    Tlb.FlushCpu(c);
            }
        }
        OnEptFlush?.Invoke();
    }

    public void Dispose()
    {
        _watchingFrames.Dispose();
        _watchingTables.Dispose();
        NativeBufferPool.Return(Memory, Size);
        NativeBufferPool.Return(_tables, (ulong)_tableCapacity * 4096);
    }
}
