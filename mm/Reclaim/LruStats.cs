using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// Counters of the generational LRU (compare MGLRU's <c>lru_gen_mm_state</c> statistics). One
/// instance is global (<see cref="LruGenerations{TPlatform}.Stats"/>), one per address space
/// (<see cref="SpaceLru.Stats"/>). Every counter changes with <c>Interlocked</c>; reads are racy
/// snapshots (<see cref="Volatile"/>).
/// </summary>
public sealed class LruStats
{
    internal long _agingPasses, _walkTables, _walkTablesSkipped, _walkEntries, _fastCalls, _pagesAged;
    internal long _lookArounds, _lookAroundEntries, _lookAroundPromotions;
    internal long _evictionScans, _evictionsKeptYoung, _evictions, _hugeSplits;
    internal long _refaults, _refaultGenerationDistance, _refaultEvictionDistance;

    /// <summary>Aging passes (global: completed passes; per space: passes that walked it).</summary>
    public long AgingPasses { get { return Volatile.Read(ref _agingPasses); } }
    /// <summary>Last-level tables (2 MiB spans) the aging walk looked at.</summary>
    public long WalkTables { get { return Volatile.Read(ref _walkTables); } }
    /// <summary>Last-level tables the aging walk skipped (not in the dense-table filter).</summary>
    public long WalkTablesSkipped { get { return Volatile.Read(ref _walkTablesSkipped); } }
    /// <summary>Primary leaf entries read by the aging walk.</summary>
    public long WalkEntries { get { return Volatile.Read(ref _walkEntries); } }
    /// <summary>Fast-only notifier-list calls made by the aging walk and look-around (one per span).</summary>
    public long FastCalls { get { return Volatile.Read(ref _fastCalls); } }
    /// <summary>Pages the aging walk found young (and moved to the youngest generation).</summary>
    public long PagesAged { get { return Volatile.Read(ref _pagesAged); } }
    /// <summary>Look-arounds done (eviction found a page young).</summary>
    public long LookArounds { get { return Volatile.Read(ref _lookArounds); } }
    /// <summary>Primary leaf entries read by look-around.</summary>
    public long LookAroundEntries { get { return Volatile.Read(ref _lookAroundEntries); } }
    /// <summary>Neighbours that look-around found young and promoted.</summary>
    public long LookAroundPromotions { get { return Volatile.Read(ref _lookAroundPromotions); } }
    /// <summary>Pages taken off the oldest generation by eviction (each got the exact check).</summary>
    public long EvictionScans { get { return Volatile.Read(ref _evictionScans); } }
    /// <summary>Pages the exact check found young: kept and promoted.</summary>
    public long EvictionsKeptYoung { get { return Volatile.Read(ref _evictionsKeptYoung); } }
    /// <summary>Tracked 2 MiB pages that eviction found old and split into 4 KiB pages (the first of them then evicted).</summary>
    public long HugeSplits { get { return Volatile.Read(ref _hugeSplits); } }
    /// <summary>Pages evicted (unmapped everywhere by eviction).</summary>
    public long Evictions { get { return Volatile.Read(ref _evictions); } }
    /// <summary>Faults that installed a page at an (address space, page) whose eviction is still in the shadow table.</summary>
    public long Refaults { get { return Volatile.Read(ref _refaults); } }
    /// <summary>Sum over refaults of (youngest generation at the refault − generation the page was evicted from).</summary>
    public long RefaultGenerationDistance { get { return Volatile.Read(ref _refaultGenerationDistance); } }
    /// <summary>Sum over refaults of the evictions (global) between the page's eviction and its refault.</summary>
    public long RefaultEvictionDistance { get { return Volatile.Read(ref _refaultEvictionDistance); } }

    internal static void Add(ref long counter, long value)
    {
        // Atomic: the walk, eviction and faults update counters from several CPUs.
        Interlocked.Add(ref counter, value);
    }
}
