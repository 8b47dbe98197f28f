using System;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The sequence/retry protocol that makes a secondary fault serialize against range invalidation
/// (invariant 2, seed 004). Compare KVM's <c>mmu_invalidate_seq</c> / <c>mmu_invalidate_in_progress</c>
/// / <c>mmu_invalidate_retry_gfn</c> and Linux's <c>mmu_interval_read_begin</c>/<c>read_retry</c>.
/// One instance per secondary MMU, protected by that MMU's own lock (its "MMU lock").
/// </summary>
/// <remarks>
/// Rules for using this:
/// <code>
/// // secondary fault                         // notifier callbacks (under MMU lock)
/// seq = s.ReadBegin();                       // InvalidateRangeStart:
/// res = space.ResolveForSecondary(va, ...);  //   s.BeginUnderLock(range); zap entries in range
/// lock(mmuLock);                             // InvalidateRangeEnd:
/// if (s.RetryUnderLock(seq, va, va+4K))      //   s.EndUnderLock();
///     { unlock; release; goto again; }
/// install entry for res.Frame; unlock; release;
/// </code>
/// Why it works: an invalidation whose start ran before our locked check either is still in
/// progress (in-progress count &gt; 0 over an overlapping range: retry) or has ended (the sequence
/// moved past our snapshot: retry). An invalidation whose start runs after our install zaps what we
/// installed. Our snapshot is taken before the resolve, so an invalidation that cleared the primary
/// entry before we read it is seen either by the resolve (page missing or new) or by the sequence.
/// </remarks>
public sealed class InvalidationSequence
{
    private long _sequence;
    private int _inProgress;
    private ulong _rangeStart = ulong.MaxValue;
    private ulong _rangeEnd;

    /// <summary>The current sequence value (for tests and statistics).</summary>
    public long Sequence
    {
        get { return Volatile.Read(ref _sequence); }
    }

    /// <summary>Invalidations between start and end right now (for tests and statistics).</summary>
    public int InProgress
    {
        get { return Volatile.Read(ref _inProgress); }
    }

    /// <summary>
    /// Takes the snapshot a secondary fault later validates. Call before resolving the page
    /// through the primary MMU; no lock needed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long ReadBegin()
    {
        // Acquire: the primary-MMU reads of the resolve that follows cannot move before this read
        // (KVM: smp_rmb() after reading mmu_invalidate_seq). Pairs with the Volatile.Write of
        // _sequence in EndUnderLock, which is ordered after the primary entries were cleared.
        return Volatile.Read(ref _sequence);
    }

    /// <summary>
    /// The check a secondary fault makes under the MMU lock, just before installing an entry
    /// for <c>[start, end)</c>: true means "drop what you resolved and start again".
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool RetryUnderLock(long snapshot, VirtAddr start, VirtAddr end)
    {
        // Under the MMU lock every writer of these fields is excluded; the lock's acquire (CAS in
        // SpinLock.Enter) pairs with the release in SpinLock.Exit after Begin/EndUnderLock.
        if (_inProgress != 0 && start.Value < _rangeEnd && _rangeStart < end.Value)
            return true;
        return _sequence != snapshot;
    }

    /// <summary>
    /// Lockless early-out for a fault that can bail before taking the MMU lock (KVM's
    /// <c>mmu_invalidate_retry_gfn_unsafe</c>). False answers must still be confirmed with
    /// <see cref="RetryUnderLock"/>.
    /// </summary>
    public bool RetryUnsafe(long snapshot, VirtAddr start, VirtAddr end)
    {
        // Read in-progress before the sequence; pairs with the write order in EndUnderLock
        // (sequence bumped before in-progress drops): if we see the drop we also see the bump.
        int inProgress = Volatile.Read(ref _inProgress);
        if (inProgress != 0)
        {
            ulong rs = Volatile.Read(ref _rangeStart);
            ulong re = Volatile.Read(ref _rangeEnd);
            if (start.Value < re && rs < end.Value)
                return true;
        }
        return Volatile.Read(ref _sequence) != snapshot;
    }

    /// <summary>Called by <see cref="IMmuNotifier.InvalidateRangeStart"/> under the MMU lock, before zapping.</summary>
    public void BeginUnderLock(in MmuNotifierRange range)
    {
        // Raise the count before widening the range: a lockless reader that sees the new range
        // also sees the count (pairs with the Volatile.Read order in RetryUnsafe).
        Volatile.Write(ref _inProgress, _inProgress + 1);
        if (_inProgress == 1)
        {
            Volatile.Write(ref _rangeStart, range.Start.Value);
            Volatile.Write(ref _rangeEnd, range.End.Value);
        }
        else
        {
            // Several invalidations in flight: track their union, as KVM does.
            if (range.Start.Value < _rangeStart)
                Volatile.Write(ref _rangeStart, range.Start.Value);
            if (range.End.Value > _rangeEnd)
                Volatile.Write(ref _rangeEnd, range.End.Value);
        }
    }

    /// <summary>Called by <see cref="IMmuNotifier.InvalidateRangeEnd"/> under the MMU lock.</summary>
    public void EndUnderLock()
    {
        if (_inProgress <= 0)
            throw new InvalidOperationException("InvalidationSequence: end without start");
        // Bump the sequence before lowering the count (KVM: seq++; smp_wmb(); in_progress--).
        // Pairs with ReadBegin (a later fault sees the new value) and with the read order in
        // RetryUnsafe.
        Volatile.Write(ref _sequence, _sequence + 1);
        Volatile.Write(ref _inProgress, _inProgress - 1);
        if (_inProgress == 0)
        {
            Volatile.Write(ref _rangeStart, ulong.MaxValue);
            Volatile.Write(ref _rangeEnd, 0UL);
        }
    }
}
