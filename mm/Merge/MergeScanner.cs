using System.Threading;

namespace Tandem.Mm;

/// <summary>What one merge attempt came to.</summary>
internal enum MergeResult
{
    /// <summary>The page now maps the shared frame.</summary>
    Merged,
    /// <summary>The first compare found different contents: nothing was touched.</summary>
    Mismatch,
    /// <summary>The page could not be write-protected (entry changed, or other mappings).</summary>
    Refused,
    /// <summary>Write-protected, then abandoned: the page changed (second compare, or entry).</summary>
    Aborted,
}

/// <summary>
/// The page-merging scanner (compare Linux's KSM, <c>ksm_do_scan</c>): walks the mergeable
/// anonymous regions of every live address space, a few pages per <see cref="ScanStep"/>, hashes
/// each mapped page and merges pages with identical contents into one shared, read-only frame
/// (<see cref="FrameFlags.Merged"/>); all-zero pages merge into one shared zero frame. A write to a
/// shared page takes a copy-on-write fault that gives that one mapping a private copy
/// (<c>AddressSpace.BreakCow</c>). Protocol and invariants: docs/reclaim.md, "Page merging".
/// </summary>
/// <remarks>
/// <para>Candidates live in one fixed-size, open-addressed table allocated at construction (no
/// allocation per step, no collections): an entry is either a stable frame (shared already: its
/// contents never change) or an unstable page (space, address, frame) seen in the current pass.
/// Unstable entries expire at the end of a pass (Linux rebuilds its unstable tree every pass).
/// Entries hold no references: a stable entry is checked with <c>TryGetRef</c> and the
/// <see cref="FrameFlags.Merged"/> flag before use, an unstable one by walking its space again;
/// whatever the table says, every merge is decided by a byte-for-byte compare.</para>
/// <para>One scan step runs at a time (a second caller returns 0 at once): the scanner is the only
/// one that adds mappings of merged frames, which the demotion of a failed candidate relies on.
/// It takes no lock of its own; the page-table, reverse-map and LRU locks are taken inside the
/// address-space calls, never two page-table locks at once.</para>
/// </remarks>
public sealed unsafe class MergeScanner<TPlatform> where TPlatform : struct, IMmPlatform
{
    private const int Empty = 0;
    private const int Unstable = 1;
    private const int Stable = 2;
    private const int Probe = 8;

    private readonly MemoryManager<TPlatform> _mm;
    private readonly int _mask;
    private readonly ulong[] _hash;
    private readonly int[] _kind;
    private readonly int[] _pass;
    private readonly AddressSpace<TPlatform>?[] _space;
    private readonly ulong[] _va;
    private readonly ulong[] _frame;
    private readonly Pfn _zero;
    private int _busy;
    private int _currentPass = 1;
    private int _cursorSpace;
    private ulong _cursorVa;

    /// <summary>
    /// ANDed into every hash. Tests set it to 0 to force every page into one hash bucket (all
    /// candidates then collide, and only the byte-for-byte compare keeps different pages apart).
    /// </summary>
    public ulong HashMask = ulong.MaxValue;

    /// <summary>
    /// Creates the scanner of <paramref name="mm"/> with a candidate table of
    /// <paramref name="tableSize"/> entries (rounded up to a power of two) and allocates the shared
    /// zero frame, which the scanner keeps a reference on for its whole life (it is never freed and
    /// never on an LRU list).
    /// </summary>
    public MergeScanner(MemoryManager<TPlatform> mm, int tableSize)
    {
        _mm = mm;
        int size = 16;
        while (size < tableSize)
            size <<= 1;
        _mask = size - 1;
        _hash = new ulong[size];
        _kind = new int[size];
        _pass = new int[size];
        _space = new AddressSpace<TPlatform>?[size];
        _va = new ulong[size];
        _frame = new ulong[size];
        if (!mm.Frames.AllocateFrame(out _zero))
            throw new System.InvalidOperationException("MergeScanner: no frame for the shared zero page");
        new System.Span<byte>(mm.Platform.PhysToVirt(_zero.Address), (int)PageSizes.Size4K).Clear();
        mm.Frames.SetFlags(_zero, FrameFlags.Merged);
    }

    /// <summary>The shared zero frame.</summary>
    public Pfn ZeroFrame { get { return _zero; } }

    /// <summary>
    /// Gives the shared zero frame back (the scanner's reference): call once, when no scan step
    /// runs any more and every address space that could map the frame is gone. False, with
    /// nothing freed, while a scan step runs or the zero frame is still mapped somewhere. After
    /// it succeeded, every <see cref="ScanStep"/> returns 0 at once.
    /// </summary>
    public bool ReleaseZeroFrame()
    {
        // Claim the scanner for good (ScanStep's one-step-at-a-time flag, never given back).
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            return false;
        if (_mm.Frames.MapCountOf(_zero) != 0)
        {
            Volatile.Write(ref _busy, 0);
            return false;
        }
        _mm.Frames.ClearFlags(_zero, FrameFlags.Merged);
        _mm.Frames.PutRef(_zero);
        return true;
    }

    /// <summary>The counters (shared with the fault path's copy-on-write breaks).</summary>
    public MergeStats Stats { get { return _mm.MergeStats; } }

    /// <summary>
    /// Looks at up to <paramref name="pages"/> page slots of mergeable regions, continuing where
    /// the last step stopped; a step that reaches the end of the last space ends a pass (unstable
    /// candidates expire) and goes on from the first. Returns the page slots looked at (0 when
    /// another step is running or nothing is mergeable). Called with no mm lock held, from a
    /// kernel thread or a test thread that loops on it.
    /// </summary>
    public int ScanStep(int pages)
    {
        // One step at a time; a second caller returns at once.
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            return 0;
        int done = 0;
        int emptyPasses = 0;
        while (done < pages && emptyPasses < 2)
        {
            AddressSpace<TPlatform>? space = NextSpace(_cursorSpace);
            if (space == null)
            {
                // End of a pass.
                MergeStats.Add(ref _mm.MergeStats._fullScans, 1);
                _currentPass++;
                _cursorSpace = 0;
                _cursorVa = 0;
                emptyPasses++;
                continue;
            }
            if (space.Id != _cursorSpace)
            {
                _cursorSpace = space.Id;
                _cursorVa = 0;
            }
            if (!space.TryGetUser())
            {
                _cursorSpace = space.Id + 1;
                _cursorVa = 0;
                continue;
            }
            Region? region = NextRegion(space, _cursorVa);
            if (region == null)
            {
                space.PutUser();
                _cursorSpace = space.Id + 1;
                _cursorVa = 0;
                continue;
            }
            VirtAddr va = _cursorVa > region.Start.Value ? new VirtAddr(_cursorVa) : region.Start;
            while (va < region.End && done < pages)
            {
                ScanPage(space, va);
                va = va + PageSizes.Size4K;
                done++;
                emptyPasses = 0;
            }
            _cursorVa = va.Value;
            space.PutUser();
        }
        // Release: this step's table writes before the next step (any thread) reads them.
        Volatile.Write(ref _busy, 0);
        return done;
    }

    /// <summary>The live space with the smallest id at or above <paramref name="id"/>.</summary>
    private AddressSpace<TPlatform>? NextSpace(int id)
    {
        AddressSpace<TPlatform>?[] spaces = _mm.Spaces;
        AddressSpace<TPlatform>? best = null;
        for (int i = 0; i < spaces.Length; i++)
        {
            AddressSpace<TPlatform> s = spaces[i]!;
            if (s.Id >= id && (best == null || s.Id < best.Id))
                best = s;
        }
        return best;
    }

    private static Region? NextRegion(AddressSpace<TPlatform> space, ulong va)
    {
        RegionMap map = space.Regions;
        for (int r = 0; r < map.Count; r++)
        {
            Region region = map[r];
            if (region.End.Value > va && region.Mergeable)
                return region;
        }
        return null;
    }

    private byte* Bytes(Pfn frame) { return _mm.Platform.PhysToVirt(frame.Address); }

    private void ScanPage(AddressSpace<TPlatform> space, VirtAddr va)
    {
        if (!space.ProbeTracked(va, out Pfn page))
            return;
        FrameFlags flags = _mm.Frames.FlagsOf(page);
        if ((flags & (FrameFlags.Merged | FrameFlags.CopyOnWrite)) != 0 || (flags & FrameFlags.Anonymous) == 0)
            return;
        if (_mm.Frames.MapCountOf(page) != 1 || !_mm.Frames.TryGetRef(page))
            return;
        MergeStats.Add(ref _mm.MergeStats._pagesScanned, 1);
        ulong hash = PageHash.Compute(Bytes(page), out bool zero) & HashMask;
        if (zero)
        {
            MergeInto(space, va, page, _zero);
            _mm.Frames.PutRef(page);
            return;
        }
        bool listed = false;
        int start = (int)(hash & (ulong)_mask);
        for (int k = 0; k < Probe; k++)
        {
            int i = (start + k) & _mask;
            int kind = Live(i);
            if (kind == Empty || _hash[i] != hash)
                continue;
            if (kind == Stable)
            {
                if (TryStable(i, space, va, page))
                {
                    _mm.Frames.PutRef(page);
                    return;
                }
            }
            else if (_space[i] == space && _va[i] == va.Value)
            {
                // This page was listed earlier in the pass (it is scanned twice only when a pass
                // is shorter than a step): refresh its frame.
                _frame[i] = page.Value;
                listed = true;
            }
            else if (TryUnstable(i, space, va, page))
            {
                _mm.Frames.PutRef(page);
                return;
            }
        }
        if (!listed)
            Insert(start, hash, space, va, page);
        _mm.Frames.PutRef(page);
    }

    /// <summary>The kind of entry <paramref name="i"/>, with unstable entries of past passes as empty.</summary>
    private int Live(int i)
    {
        int kind = _kind[i];
        if (kind == Unstable && _pass[i] != _currentPass)
            return Empty;
        return kind;
    }

    private void Insert(int start, ulong hash, AddressSpace<TPlatform> space, VirtAddr va, Pfn page)
    {
        int at = -1;
        for (int k = 0; k < Probe && at < 0; k++)
        {
            int i = (start + k) & _mask;
            if (Live(i) == Empty)
                at = i;
        }
        if (at < 0)
        {
            // Full window: replace the last unstable entry in it (the table is lossy).
            for (int k = Probe - 1; k >= 0 && at < 0; k--)
            {
                int i = (start + k) & _mask;
                if (_kind[i] == Unstable)
                    at = i;
            }
            if (at < 0)
                return;
        }
        _kind[at] = Unstable;
        _pass[at] = _currentPass;
        _hash[at] = hash;
        _space[at] = space;
        _va[at] = va.Value;
        _frame[at] = page.Value;
    }

    private void Forget(int i)
    {
        _kind[i] = Empty;
        _space[i] = null;
    }

    /// <summary>Merges <paramref name="page"/> into the stable frame of entry <paramref name="i"/>; true when merged.</summary>
    private bool TryStable(int i, AddressSpace<TPlatform> space, VirtAddr va, Pfn page)
    {
        Pfn stable = new Pfn(_frame[i]);
        if (stable == page)
            return true;
        if (!_mm.Frames.TryGetRef(stable))
        {
            Forget(i);
            return false;
        }
        // A stable entry outlives its frame's sharing: check it is still a merged frame (the
        // compare below decides the rest; only this scanner marks frames Merged).
        if ((_mm.Frames.FlagsOf(stable) & (FrameFlags.Merged | FrameFlags.CopyOnWrite)) != FrameFlags.Merged)
        {
            _mm.Frames.PutRef(stable);
            Forget(i);
            return false;
        }
        MergeResult r = MergeInto(space, va, page, stable);
        _mm.Frames.PutRef(stable);
        return r == MergeResult.Merged;
    }

    /// <summary>
    /// Entry <paramref name="i"/> is an unstable page with the same hash: if its contents equal
    /// <paramref name="page"/>'s, make it the stable frame (write-protect it where it is mapped,
    /// mark it Merged), then merge <paramref name="page"/> into it. True when merged.
    /// </summary>
    private bool TryUnstable(int i, AddressSpace<TPlatform> space, VirtAddr va, Pfn page)
    {
        AddressSpace<TPlatform> other = _space[i]!;
        VirtAddr otherVa = new VirtAddr(_va[i]);
        if (!other.TryGetUser())
        {
            Forget(i);
            return false;
        }
        bool merged = false;
        if (!other.ProbeTracked(otherVa, out Pfn candidate) || candidate.Value != _frame[i] || candidate == page
            || (_mm.Frames.FlagsOf(candidate) & (FrameFlags.Merged | FrameFlags.CopyOnWrite)) != 0
            || !_mm.Frames.TryGetRef(candidate))
        {
            Forget(i);
        }
        else
        {
            if (!PageHash.Equal(Bytes(page), Bytes(candidate)))
                MergeStats.Add(ref _mm.MergeStats._compareMismatches, 1);
            else if (!other.WriteProtectForMerge(otherVa, candidate, FrameFlags.Merged))
                Forget(i);
            else
            {
                // The candidate is read-only everywhere and marked: its contents no longer change.
                MergeResult r = MergeInto(space, va, page, candidate);
                if (r == MergeResult.Merged)
                {
                    merged = true;
                    MergeStats.Add(ref _mm.MergeStats._stableFrames, 1);
                    _kind[i] = Stable;
                    _space[i] = null;
                }
                else if (_mm.Frames.MapCountOf(candidate) <= 1)
                {
                    // Demote: nobody else maps it, and only this (single) scanner adds mappings
                    // of merged frames, so its one mapping may be upgraded in place again.
                    _mm.Frames.ClearFlags(candidate, FrameFlags.Merged);
                }
            }
            _mm.Frames.PutRef(candidate);
        }
        other.PutUser();
        return merged;
    }

    /// <summary>
    /// The merge protocol for one page (caller holds references on both frames and a user
    /// reference on <paramref name="space"/>; <paramref name="shared"/> is merged, so its contents
    /// are stable): first compare; write-protect (flush, notify); second compare; remap (flush,
    /// notify, drop the old reference).
    /// </summary>
    private MergeResult MergeInto(AddressSpace<TPlatform> space, VirtAddr va, Pfn page, Pfn shared)
    {
        // 1. First compare, no lock: a cheap filter (the page may still change).
        if (!PageHash.Equal(Bytes(page), Bytes(shared)))
        {
            MergeStats.Add(ref _mm.MergeStats._compareMismatches, 1);
            return MergeResult.Mismatch;
        }
        _mm.Platform.Checkpoint(MmCheckpoint.MergeBeforeWriteProtect);
        // 2. Write-protect the page where it is mapped: from now on no MMU can write it, and a
        // write fault copies it away instead of upgrading it in place.
        if (!space.WriteProtectForMerge(va, page, FrameFlags.CopyOnWrite))
        {
            MergeStats.Add(ref _mm.MergeStats._abortedChanged, 1);
            return MergeResult.Refused;
        }
        _mm.Platform.Checkpoint(MmCheckpoint.MergeWriteProtected);
        // 3. Second compare: the contents cannot change any more, so equal now means equal.
        if (!PageHash.Equal(Bytes(page), Bytes(shared)))
        {
            _mm.Frames.ClearFlags(page, FrameFlags.CopyOnWrite);
            MergeStats.Add(ref _mm.MergeStats._abortedChanged, 1);
            return MergeResult.Aborted;
        }
        // 4. Remap to the shared frame if the entry is unchanged; flush, notify, drop.
        if (!space.ReplaceForMerge(va, page, shared, shared != _zero))
        {
            MergeStats.Add(ref _mm.MergeStats._abortedChanged, 1);
            return MergeResult.Aborted;
        }
        MergeStats.Add(ref _mm.MergeStats._merges, 1);
        if (shared == _zero)
            MergeStats.Add(ref _mm.MergeStats._zeroMerges, 1);
        return MergeResult.Merged;
    }

    /// <summary>
    /// Sharing now (a racy snapshot computed from the frame database, O(frames)):
    /// <paramref name="shared"/> = distinct merged frames that save memory (two or more mappings,
    /// or the zero frame with one or more), <paramref name="sharing"/> = their mappings.
    /// </summary>
    public void CountSharing(out long shared, out long sharing)
    {
        shared = 0;
        sharing = 0;
        int count = _mm.Frames.FrameCount;
        for (int f = 0; f < count; f++)
        {
            Pfn frame = new Pfn((ulong)f);
            if ((_mm.Frames.FlagsOf(frame) & FrameFlags.Merged) == 0)
                continue;
            int maps = _mm.Frames.MapCountOf(frame);
            if (maps >= 2 || (maps >= 1 && frame == _zero))
            {
                shared++;
                sharing += maps;
            }
        }
    }
}
