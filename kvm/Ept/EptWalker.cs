using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// Lockless iterator over the present leaves that translate <c>[start, end)</c> of guest-physical
/// space (compare KVM's <c>for_each_tdp_pte</c>). Callers never index EPT tables by hand:
/// <code>foreach (EptSlot s in new EptWalker&lt;P&gt;(platform, root, start, end)) { ... }</code>
/// </summary>
/// <remarks>
/// Safe without the MMU lock because a table page is never freed while the EPT is alive (see
/// <see cref="EptMmu{TPlatform}.Release"/>): a walker may read a table that is being filled, or a
/// leaf that is being zapped, never a freed page. Non-leaf entries only ever go from empty to a
/// table pointer while the EPT lives. The walker keeps the current last-level table and scans it
/// directly, descending from the root only when it leaves a 2 MiB span.
/// </remarks>
public unsafe ref struct EptWalker<TPlatform> where TPlatform : struct, IEptPlatform
{
    private readonly TPlatform _platform;
    private readonly PhysAddr _root;
    private readonly ulong _end;
    private ulong _next;
    private ulong* _table;
    private ulong _tableEnd;
    private EptSlot _current;

    /// <summary>Starts a walk of <c>[start, end)</c> in the EPT rooted at <paramref name="root"/>.</summary>
    public EptWalker(TPlatform platform, PhysAddr root, GuestPhysAddr start, GuestPhysAddr end)
    {
        _platform = platform;
        _root = root;
        _next = start.Value & ~(PageSizes.Size4K - 1);
        _end = end.Value;
        _table = null;
        _tableEnd = 0;
        _current = default;
    }

    /// <summary>Pattern-based foreach support.</summary>
    public EptWalker<TPlatform> GetEnumerator() { return this; }

    /// <summary>The current leaf.</summary>
    public EptSlot Current { get { return _current; } }

    /// <summary>The guest-physical address of the next entry the walk looks at (where a <see cref="TryTakeTableRun"/> run starts).</summary>
    public GuestPhysAddr NextAddress { get { return new GuestPhysAddr(_next); } }

    /// <summary>Advances to the next present leaf; false at the end of the range.</summary>
    public bool MoveNext()
    {
        while (_next < _end)
        {
            if (_table != null && _next < _tableEnd)
            {
                // Fast path: the rest of the current page table.
                ulong* slot = _table + ((_next >> PageSizes.Shift4K) & 511);
                EptEntry e = EptOps.Read(slot);
                ulong va = _next;
                _next += PageSizes.Size4K;
                if (e.IsPresent)
                {
                    _current = new EptSlot(slot, 1, new GuestPhysAddr(va), e);
                    return true;
                }
                continue;
            }
            _table = null;
            if (Descend())
                return true;
        }
        return false;
    }

    /// <summary>
    /// When the walk is inside a last-level table, hands the caller the rest of that table's entries
    /// in the range as one run (present or not) and moves past them; false otherwise (then call
    /// <see cref="MoveNext"/>). For passes that touch every entry, such as aging, this turns the
    /// per-entry cost into one volatile read.
    /// </summary>
    public bool TryTakeTableRun(out ulong* slots, out int count)
    {
        if (_table == null || _next >= _tableEnd || _next >= _end)
        {
            slots = null;
            count = 0;
            return false;
        }
        ulong stop = _tableEnd < _end ? _tableEnd : _end;
        slots = _table + ((_next >> PageSizes.Shift4K) & 511);
        count = (int)((stop - _next + PageSizes.Size4K - 1) >> PageSizes.Shift4K);
        _next = _tableEnd < _end ? _tableEnd : _end;
        return true;
    }

    /// <summary>Walks from the root for <c>_next</c>: sets up the page-table fast path, yields a large
    /// leaf (true), or skips a hole.</summary>
    private bool Descend()
    {
        ulong gpa = _next;
        PhysAddr table = _root;
        for (int level = 4; level >= 2; level--)
        {
            ulong* slot = _platform.TableAt(table) + new GuestPhysAddr(gpa).TableIndex(level);
            EptEntry e = EptOps.Read(slot);
            ulong size = PageSizes.ForLevel(level);
            ulong first = gpa & ~(size - 1);
            if (!e.IsPresent)
            {
                _next = Advance(first, size);
                return false;
            }
            if (e.IsLeaf(level))
            {
                _next = Advance(first, size);
                _current = new EptSlot(slot, level, new GuestPhysAddr(first), e);
                return true;
            }
            table = e.TableAddress;
        }
        _table = _platform.TableAt(table);
        _tableEnd = (gpa & ~(PageSizes.Size2M - 1)) + PageSizes.Size2M;
        return false;
    }

    private ulong Advance(ulong first, ulong size)
    {
        ulong next = first + size;
        return next <= first ? _end : next;
    }
}
