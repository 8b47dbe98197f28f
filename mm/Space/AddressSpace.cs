using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// An address space: 4-level primary page tables, a region map, the notifiers of the secondary MMUs
/// that mirror it, and the set of CPUs that may cache its translations.
/// </summary>
/// <remarks>
/// <para>Locks (docs/locking.md): <c>_regionLock</c> (region-map writers) → <c>_ptLock</c> (page-table
/// contents) → reverse-map lock → per-CPU frame cache → zone lock. No lock of this type is held
/// while a notifier runs.</para>
/// <para>Lifetime (compare Linux's <c>mm_users</c>): the owner holds one user reference from
/// creation; anyone else who walks the page tables (the reclaimer and the aging walk, which find
/// the space through the reverse map) takes one with <see cref="TryGetUser"/> first and drops it
/// with <see cref="PutUser"/>. <see cref="Destroy"/> marks the space dying (from then on every
/// fault and map fails with <c>Dead</c>) and drops the owner's reference; whoever drops the last
/// reference tears the space down: notifiers released, every mapping removed, page-table pages
/// freed. So a page-table page is freed only when no walker can hold it, and lockless walks
/// (<see cref="Translate"/>, the fault probe) are safe for any holder of a user reference. The
/// object itself outlives every pointer to it (the host's GC; the kernel never frees it).</para>
/// </remarks>
public sealed unsafe partial class AddressSpace<TPlatform> : IAddressSpace where TPlatform : struct, IMmPlatform
{
    private readonly MemoryManager<TPlatform> _mm;
    private readonly TPlatform _platform;
    private readonly int _id;
    private SpinLock _ptLock;
    private SpinLock _regionLock;
    private RegionMap _regions = RegionMap.Empty;
    private ulong _cpuMask;
    private int _userfaultEvents;
    private int _users = 1;
    private int _dying;
    private int _dead;

    /// <summary>Physical address of the PML4 (the CR3 value without flags).</summary>
    public readonly PhysAddr Root;

    /// <summary>The notifiers of the secondary MMUs that follow this address space (O(1) from here).</summary>
    public readonly MmuNotifierList<TPlatform> Notifiers;

    /// <summary>This space's LRU state: statistics and the aging walk's dense-table filter.</summary>
    public readonly SpaceLru Lru = new SpaceLru();

    internal AddressSpace(MemoryManager<TPlatform> mm, int id, Pfn root)
    {
        _mm = mm;
        _platform = mm.Platform;
        _id = id;
        Root = root.Address;
        mm.Frames.SetFlags(root, FrameFlags.PageTable);
        ZeroFrame(root);
        Notifiers = new MmuNotifierList<TPlatform>(_platform, this);
    }

    /// <inheritdoc/>
    public int Id { get { return _id; } }

    /// <summary>The memory manager this address space belongs to.</summary>
    public MemoryManager<TPlatform> Manager { get { return _mm; } }

    /// <summary>The current region map (a snapshot; never changes after it was read).</summary>
    public RegionMap Regions
    {
        // Acquire; pairs with the Volatile.Write in AddRegion/RemoveRegion.
        get { return Volatile.Read(ref _regions); }
    }

    /// <summary>CPUs that may hold translations of this address space.</summary>
    public ulong CpuMask { get { return Volatile.Read(ref _cpuMask); } }

    /// <summary>Marks <paramref name="cpu"/> as using this address space (call before loading CR3 there).</summary>
    public void Activate(int cpu)
    {
        if (Volatile.Read(ref _dying) != 0)
            throw new System.InvalidOperationException("AddressSpace.Activate: the address space is dying");
        // Full barrier before the CPU loads CR3; pairs with the Volatile.Read of _cpuMask in
        // FlushRange, which comes after the Interlocked clear of the entry: either the flusher
        // sees this CPU, or this CPU's first walk sees the cleared entry.
        Interlocked.Or(ref _cpuMask, 1UL << cpu);
    }

    /// <summary>Removes <paramref name="cpu"/> from the mask (after it loaded another CR3 and flushed).</summary>
    public void Deactivate(int cpu)
    {
        // Atomic RMW against concurrent Activate on other CPUs.
        Interlocked.And(ref _cpuMask, ~(1UL << cpu));
    }

    /// <summary>Reads the leaf that translates <paramref name="address"/> without locks.
    /// False when nothing is mapped.</summary>
    public bool Translate(VirtAddr address, out PageTableEntry leaf, out int level)
    {
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        leaf = s.Value;
        level = s.Level;
        return s.Value.IsPresent;
    }

    /// <summary>The 4 KiB frame that <paramref name="address"/> translates to now, if any.</summary>
    public bool TranslateFrame(VirtAddr address, out Pfn frame)
    {
        if (!Translate(address, out PageTableEntry leaf, out int level))
        {
            frame = default;
            return false;
        }
        ulong offset = address.Value & (PageSizes.ForLevel(level) - 1);
        frame = new PhysAddr(leaf.LeafAddress(level).Value + offset).Pfn;
        return true;
    }

    private void FlushRange(VirtAddr start, VirtAddr end)
    {
        // The mask is read after the Interlocked clear of the entries (full barrier); pairs with
        // Interlocked.Or in Activate.
        _platform.FlushTlb(new TlbFlushRequest(_id, Root, start, end, Volatile.Read(ref _cpuMask)));
    }

    private void ZeroFrame(Pfn frame)
    {
        new System.Span<byte>(_platform.PhysToVirt(frame.Address), (int)PageSizes.Size4K).Clear();
    }

    /// <summary>True once <see cref="Destroy"/> was called.</summary>
    public bool IsDying { get { return Volatile.Read(ref _dying) != 0; } }

    /// <summary>User references (the owner's and every walker's); 0 once the teardown began.</summary>
    public int Users { get { return Volatile.Read(ref _users); } }

    /// <summary>
    /// Takes a user reference so that the page tables stay while the caller walks them. False
    /// when the last reference is already gone (the space is being torn down: skip it).
    /// </summary>
    public bool TryGetUser()
    {
        int old = Volatile.Read(ref _users);
        while (old > 0)
        {
            // CAS so a count that reached 0 is never raised again (the teardown has begun); pairs
            // with the Interlocked.Decrement in PutUser.
            int seen = Interlocked.CompareExchange(ref _users, old + 1, old);
            if (seen == old)
                return true;
            old = seen;
        }
        return false;
    }

    /// <summary>Drops a user reference; the last one tears the address space down (in the caller's context).</summary>
    public void PutUser()
    {
        // Full barrier: the caller's walks happen before the teardown that may follow here or in
        // the context that drops the last reference.
        int left = Interlocked.Decrement(ref _users);
        if (left == 0)
            Teardown();
        else if (left < 0)
            throw new System.InvalidOperationException("AddressSpace: user count below zero");
    }

    /// <summary>
    /// The owner is done with the address space: from now on every fault and map fails with
    /// <c>Dead</c>, and when the last user reference is gone (at once, unless a reclaimer or an
    /// aging walk holds one) the space is torn down: notifiers get <see cref="IMmuNotifier.Release"/>,
    /// every mapping goes, the page-table pages are freed. The space must be loaded on no CPU
    /// (<see cref="Deactivate"/> first). Calling it twice is harmless.
    /// </summary>
    public void Destroy()
    {
        ulong loaded = Volatile.Read(ref _cpuMask);
        if (loaded != 0)
            throw new System.InvalidOperationException("AddressSpace.Destroy: the address space is still loaded on some CPU (Deactivate it everywhere first)");
        if (Interlocked.Exchange(ref _dying, 1) != 0)
            return;
        // Under _ptLock: a fault either installed before this (and the teardown's unmap removes
        // it) or sees _dead under the same lock and installs nothing.
        _ptLock.Enter(_platform);
        _dead = 1;
        _ptLock.Exit(_platform);
        // Wake faults waiting for a userfault fill: they re-check and fail with Dead.
        SignalUserfault();
        PutUser();
    }

    private void Teardown()
    {
        _mm.UnregisterSpace(this);
        // Every notifier drops its mappings while it still gets invalidations, then is unpublished;
        // after this returns no secondary maps anything of this space or runs a callback on it.
        Notifiers.ReleaseAll(this);
        UnmapValidated(new VirtAddr(0), new VirtAddr(UserTop));
        _regionLock.Enter(_platform);
        RegionMap old = _regions;
        Volatile.Write(ref _regions, RegionMap.Empty);
        _regionLock.Exit(_platform);
        _platform.DeferFree(old);
        // No user reference is left, so no walker holds a table: free them all.
        FreeTable(Root, 4);
    }

    /// <summary>End of the lower canonical half: regions live below it.</summary>
    public const ulong UserTop = 1UL << 47;

    /// <summary>
    /// The check in front of every public range operation, made before any lock is taken:
    /// 4 KiB aligned, start &lt; end, and inside the user half (so no walk can wrap around to low
    /// addresses while its notifier range does not). Throws <see cref="System.ArgumentException"/>
    /// (a caller bug), never under a lock.
    /// </summary>
    public static void ValidateRange(VirtAddr start, VirtAddr end)
    {
        if (!start.IsAligned(PageSizes.Size4K) || !end.IsAligned(PageSizes.Size4K))
            throw new System.ArgumentException("address range not 4 KiB aligned");
        if (start.Value >= end.Value)
            throw new System.ArgumentException("empty or inverted address range (start must be below end)");
        if (end.Value > UserTop)
            throw new System.ArgumentException("address range reaches above the user half (2^47)");
    }

    private void FreeTable(PhysAddr table, int level)
    {
        ulong* entries = (ulong*)_platform.PhysToVirt(table);
        if (level > 1)
        {
            for (int i = 0; i < 512; i++)
            {
                PageTableEntry e = PteOps.Read(entries + i);
                if (e.IsPresent && !e.IsLeaf(level))
                    FreeTable(e.TableAddress, level - 1);
            }
        }
        _mm.Frames.ClearFlags(table.Pfn, FrameFlags.PageTable);
        _mm.Frames.PutRef(table.Pfn);
    }
}
