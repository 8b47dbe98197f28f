using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The generations of anonymous pages (compare Linux's multi-generational LRU, <c>lru_gen_folio</c>):
/// a sliding window of sequence numbers <c>MinSeq..MaxSeq</c> (at most <see cref="MaxGenerations"/>),
/// one doubly linked list per generation, threaded through per-frame links (the same role as
/// fields of <see cref="FrameRecord"/>, kept in arrays of this class indexed by frame number so
/// the record itself is unchanged). New pages enter the youngest generation (<c>MaxSeq</c>) at the
/// head; eviction takes from the tail of the oldest (<c>MinSeq</c>).
/// </summary>
/// <remarks>
/// <para>One lock, <c>_lock</c>, protects the links, the per-generation counts, <c>MinSeq</c>,
/// <c>MaxSeq</c> and the shadow table. Lock order (docs/locking.md): it is taken inside an
/// address space's page-table lock (a page enters when <c>InstallAnonymous</c> installs it and
/// leaves when the reverse map drops its last mapping) and takes no lock inside; it is never
/// held together with the reverse-map lock or a frame-cache lock.</para>
/// <para>Invariant: a frame is on a list (exactly one) iff it was installed as anonymous memory,
/// still has a mapping, and is not isolated by an eviction in progress. Listed implies mapped,
/// and mapped implies a reference held by the mapping, so a frame found on a list under the lock
/// can be given a reference with <c>GetRef</c>.</para>
/// </remarks>
public sealed class LruGenerations<TPlatform> where TPlatform : struct, IMmPlatform
{
    /// <summary>Generations the window may hold (MGLRU's MAX_NR_GENS).</summary>
    public const int MaxGenerations = 4;
    /// <summary>Eviction never takes from the two youngest generations (MGLRU's MIN_NR_GENS).</summary>
    public const int MinGenerations = 2;
    private const int ShadowSize = 4096;

    private readonly TPlatform _platform;
    private readonly FrameDatabase<TPlatform> _frames;
    private readonly int[] _next;
    private readonly int[] _prev;
    private readonly int[] _seq;
    /// <summary>1 for the head of a tracked 2 MiB page: it stands for 512 pages in the counts.</summary>
    private readonly byte[] _huge;
    private readonly int[] _head = new int[MaxGenerations];
    private readonly int[] _tail = new int[MaxGenerations];
    private readonly int[] _count = new int[MaxGenerations];
    private readonly ulong[] _shadowKey = new ulong[ShadowSize];
    private readonly int[] _shadowSeq = new int[ShadowSize];
    private readonly long[] _shadowStamp = new long[ShadowSize];
    private int _minSeq;
    private int _maxSeq;
    private int _listed;
    private SpinLock _lock;

    /// <summary>Global counters.</summary>
    public readonly LruStats Stats = new LruStats();

    /// <summary>Look-around on (default). Off: eviction promotes only the page it checked.</summary>
    public bool LookAround = true;

    /// <summary>
    /// The aging walk skips last-level tables that neither look-around nor the previous walk found
    /// dense (default on; MGLRU's Bloom filter). Off: every walk looks at every table.
    /// </summary>
    public bool FilteredWalk = true;

    /// <summary>
    /// Young pages (out of the present ones) that make a table dense: young * DenseDivisor &gt;= present
    /// (MGLRU's <c>suitable_to_scan</c> uses 1/64 of a batch; 1/8 here).
    /// </summary>
    public int DenseDivisor = 8;

    internal LruGenerations(TPlatform platform, FrameDatabase<TPlatform> frames)
    {
        _platform = platform;
        _frames = frames;
        int n = frames.FrameCount;
        _next = new int[n];
        _prev = new int[n];
        _seq = new int[n];
        _huge = new byte[n];
        for (int i = 0; i < n; i++)
        {
            _next[i] = -1;
            _prev[i] = -1;
            _seq[i] = -1;
        }
        for (int g = 0; g < MaxGenerations; g++)
        {
            _head[g] = -1;
            _tail[g] = -1;
        }
    }

    /// <summary>The youngest generation's sequence number.</summary>
    public int MaxSeq { get { return Volatile.Read(ref _maxSeq); } }

    /// <summary>The oldest generation's sequence number.</summary>
    public int MinSeq { get { return Volatile.Read(ref _minSeq); } }

    /// <summary>Pages on all lists (a tracked 2 MiB page counts 512).</summary>
    public int Listed { get { return Volatile.Read(ref _listed); } }

    /// <summary>Pages on the list of generation <paramref name="seq"/> (0 outside the window).</summary>
    public int PagesIn(int seq)
    {
        _lock.EnterQuiet(_platform);
        int n = seq >= _minSeq && seq <= _maxSeq ? _count[seq & (MaxGenerations - 1)] : 0;
        _lock.ExitQuiet(_platform);
        return n;
    }

    /// <summary>The generation <paramref name="frame"/> is on, -1 when it is on no list.</summary>
    public int GenerationOf(Pfn frame) { return Volatile.Read(ref _seq[(int)frame.Value]); }

    /// <summary>True when aging may create a new generation (the window is not full).</summary>
    public bool HasRoom { get { return MaxSeq - MinSeq + 1 < MaxGenerations; } }

    private void LinkHeadLocked(int f, int seq)
    {
        int g = seq & (MaxGenerations - 1);
        _seq[f] = seq;
        _prev[f] = -1;
        _next[f] = _head[g];
        if (_head[g] >= 0)
            _prev[_head[g]] = f;
        else
            _tail[g] = f;
        _head[g] = f;
        int weight = Weight(f);
        _count[g] += weight;
        _listed += weight;
    }

    /// <summary>Pages one list entry stands for: 512 for a tracked 2 MiB page's head, else 1.</summary>
    private int Weight(int f)
    {
        return _huge[f] != 0 ? FrameDatabase<TPlatform>.HugeFrames : 1;
    }

    private void UnlinkLocked(int f)
    {
        int g = _seq[f] & (MaxGenerations - 1);
        int p = _prev[f];
        int n = _next[f];
        if (p >= 0)
            _next[p] = n;
        else
            _head[g] = n;
        if (n >= 0)
            _prev[n] = p;
        else
            _tail[g] = p;
        _next[f] = -1;
        _prev[f] = -1;
        _seq[f] = -1;
        int weight = Weight(f);
        _count[g] -= weight;
        _listed -= weight;
    }

    private static ulong ShadowKey(int spaceId, VirtAddr page)
    {
        return ((ulong)(uint)spaceId << 36) ^ (page.Value >> 12) ^ 0x8000_0000_0000_0000UL;
    }

    private static int ShadowSlot(ulong key)
    {
        return (int)((key * 0x9E3779B97F4A7C15UL) >> 52);
    }

    /// <summary>
    /// A page was installed as anonymous memory of <paramref name="space"/> at <paramref name="page"/>:
    /// it enters the youngest generation. If the shadow table remembers an eviction of that
    /// (space, page), the install is a refault: the distances are recorded and the shadow dropped.
    /// Caller holds the space's page-table lock; the page is mapped (reverse-map entry added).
    /// </summary>
    /// <paramref name="huge"/>: the head of a tracked 2 MiB page, one entry that counts 512 pages
    /// (the shadow is that of its first page).
    internal void Add(Pfn frame, AddressSpace<TPlatform> space, VirtAddr page, bool huge = false)
    {
        int f = (int)frame.Value;
        ulong key = ShadowKey(space.Id, page);
        int slot = ShadowSlot(key);
        _lock.EnterQuiet(_platform);
        if (_seq[f] < 0)
        {
            _huge[f] = huge ? (byte)1 : (byte)0;
            LinkHeadLocked(f, _maxSeq);
        }
        bool refault = _shadowKey[slot] == key;
        long generations = 0;
        long evictions = 0;
        if (refault)
        {
            _shadowKey[slot] = 0;
            generations = _maxSeq - _shadowSeq[slot];
            evictions = Volatile.Read(ref Stats._evictions) - _shadowStamp[slot];
        }
        _lock.ExitQuiet(_platform);
        if (refault)
        {
            LruStats s = space.Lru.Stats;
            LruStats.Add(ref Stats._refaults, 1);
            LruStats.Add(ref Stats._refaultGenerationDistance, generations);
            LruStats.Add(ref Stats._refaultEvictionDistance, evictions);
            LruStats.Add(ref s._refaults, 1);
            LruStats.Add(ref s._refaultGenerationDistance, generations);
            LruStats.Add(ref s._refaultEvictionDistance, evictions);
        }
    }

    /// <summary>The last mapping of <paramref name="frame"/> is gone: it leaves its list (no-op if on none).
    /// Caller holds a page-table lock (not the reverse-map lock).</summary>
    internal void Remove(Pfn frame)
    {
        int f = (int)frame.Value;
        _lock.EnterQuiet(_platform);
        if (_seq[f] >= 0)
            UnlinkLocked(f);
        _huge[f] = 0;
        _lock.ExitQuiet(_platform);
    }

    /// <summary>
    /// A tracked 2 MiB page whose head is <paramref name="head"/> was split: its entry becomes 512
    /// entries of one page each, on the head's generation (or, when the head is isolated by an
    /// eviction, on <paramref name="isolatedSeq"/>, clamped to the window; the head itself goes
    /// back with the eviction's putback). The counts do not change. Caller holds the page-table
    /// lock of the mapping (not the reverse-map lock).
    /// </summary>
    internal void SplitHuge(Pfn head, int isolatedSeq)
    {
        int h = (int)head.Value;
        _lock.EnterQuiet(_platform);
        int seq = _seq[h];
        if (seq >= 0)
        {
            int g = seq & (MaxGenerations - 1);
            _count[g] -= FrameDatabase<TPlatform>.HugeFrames - 1;
            _listed -= FrameDatabase<TPlatform>.HugeFrames - 1;
        }
        else
        {
            seq = isolatedSeq < _minSeq ? _minSeq : isolatedSeq > _maxSeq ? _maxSeq : isolatedSeq;
        }
        _huge[h] = 0;
        for (int i = 1; i < FrameDatabase<TPlatform>.HugeFrames; i++)
        {
            if (_seq[h + i] < 0)
            {
                _huge[h + i] = 0;
                LinkHeadLocked(h + i, seq);
            }
        }
        _lock.ExitQuiet(_platform);
    }

    /// <summary>Moves each listed frame of <paramref name="frames"/> to the youngest generation (one lock round).
    /// Returns how many moved (frames already there or on no list are skipped).</summary>
    internal unsafe int PromoteBatch(Pfn* frames, int count)
    {
        int moved = 0;
        _lock.EnterQuiet(_platform);
        int max = _maxSeq;
        for (int i = 0; i < count; i++)
        {
            int f = (int)frames[i].Value;
            if (_seq[f] < 0 || _seq[f] == max)
                continue;
            UnlinkLocked(f);
            LinkHeadLocked(f, max);
            moved++;
        }
        _lock.ExitQuiet(_platform);
        return moved;
    }

    /// <summary>Moves <paramref name="frame"/> to the youngest generation if it is listed.</summary>
    internal unsafe bool Promote(Pfn frame)
    {
        return PromoteBatch(&frame, 1) == 1;
    }

    /// <summary>
    /// Takes the oldest page off its list for eviction (MGLRU's isolation) with a reference for the
    /// caller. Advances <c>MinSeq</c> past empty generations while more than
    /// <see cref="MinGenerations"/> exist. False when only the two youngest generations are left
    /// (eviction needs an aging pass first).
    /// </summary>
    internal bool TryIsolateOldest(out Pfn frame, out int seq)
    {
        _lock.EnterQuiet(_platform);
        while (_maxSeq - _minSeq + 1 > MinGenerations)
        {
            int g = _minSeq & (MaxGenerations - 1);
            int f = _tail[g];
            if (f < 0)
            {
                // Release: readers of MinSeq outside the lock only use it as a hint.
                Volatile.Write(ref _minSeq, _minSeq + 1);
                continue;
            }
            seq = _minSeq;
            UnlinkLocked(f);
            frame = new Pfn((ulong)f);
            // Listed implies mapped implies the mapping's reference: the count is not 0.
            _frames.GetRef(frame);
            _lock.ExitQuiet(_platform);
            return true;
        }
        _lock.ExitQuiet(_platform);
        frame = default;
        seq = 0;
        return false;
    }

    /// <summary>
    /// Puts an isolated page back on generation <paramref name="seq"/> (clamped to the window) if
    /// it still has a mapping. The map count is read under this lock: an unmap that dropped the
    /// last mapping either comes later (its <see cref="Remove"/> takes the page off again) or its
    /// count decrement is visible here (it happened before its Remove took this lock).
    /// </summary>
    internal void Putback(Pfn frame, int seq)
    {
        int f = (int)frame.Value;
        _lock.EnterQuiet(_platform);
        if (_seq[f] < 0 && _frames.MapCountOf(frame) > 0)
        {
            if (seq < _minSeq)
                seq = _minSeq;
            if (seq > _maxSeq)
                seq = _maxSeq;
            LinkHeadLocked(f, seq);
        }
        _lock.ExitQuiet(_platform);
    }

    /// <summary>Creates generation <c>MaxSeq + 1</c> if the window has room. Returns the new MaxSeq, or -1.</summary>
    internal int TryIncMaxSeq()
    {
        _lock.EnterQuiet(_platform);
        int result = -1;
        if (_maxSeq - _minSeq + 1 < MaxGenerations)
        {
            // The new slot is empty: it lies outside the window, and MinSeq only passes empty lists.
            Volatile.Write(ref _maxSeq, _maxSeq + 1);
            result = _maxSeq;
        }
        _lock.ExitQuiet(_platform);
        return result;
    }

    /// <summary>Remembers that (space, page) was evicted from generation <paramref name="seq"/> (lossy:
    /// one slot per hash; a collision overwrites an older shadow).</summary>
    internal void RecordEviction(int spaceId, VirtAddr page, int seq)
    {
        ulong key = ShadowKey(spaceId, page);
        int slot = ShadowSlot(key);
        _lock.EnterQuiet(_platform);
        _shadowKey[slot] = key;
        _shadowSeq[slot] = seq;
        _shadowStamp[slot] = Volatile.Read(ref Stats._evictions);
        _lock.ExitQuiet(_platform);
    }

    /// <summary>Forgets the shadow of (space, page) (its eviction did not happen after all).</summary>
    internal void ForgetEviction(int spaceId, VirtAddr page)
    {
        ulong key = ShadowKey(spaceId, page);
        int slot = ShadowSlot(key);
        _lock.EnterQuiet(_platform);
        if (_shadowKey[slot] == key)
            _shadowKey[slot] = 0;
        _lock.ExitQuiet(_platform);
    }

    /// <summary>
    /// Checks the lists under the lock (tests, assertions): every link is mutual, every frame is on
    /// the list its generation names, inside the window, once; each list's length equals its count;
    /// the counts add up to <see cref="Listed"/>. Returns the number of listed frames, or a
    /// negative code naming the first broken rule.
    /// </summary>
    public int Validate()
    {
        _lock.EnterQuiet(_platform);
        int result = ValidateLocked();
        _lock.ExitQuiet(_platform);
        return result;
    }

    private int ValidateLocked()
    {
        int total = 0;
        for (int g = 0; g < MaxGenerations; g++)
        {
            int n = 0;
            int prev = -1;
            for (int f = _head[g]; f >= 0; f = _next[f])
            {
                if (_prev[f] != prev)
                    return -1;
                if ((_seq[f] & (MaxGenerations - 1)) != g || _seq[f] < _minSeq || _seq[f] > _maxSeq)
                    return -2;
                n += Weight(f);
                if (n > _listed)
                    return -3;
                prev = f;
            }
            if (_tail[g] != prev)
                return -4;
            if (n != _count[g])
                return -5;
            total += n;
        }
        if (total != _listed)
            return -6;
        return total;
    }
}
