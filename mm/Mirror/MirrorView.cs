using System;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The inspector's view of a VM's memory (invariant 7, seed 003): a read-only mirror of
/// <c>[Start, Start + Pages * 4 KiB)</c> of a source address space, for the monitor and for
/// dumping guest memory. It is a small secondary MMU of its own: it registers its own notifier on
/// the source, populates its entries under the same sequence/retry check as the EPT
/// (<see cref="InvalidationSequence"/>), and zaps them when the source invalidates, so it never
/// shows a page that the primary (and therefore every EPT) no longer maps at that address.
/// </summary>
/// <remarks>
/// <para>The "page table" is a flat array of one entry per page of the range:
/// <c>frame &lt;&lt; 12 | Present | Accessed</c>, or 0. A flat array suffices because the range is
/// fixed at creation: there are no table pages to allocate, link or free, so there is no lifetime
/// rule for lockless walkers beyond the array itself, which lives as long as the view.</para>
/// <para>The "TLB" semantics: a reader never keeps a pointer into a frame. <see cref="TryRead"/>
/// copies each page's bytes while holding the view lock, and
/// <see cref="InvalidateRangeStart"/> zaps under the same lock; the source drops its frame
/// reference only after InvalidateRangeStart returned (invariant 1), so a copy in progress always
/// reads a frame the primary still maps, and no copy starts from a zapped entry. Nothing needs a
/// flush: no reader caches a translation across the lock.</para>
/// <para>Aging: the entries carry an accessed bit that every read sets (the inspector did access
/// the page). Aging reads it with <see cref="Volatile"/> and clears it with one compare-exchange,
/// never a lock, so the view registers with <see cref="MmuNotifierFlags.LocklessAging"/> and the
/// aging walk's fast-only answer stays complete (invariant 4); a failed compare-exchange counts as
/// young. Eviction's exact check sees the same bits (invariant 3).</para>
/// <para>Lock order: the view lock (<c>_lock</c>) is a secondary MMU lock: taken only inside the
/// view's callbacks and in a read after <see cref="IAddressSpace.ResolveForSecondary"/> returned;
/// nothing is taken inside it except the frame copy. See docs/locking.md, "Mirrors".</para>
/// </remarks>
public sealed unsafe class MirrorView<TPlatform> : IMmuNotifier where TPlatform : struct, IMmPlatform
{
    private const ulong Present = 1UL;
    private const ulong Accessed = 1UL << 1;
    private const ulong FrameMask = ~0xFFFUL;

    private readonly TPlatform _platform;
    private readonly IAddressSpace _source;
    private readonly MmuNotifierList<TPlatform> _notifiers;
    private readonly VirtAddr _start;
    private readonly VirtAddr _end;
    private readonly ulong[] _entries;
    private readonly InvalidationSequence _seq = new InvalidationSequence();
    private SpinLock _lock;
    private int _dead;
    private long _populated;
    private long _invalidations;
    private long _zapped;
    private long _retries;

    private MirrorView(TPlatform platform, IAddressSpace source, MmuNotifierList<TPlatform> notifiers, VirtAddr start, int pages)
    {
        _platform = platform;
        _source = source;
        _notifiers = notifiers;
        _start = start;
        _end = start + ((ulong)pages << PageSizes.Shift4K);
        _entries = new ulong[pages];
    }

    /// <summary>
    /// Creates a view of <paramref name="pages"/> pages from <paramref name="start"/> (4 KiB aligned)
    /// of <paramref name="source"/> and registers it on <paramref name="notifiers"/> (the source's
    /// list). Null when the source is dying (nothing registered).
    /// </summary>
    public static MirrorView<TPlatform>? Create(TPlatform platform, IAddressSpace source, MmuNotifierList<TPlatform> notifiers, VirtAddr start, int pages)
    {
        if (pages <= 0 || !start.IsAligned(PageSizes.Size4K))
            throw new ArgumentException("MirrorView: empty or unaligned range");
        MirrorView<TPlatform> view = new MirrorView<TPlatform>(platform, source, notifiers, start, pages);
        // Register before the first populate: Register returns after every invalidation that could
        // have missed us ended, so our sequence snapshots are taken after it.
        if (!notifiers.Register(view, MmuNotifierFlags.LocklessAging))
            return null;
        return view;
    }

    /// <summary>First mirrored address.</summary>
    public VirtAddr Start { get { return _start; } }

    /// <summary>One past the last mirrored address.</summary>
    public VirtAddr End { get { return _end; } }

    /// <summary>True once <see cref="Release"/> ran (source dying, or <see cref="Destroy"/>): reads fail with Dead.</summary>
    public bool IsReleased { get { return Volatile.Read(ref _dead) != 0; } }

    /// <summary>Pages installed by reads (each populate counts once).</summary>
    public long PagesPopulated { get { return Volatile.Read(ref _populated); } }

    /// <summary>Invalidations received that overlapped the view's range.</summary>
    public long Invalidations { get { return Volatile.Read(ref _invalidations); } }

    /// <summary>Entries zapped by invalidations and the release.</summary>
    public long PagesZapped { get { return Volatile.Read(ref _zapped); } }

    /// <summary>Populates that dropped what they resolved and started again (the sequence check said so).</summary>
    public long Retries { get { return Volatile.Read(ref _retries); } }

    /// <summary>The invalidation sequence (read-only use: tests and statistics).</summary>
    public InvalidationSequence Sequence { get { return _seq; } }

    /// <summary>The frame the view maps at <paramref name="at"/> right now, if any (tests, the monitor).</summary>
    public bool TryGetMapped(VirtAddr at, out Pfn frame)
    {
        frame = default;
        if (at < _start || at >= _end)
            return false;
        ulong e = Volatile.Read(ref _entries[(int)((at - _start) >> PageSizes.Shift4K)]);
        if ((e & Present) == 0)
            return false;
        frame = new PhysAddr(e & FrameMask).Pfn;
        return true;
    }

    /// <summary>
    /// Copies <c>into.Length</c> bytes from <paramref name="at"/> through the view, populating missing
    /// entries from the source (which faults missing pages in, as a guest access would). Returns
    /// <see cref="FaultStatus.NoRegion"/> when the range leaves the view (nothing copied), Dead after
    /// the release, or the source's failure for the first page it could not resolve (the bytes before
    /// it are copied).
    /// </summary>
    public FaultStatus TryRead(VirtAddr at, Span<byte> into)
    {
        if (at < _start || at >= _end || (ulong)into.Length > _end - at)
            return FaultStatus.NoRegion;
        // A user reference keeps the source's page tables while we resolve through them.
        if (!_source.TryGetUser())
            return FaultStatus.Dead;
        FaultStatus status = FaultStatus.Ok;
        int done = 0;
        while (done < into.Length)
        {
            VirtAddr va = at + (ulong)done;
            int offset = (int)(va.Value & (PageSizes.Size4K - 1));
            int chunk = Math.Min(into.Length - done, (int)PageSizes.Size4K - offset);
            status = ReadPage(va.AlignDown(PageSizes.Size4K), offset, into.Slice(done, chunk));
            if (status != FaultStatus.Ok)
                break;
            done += chunk;
        }
        _source.PutUser();
        return status;
    }

    private FaultStatus ReadPage(VirtAddr page, int offset, Span<byte> into)
    {
        int index = (int)((page - _start) >> PageSizes.Shift4K);
        while (true)
        {
            // Fast path: the entry is present; copy under the lock (the zap waits for us).
            _lock.Enter(_platform);
            if (_dead != 0)
            {
                _lock.Exit(_platform);
                return FaultStatus.Dead;
            }
            ulong e = _entries[index];
            if ((e & Present) != 0)
            {
                CopyLocked(index, e, offset, into);
                _lock.Exit(_platform);
                return FaultStatus.Ok;
            }
            _lock.Exit(_platform);

            // Populate: snapshot, resolve through the primary with no lock held, check and install.
            long seq = _seq.ReadBegin();
            _platform.Checkpoint(MmCheckpoint.SequenceRead);
            FaultStatus status = _source.ResolveForSecondary(page, false, out ResolvedPage resolved);
            if (status != FaultStatus.Ok)
                return status;
            _lock.Enter(_platform);
            bool dead = _dead != 0;
            bool retry = dead || _seq.RetryUnderLock(seq, page, page + PageSizes.Size4K);
            if (!retry)
            {
                ulong entry = (resolved.Frame.Value << PageSizes.Shift4K) | Present;
                // Interlocked: lockless aging may compare-exchange a present entry's A bit (never
                // an absent one, so this store cannot lose an update; Exchange for the barrier).
                Interlocked.Exchange(ref _entries[index], entry);
                CopyLocked(index, entry, offset, into);
            }
            _lock.Exit(_platform);
            _platform.Checkpoint(MmCheckpoint.SecondaryInstallDone);
            _source.ReleaseResolved(resolved);
            if (dead)
                return FaultStatus.Dead;
            if (!retry)
            {
                Interlocked.Increment(ref _populated);
                return FaultStatus.Ok;
            }
            Interlocked.Increment(ref _retries);
            _platform.Checkpoint(MmCheckpoint.SecondaryRetry);
            // An invalidation of our page is in flight or just ended: let it finish.
            _platform.SpinPause();
        }
    }

    /// <summary>Copies from the frame of a present entry and sets its accessed bit. View lock held.</summary>
    private void CopyLocked(int index, ulong entry, int offset, Span<byte> into)
    {
        if ((entry & Accessed) == 0)
        {
            // Atomic: lockless aging clears A with a compare-exchange outside the lock.
            Interlocked.Or(ref _entries[index], Accessed);
        }
        byte* bytes = _platform.PhysToVirt(new PhysAddr(entry & FrameMask)) + offset;
        new Span<byte>(bytes, into.Length).CopyTo(into);
    }

    /// <summary>
    /// Destroys the view: unregisters it from the source (which calls <see cref="Release"/>: every
    /// entry is dropped). Returns after no callback of the view runs any more. Do not call from a
    /// notifier callback of the source. False if it was already released by the source's teardown.
    /// </summary>
    public bool Destroy()
    {
        return _notifiers.Unregister(this);
    }

    /// <inheritdoc/>
    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        _lock.Enter(_platform);
        // Raised even after the release: Start and End must stay paired.
        _seq.BeginUnderLock(range);
        if (range.Overlaps(_start, _end))
        {
            _invalidations++;
            ZapLocked(range.Start, range.End);
        }
        _lock.Exit(_platform);
    }

    /// <inheritdoc/>
    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        _lock.Enter(_platform);
        _seq.EndUnderLock();
        _lock.Exit(_platform);
    }

    /// <summary>Drops the entries of <c>[start, end)</c> (clipped to the view). View lock held.</summary>
    private void ZapLocked(VirtAddr start, VirtAddr end)
    {
        VirtAddr from = start > _start ? start : _start;
        VirtAddr to = end < _end ? end : _end;
        if (from >= to)
            return;
        int first = (int)((from - _start) >> PageSizes.Shift4K);
        int last = (int)((to - _start + PageSizes.Size4K - 1) >> PageSizes.Shift4K);
        long zapped = 0;
        for (int i = first; i < last; i++)
        {
            // Exchange: lockless aging may be clearing A in this entry. The view never writes, so
            // there is no dirty bit to carry to the frame.
            if (Interlocked.Exchange(ref _entries[i], 0UL) != 0)
                zapped++;
        }
        if (zapped != 0)
            Interlocked.Add(ref _zapped, zapped);
    }

    /// <inheritdoc/>
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        // Nothing to flush: no reader caches an entry across the view lock.
        return Age(start, end, true);
    }

    /// <inheritdoc/>
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        return Age(start, end, true);
    }

    /// <inheritdoc/>
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end)
    {
        return Age(start, end, false);
    }

    /// <inheritdoc/>
    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear)
    {
        return Age(start, end, clear);
    }

    /// <summary>
    /// Lockless aging of the entries in <c>[start, end)</c>: one read per entry and, for an
    /// accessed one, at most one compare-exchange, no retry (a failure means a read or a zap
    /// changed it: young). Deterministic and bounded, as invariant 4 asks of the fast path.
    /// </summary>
    private bool Age(VirtAddr start, VirtAddr end, bool clear)
    {
        VirtAddr from = start > _start ? start : _start;
        VirtAddr to = end < _end ? end : _end;
        if (from >= to)
            return false;
        int first = (int)((from - _start) >> PageSizes.Shift4K);
        int last = (int)((to - _start + PageSizes.Size4K - 1) >> PageSizes.Shift4K);
        bool young = false;
        for (int i = first; i < last; i++)
        {
            // Pairs with the Interlocked.Or in CopyLocked and the Exchange in ZapLocked.
            ulong e = Volatile.Read(ref _entries[i]);
            if ((e & (Present | Accessed)) != (Present | Accessed))
                continue;
            young = true;
            if (clear)
                Interlocked.CompareExchange(ref _entries[i], e & ~Accessed, e);
        }
        return young;
    }

    /// <summary>
    /// The source is dying or the view is being destroyed: refuse populates (under the lock, so a
    /// populate either installed before and is zapped here, or sees the flag) and drop every entry.
    /// Callbacks that arrive later find nothing to zap; reads fail with Dead.
    /// </summary>
    public void Release(IAddressSpace space)
    {
        _lock.Enter(_platform);
        _dead = 1;
        ZapLocked(_start, _end);
        _lock.Exit(_platform);
    }
}
