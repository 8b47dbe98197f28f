namespace Tandem.Mm;

/// <summary>
/// Iterates the entries that translate <c>[start, end)</c> (compare KVM's <c>for_each_tdp_pte</c>):
/// for each part of the range it yields the lowest entry reached — a 4 KiB PTE, a huge leaf, or a
/// non-present entry at any level (which covers its whole span). Callers never index tables.
/// <code>foreach (PteSlot s in new PageTableWalker&lt;P&gt;(p, root, start, end)) { ... }</code>
/// </summary>
/// <remarks>
/// Each step descends from the root, so a caller may change the entry it was given (even split it)
/// and the next step sees the new tables. Page-table pages are freed only when the address space is
/// destroyed, so a walk without the page-table lock is safe for reading; changes need the lock.
/// </remarks>
public unsafe ref struct PageTableWalker<TPlatform> where TPlatform : struct, IMmPlatform
{
    private readonly TPlatform _platform;
    private readonly PhysAddr _root;
    private readonly ulong _end;
    private ulong _next;
    private PteSlot _current;

    /// <summary>Starts a walk of <c>[start, end)</c> in the tables rooted at <paramref name="root"/>.</summary>
    public PageTableWalker(TPlatform platform, PhysAddr root, VirtAddr start, VirtAddr end)
    {
        _platform = platform;
        _root = root;
        _next = start.Value;
        _end = end.Value;
        _current = default;
    }

    /// <summary>Pattern-based foreach support.</summary>
    public PageTableWalker<TPlatform> GetEnumerator() { return this; }

    /// <summary>The current step.</summary>
    public PteSlot Current { get { return _current; } }

    /// <summary>Restarts the walk at <paramref name="address"/> (after the caller changed the tables).</summary>
    public void Restart(VirtAddr address) { _next = address.Value; }

    /// <summary>Advances to the next entry; false at the end of the range.</summary>
    public bool MoveNext()
    {
        if (_next >= _end)
            return false;
        ulong va = _next;
        PhysAddr table = _root;
        for (int level = 4; ; level--)
        {
            ulong* slot = (ulong*)_platform.PhysToVirt(table) + new VirtAddr(va).TableIndex(level);
            PageTableEntry e = PteOps.Read(slot);
            if (level == 1 || !e.IsPresent || e.IsLeaf(level))
            {
                ulong size = PageSizes.ForLevel(level);
                ulong first = va & ~(size - 1);
                _current = new PteSlot(slot, level, new VirtAddr(first), e);
                ulong next = first + size;
                _next = next <= va ? _end : next;
                return true;
            }
            table = e.TableAddress;
        }
    }
}
