namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    private const ulong SpanSize = PageSizes.Size2M;
    private const int SpanPages = 512;

    /// <summary>
    /// Ages the pages of <c>[start, end)</c>, which lies inside one last-level table (2 MiB span)
    /// and one anonymous region: under the page-table lock, reads each leaf and test-and-clears the
    /// primary accessed bit (atomic: the CPU sets it); then, with no lock held, one fast-only
    /// notifier call for the span (<see cref="MmuNotifierList{TPlatform}.TestClearYoungFastOnlyBitmap"/>),
    /// whose incomplete answer counts every present page as young (invariant 4); then moves the
    /// young pages to the youngest generation in one LRU lock round. Returns the pages promoted;
    /// <paramref name="present"/> and <paramref name="young"/> count the tracked leaves seen and the
    /// young ones among them, <paramref name="entries"/> the primary entries read.
    /// </summary>
    // No zeroing of the 4 KiB frame list on every span: an entry is read only where its ask bit,
    // cleared below, was set with it.
    [System.Runtime.CompilerServices.SkipLocalsInit]
    private int AgeSpan(VirtAddr start, VirtAddr end, out int present, out int young, out int entries)
    {
        Pfn* frames = stackalloc Pfn[SpanPages];
        ulong* ask = stackalloc ulong[SpanPages / 64];
        ulong* hot = stackalloc ulong[SpanPages / 64];
        for (int w = 0; w < SpanPages / 64; w++)
        {
            ask[w] = 0;
            hot[w] = 0;
        }
        int pages = (int)((end - start) >> 12);
        present = 0;
        young = 0;
        entries = 0;
        _ptLock.Enter(_platform);
        // The user reference (held by the caller) keeps the tables; the lock keeps the table's
        // structure while we read it (a split or a teardown cannot run under us).
        MapStatus walk = MapStatus.Ok;
        ulong* slot = _dead != 0 ? null : WalkLocked(start, 1, false, out walk);
        if (slot == null && walk == MapStatus.Conflict)
        {
            _ptLock.Exit(_platform);
            return AgeHugeSpan(start, pages, out present, out young, out entries);
        }
        if (slot != null)
        {
            for (int i = 0; i < pages; i++)
            {
                PageTableEntry e = PteOps.Read(slot + i);
                entries++;
                if (!e.IsPresent || e.IsSpecial)
                    continue;
                Pfn frame = e.LeafAddress(1).Pfn;
                frames[i] = frame;
                ask[i >> 6] |= 1UL << (i & 63);
                present++;
                if (e.IsAccessed)
                {
                    // Atomic: the CPU may set A or D meanwhile; an access after this is seen next time.
                    PteOps.ClearBits(slot + i, PageTableEntry.Accessed);
                    hot[i >> 6] |= 1UL << (i & 63);
                }
            }
        }
        _ptLock.Exit(_platform);
        if (present == 0)
            return 0;
        if (Notifiers.HasNotifiers)
        {
            CountFastCall();
            FastAgeResult r = Notifiers.TestClearYoungFastOnlyBitmap(this, start, pages, ask, hot);
            if (!r.Complete)
            {
                // A notifier without lockless aging was not asked: unknown counts as young.
                for (int w = 0; w < SpanPages / 64; w++)
                    hot[w] |= ask[w];
            }
        }
        int n = 0;
        for (int i = 0; i < pages; i++)
        {
            if ((hot[i >> 6] & ask[i >> 6] & (1UL << (i & 63))) != 0)
                frames[n++] = frames[i];
        }
        young = n;
        return n == 0 ? 0 : _mm.Lru.PromoteBatch(frames, n);
    }

    /// <summary>
    /// <see cref="AgeSpan"/> where one leaf maps the span: a tracked 2 MiB page is aged as one unit
    /// (its accessed bit, test-and-cleared under the page-table lock, and the secondaries' over its
    /// 512 pages in one fast-only call, an incomplete answer counting as young); when young its
    /// head moves to the youngest generation. <paramref name="present"/> and <paramref name="young"/>
    /// count 512 pages (or 0) for the density of the span.
    /// </summary>
    private int AgeHugeSpan(VirtAddr start, int pages, out int present, out int young, out int entries)
    {
        present = 0;
        young = 0;
        entries = 0;
        bool hot = false;
        Pfn head = default;
        _ptLock.Enter(_platform);
        ulong* slot = _dead != 0 ? null : WalkLocked(start, 2, false, out MapStatus _);
        if (slot != null)
        {
            PageTableEntry e = PteOps.Read(slot);
            entries = 1;
            if (e.IsPresent && e.IsLeaf(2) && !e.IsSpecial && pages == SpanPages)
            {
                head = e.LeafAddress(2).Pfn;
                present = SpanPages;
                // Atomic: the CPU may set A or D meanwhile; an access after this is seen next time.
                if (e.IsAccessed)
                    hot = PteOps.ClearBits(slot, PageTableEntry.Accessed).IsAccessed;
            }
        }
        _ptLock.Exit(_platform);
        if (present == 0)
            return 0;
        if (Notifiers.HasNotifiers)
        {
            CountFastCall();
            FastAgeResult r = Notifiers.TestClearYoungFastOnly(this, start, start + PageSizes.Size2M, true);
            // A notifier without lockless aging was not asked: unknown counts as young.
            hot |= r.Young || !r.Complete;
        }
        if (!hot)
            return 0;
        young = SpanPages;
        return _mm.Lru.Promote(head) ? 1 : 0;
    }

    /// <summary>One fast-only notifier call of the walk or look-around, in the global and this space's statistics.</summary>
    private void CountFastCall()
    {
        LruStats.Add(ref _mm.Lru.Stats._fastCalls, 1);
        LruStats.Add(ref Lru.Stats._fastCalls, 1);
    }

    /// <summary>
    /// The aging walk over this space for generation <paramref name="maxSeq"/> (the caller holds a
    /// user reference): every anonymous region, one last-level table at a time. With the filter,
    /// only the tables marked dense for <paramref name="maxSeq"/> are walked (all of them when the
    /// filter was never prepared); tables found dense are marked for the next walk.
    /// </summary>
    internal void AgeForLru(int maxSeq, bool filtered)
    {
        LruStats g = _mm.Lru.Stats;
        LruStats s = Lru.Stats;
        bool useFilter = filtered && Lru.FilterReady(maxSeq);
        Lru.PrepareNext(maxSeq);
        RegionMap map = Regions;
        long tables = 0, skipped = 0, entriesTotal = 0, aged = 0;
        for (int r = 0; r < map.Count; r++)
        {
            Region region = map[r];
            if (region.Kind != RegionKind.Anonymous)
                continue;
            for (VirtAddr span = region.Start.AlignDown(SpanSize); span < region.End; span = span + SpanSize)
            {
                if (useFilter && !Lru.Test(maxSeq, span))
                {
                    skipped++;
                    continue;
                }
                VirtAddr start = span < region.Start ? region.Start : span;
                VirtAddr end = span + SpanSize > region.End ? region.End : span + SpanSize;
                tables++;
                AgeSpan(start, end, out int present, out int young, out int entries);
                entriesTotal += entries;
                aged += young;
                if (young > 0 && young * _mm.Lru.DenseDivisor >= present)
                    Lru.Mark(maxSeq + 1, span);
            }
        }
        LruStats.Add(ref g._walkTables, tables);
        LruStats.Add(ref s._walkTables, tables);
        LruStats.Add(ref g._walkTablesSkipped, skipped);
        LruStats.Add(ref s._walkTablesSkipped, skipped);
        LruStats.Add(ref g._walkEntries, entriesTotal);
        LruStats.Add(ref s._walkEntries, entriesTotal);
        LruStats.Add(ref g._pagesAged, aged);
        LruStats.Add(ref s._pagesAged, aged);
        LruStats.Add(ref s._agingPasses, 1);
    }

    /// <summary>
    /// Look-around (eviction found the page at <paramref name="address"/> young): ages the
    /// neighbours in the same last-level table and anonymous region with one fast-only call and
    /// promotes the young ones; marks the table dense for the coming walk. Returns the pages
    /// promoted. The caller holds a user reference.
    /// </summary>
    internal int LookAround(VirtAddr address)
    {
        Region? region = Regions.Find(address);
        if (region == null || region.Kind != RegionKind.Anonymous)
            return 0;
        VirtAddr span = address.AlignDown(SpanSize);
        VirtAddr start = span < region.Start ? region.Start : span;
        VirtAddr end = span + SpanSize > region.End ? region.End : span + SpanSize;
        int promoted = AgeSpan(start, end, out int present, out int young, out int entries);
        LruStats g = _mm.Lru.Stats;
        LruStats s = Lru.Stats;
        LruStats.Add(ref g._lookArounds, 1);
        LruStats.Add(ref s._lookArounds, 1);
        LruStats.Add(ref g._lookAroundEntries, entries);
        LruStats.Add(ref s._lookAroundEntries, entries);
        LruStats.Add(ref g._lookAroundPromotions, promoted);
        LruStats.Add(ref s._lookAroundPromotions, promoted);
        if (young > 0 && young * _mm.Lru.DenseDivisor >= present)
            Lru.Mark(_mm.Lru.MaxSeq, span);
        return promoted;
    }

    /// <summary>
    /// Pages per generation of this space (a snapshot computed by walking its anonymous regions):
    /// <paramref name="perGeneration"/>[k] counts the mapped pages on generation <c>MaxSeq - k</c>
    /// (k &lt; its length); returns the mapped tracked pages, listed or not. Caller holds a user
    /// reference or is the owner.
    /// </summary>
    public int CountGenerations(System.Span<int> perGeneration)
    {
        perGeneration.Clear();
        int mapped = 0;
        int max = _mm.Lru.MaxSeq;
        RegionMap map = Regions;
        for (int r = 0; r < map.Count; r++)
        {
            Region region = map[r];
            if (region.Kind != RegionKind.Anonymous)
                continue;
            foreach (PteSlot s in new PageTableWalker<TPlatform>(_platform, Root, region.Start, region.End))
            {
                if (s.Level > 2 || !s.Value.IsPresent || s.Value.IsSpecial)
                    continue;
                // A tracked 2 MiB page counts its 512 pages, on its head's generation.
                int pages = s.Level == 2 ? SpanPages : 1;
                mapped += pages;
                int seq = _mm.Lru.GenerationOf(s.Value.LeafAddress(s.Level).Pfn);
                int k = max - seq;
                if (seq >= 0 && k >= 0 && k < perGeneration.Length)
                    perGeneration[k] += pages;
            }
        }
        return mapped;
    }
}
