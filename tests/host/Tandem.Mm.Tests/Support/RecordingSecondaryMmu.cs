using System;
using System.Collections.Concurrent;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;

namespace Tandem.Mm.Tests;

/// <summary>
/// A model secondary MMU (a tiny "EPT" over a window of an address space) that follows the
/// notifier protocol and checks, on every callback, that it holds no mapping of a dead page.
/// Entries are longs: 0 = none, else frame &lt;&lt; 12 | P | W | A | D, changed with Interlocked
/// (so fast aging is lockless, as for EPT).
/// </summary>
public sealed class RecordingSecondaryMmu : IMmuNotifier
{
    public const long P = 1, W = 2, A = 0x20, D = 0x40;

    private readonly AddressSpace<HostPlatform> _space;
    private readonly MemoryManager<HostPlatform> _mm;
    private readonly ulong _base;
    private readonly long[] _entries;
    private readonly TestSpinLock _mmuLock = new();
    public readonly InvalidationSequence Seq = new();

    /// <summary>Mutation switch for the meta-tests: false skips the retry check.</summary>
    public bool CheckRetry = true;
    /// <summary>Check on every callback that entries outside the range still match the primary
    /// exactly (valid only when no other teardown can be in flight: single-threaded tests).</summary>
    public bool StrictCallbackChecks;

    public long Starts, Ends, Installs, Retries, Releases;
    public int Violations;
    public readonly ConcurrentQueue<string> Messages = new();

    public RecordingSecondaryMmu(AddressSpace<HostPlatform> space, VirtAddr windowBase, int pages)
    {
        _space = space;
        _mm = space.Manager;
        _base = windowBase.Value;
        _entries = new long[pages];
    }

    public int Pages => _entries.Length;

    public long Entry(int index) => Volatile.Read(ref _entries[index]);

    private int IndexOf(VirtAddr va) => (int)((va.Value - _base) >> 12);

    private VirtAddr AddressOf(int index) => new VirtAddr(_base + ((ulong)index << 12));

    /// <summary>A secondary fault: the protocol of invariant 2.</summary>
    public FaultStatus Fault(VirtAddr va, bool write)
    {
        VirtAddr page = va.AlignDown(PageSizes.Size4K);
        int i = IndexOf(page);
        while (true)
        {
            long seq = Seq.ReadBegin();
            HostMachine.ThreadCheckpoint?.Invoke(MmCheckpoint.SequenceRead);
            FaultStatus status = _space.ResolveForSecondary(page, write, out ResolvedPage resolved);
            if (status != FaultStatus.Ok)
                return status;
            bool installed = false;
            using (_mmuLock.Hold())
            {
                if (!(CheckRetry && Seq.RetryUnderLock(seq, page, page + PageSizes.Size4K)))
                {
                    long e = ((long)resolved.Frame.Value << 12) | P | A | (resolved.Writable ? W : 0) | (write ? D : 0);
                    long old = Interlocked.Exchange(ref _entries[i], e);
                    if ((old & D) != 0 && (old >> 12) != (e >> 12))
                        _space.MarkFrameDirty(new Pfn((ulong)old >> 12));
                    installed = true;
                    Installs++;
                }
            }
            HostMachine.ThreadCheckpoint?.Invoke(MmCheckpoint.SecondaryInstallDone);
            _space.ReleaseResolved(resolved);
            if (installed)
                return FaultStatus.Ok;
            Interlocked.Increment(ref Retries);
            HostMachine.ThreadCheckpoint?.Invoke(MmCheckpoint.SecondaryRetry);
        }
    }

    /// <summary>A guest access through the secondary MMU (sets A, and D on a write, like the CPU).
    /// Faults when the entry is missing or read-only.</summary>
    public void Access(VirtAddr va, bool write)
    {
        int i = IndexOf(va);
        while (true)
        {
            long e = Volatile.Read(ref _entries[i]);
            if (e == 0 || (write && (e & W) == 0))
            {
                if (Fault(va, write) != FaultStatus.Ok)
                    return;
                continue;
            }
            long n = e | A | (write ? D : 0);
            if (n == e || Interlocked.CompareExchange(ref _entries[i], n, e) == e)
                return;
        }
    }

    /// <summary>What a guest does with a frame while its access through this MMU is in flight.</summary>
    public delegate void FrameAccess(Pfn frame);

    /// <summary>
    /// A guest access that uses the frame while holding the MMU lock, so an invalidation (which
    /// zaps under the same lock) waits until the access is over, as a real EPT's zap waits for
    /// the vCPU through its TLB flush. Sets A, and D on a write (what the zap carries to the
    /// frame), then runs <paramref name="body"/> on the mapped frame. False, with nothing done,
    /// when the entry is missing or read-only for a write (the caller faults and tries again).
    /// </summary>
    public bool TryAccessLocked(VirtAddr va, bool write, FrameAccess body)
    {
        int i = IndexOf(va.AlignDown(PageSizes.Size4K));
        using (_mmuLock.Hold())
        {
            while (true)
            {
                long e = Volatile.Read(ref _entries[i]);
                if (e == 0 || (write && (e & W) == 0))
                    return false;
                long n = e | A | (write ? D : 0);
                // CAS: lockless aging clears A without the lock.
                if (n != e && Interlocked.CompareExchange(ref _entries[i], n, e) != e)
                    continue;
                body(new Pfn((ulong)e >> 12));
                return true;
            }
        }
    }

    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        Interlocked.Increment(ref Starts);
        using (_mmuLock.Hold())
        {
            Seq.BeginUnderLock(range);
            ForEachInRange(range.Start, range.End, (i, va) =>
            {
                long old = Interlocked.Exchange(ref _entries[i], 0);
                if ((old & D) != 0)
                    _space.MarkFrameDirty(new Pfn((ulong)old >> 12));
            });
            // Under the MMU lock: no zap (and so no reference drop that follows a zap) can run
            // between reading an entry and reading its frame's count.
            CheckAll(range.Start, range.End, "InvalidateRangeStart");
        }
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        Interlocked.Increment(ref Ends);
        using (_mmuLock.Hold())
        {
            Seq.EndUnderLock();
            CheckAll(range.Start, range.End, "InvalidateRangeEnd");
        }
    }

    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => ClearYoung(space, start, end);

    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        using (_mmuLock.Hold())
            return TestClearYoungFastOnly(space, start, end, true);
    }

    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => TestClearYoungFastOnly(space, start, end, false);

    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        bool young = false;
        ForEachInRange(start, end, (i, va) =>
        {
            long e = Volatile.Read(ref _entries[i]);
            if ((e & A) == 0)
                return;
            young = true;
            if (clear)
                Interlocked.And(ref _entries[i], ~A);
        });
        return young;
    }

    public void Release(IAddressSpace space)
    {
        Interlocked.Increment(ref Releases);
        using (_mmuLock.Hold())
        {
            for (int i = 0; i < _entries.Length; i++)
            {
                // Dirty bits carried over, as every zap does (EptMmu.Release does the same): a page
                // written only through this MMU must not be dropped as clean later.
                long old = Interlocked.Exchange(ref _entries[i], 0);
                if ((old & D) != 0)
                    _space.MarkFrameDirty(new Pfn((ulong)old >> 12));
            }
        }
    }

    private void ForEachInRange(VirtAddr start, VirtAddr end, Action<int, VirtAddr> body)
    {
        ulong s = Math.Max(start.Value, _base);
        ulong e = Math.Min(end.Value, _base + ((ulong)_entries.Length << 12));
        for (ulong va = s & ~0xFFFUL; va < e; va += 4096)
            body(IndexOf(new VirtAddr(va)), new VirtAddr(va));
    }

    /// <summary>
    /// The per-callback check: outside the range being invalidated, no entry may map a frame that
    /// is free (reference count 0: the corruption of invariant 1). In strict mode, every such entry
    /// must also map exactly what the primary maps now.
    /// </summary>
    private void CheckAll(VirtAddr skipStart, VirtAddr skipEnd, string where)
    {
        for (int i = 0; i < _entries.Length; i++)
        {
            VirtAddr va = AddressOf(i);
            if (va >= skipStart && va < skipEnd)
                continue;
            long e = Volatile.Read(ref _entries[i]);
            if (e == 0)
                continue;
            Pfn f = new Pfn((ulong)e >> 12);
            if (_mm.Frames.RefCountOf(f) <= 0)
                Violation(where + ": secondary maps freed frame " + f.Value + " at " + va.Value.ToString("x"));
            else if (StrictCallbackChecks)
                CheckMatchesPrimary(i, e, where);
        }
    }

    /// <summary>At a quiescent point: every entry maps what the primary maps now, with no more rights.</summary>
    public void CheckQuiescent(string where)
    {
        for (int i = 0; i < _entries.Length; i++)
        {
            long e = Volatile.Read(ref _entries[i]);
            if (e != 0)
                CheckMatchesPrimary(i, e, where);
        }
    }

    private void CheckMatchesPrimary(int i, long e, string where)
    {
        VirtAddr va = AddressOf(i);
        Pfn f = new Pfn((ulong)e >> 12);
        if (!_space.TranslateFrame(va, out Pfn primary))
            Violation(where + ": secondary maps " + va.Value.ToString("x") + " -> " + f.Value + " but the primary entry is gone");
        else if (primary != f)
            Violation(where + ": secondary maps " + va.Value.ToString("x") + " -> " + f.Value + " but the primary maps " + primary.Value);
        else if ((e & W) != 0 && !(_space.Translate(va, out PageTableEntry leaf, out int _) && leaf.IsWritable))
            Violation(where + ": secondary writable at " + va.Value.ToString("x") + " but the primary is read-only");
    }

    private void Violation(string message)
    {
        Interlocked.Increment(ref Violations);
        if (Messages.Count < 20)
            Messages.Enqueue(message);
    }
}
