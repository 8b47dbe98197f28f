namespace Tandem.Kvm.Ept;

/// <summary>
/// An immutable snapshot of a VM's memslots, sorted by guest frame (compare rust-vmm's
/// <c>GuestMemoryMmap</c>): replaced as a whole, never edited in place, so the fault and invalidate
/// paths read it with one <c>Volatile.Read</c> and no lock. Slots never overlap in guest space.
/// </summary>
/// <remarks>
/// A slot being removed stays in the map, marked invalid (compare KVM's
/// <c>KVM_MEMSLOT_INVALID</c>), until its EPT leaves are zapped and flushed: faults no longer find
/// it (<see cref="Find"/>), but invalidations and aging still walk it (the indexer), so no host
/// invalidation can miss a leaf that the slot still maps.
/// </remarks>
public sealed class MemslotMap
{
    /// <summary>The map with no slot.</summary>
    public static readonly MemslotMap Empty = new MemslotMap(new Memslot[0], new bool[0]);

    private readonly Memslot[] _slots;
    private readonly bool[] _invalid;

    private MemslotMap(Memslot[] slots, bool[] invalid)
    {
        _slots = slots;
        _invalid = invalid;
    }

    /// <summary>Number of slots (invalid ones included).</summary>
    public int Count { get { return _slots.Length; } }

    /// <summary>The slot at <paramref name="index"/> (guest order, invalid ones included).</summary>
    public Memslot this[int index] { get { return _slots[index]; } }

    /// <summary>True when the slot at <paramref name="index"/> is being removed.</summary>
    public bool IsInvalid(int index) { return _invalid[index]; }

    /// <summary>The valid slot holding <paramref name="gfn"/>, or null (binary search). A slot being removed is not found.</summary>
    public Memslot? Find(Gfn gfn)
    {
        int lo = 0, hi = _slots.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            Memslot s = _slots[mid];
            if (gfn.Value < s.BaseGfn.Value)
                hi = mid - 1;
            else if (gfn.Value >= s.EndGfn)
                lo = mid + 1;
            else
                return _invalid[mid] ? null : s;
        }
        return null;
    }

    /// <summary>A new map with <paramref name="slot"/> added; null if it overlaps a slot (valid or not) in guest space.</summary>
    public MemslotMap? WithAdded(Memslot slot)
    {
        Memslot[] next = new Memslot[_slots.Length + 1];
        bool[] invalid = new bool[_slots.Length + 1];
        int j = 0;
        bool placed = false;
        for (int i = 0; i < _slots.Length; i++)
        {
            Memslot s = _slots[i];
            if (slot.BaseGfn.Value < s.EndGfn && s.BaseGfn.Value < slot.EndGfn)
                return null;
            if (!placed && slot.BaseGfn.Value < s.BaseGfn.Value)
            {
                next[j++] = slot;
                placed = true;
            }
            invalid[j] = _invalid[i];
            next[j++] = s;
        }
        if (!placed)
            next[j] = slot;
        return new MemslotMap(next, invalid);
    }

    /// <summary>A new map without <paramref name="slot"/>; null if it is not in the map.</summary>
    public MemslotMap? WithRemoved(Memslot slot)
    {
        int index = IndexOf(slot);
        if (index < 0)
            return null;
        Memslot[] next = new Memslot[_slots.Length - 1];
        bool[] invalid = new bool[_slots.Length - 1];
        int j = 0;
        for (int i = 0; i < _slots.Length; i++)
        {
            if (i == index)
                continue;
            invalid[j] = _invalid[i];
            next[j++] = _slots[i];
        }
        return new MemslotMap(next, invalid);
    }

    /// <summary>A new map in which <paramref name="slot"/> is marked invalid; null if it is not in the map or already invalid.</summary>
    public MemslotMap? WithInvalidated(Memslot slot)
    {
        int index = IndexOf(slot);
        if (index < 0 || _invalid[index])
            return null;
        Memslot[] next = new Memslot[_slots.Length];
        bool[] invalid = new bool[_slots.Length];
        for (int i = 0; i < _slots.Length; i++)
        {
            next[i] = _slots[i];
            invalid[i] = _invalid[i] || i == index;
        }
        return new MemslotMap(next, invalid);
    }

    /// <summary>True when <paramref name="slot"/> (this very object) is in the map and valid.</summary>
    public bool Holds(Memslot slot)
    {
        int index = IndexOf(slot);
        return index >= 0 && !_invalid[index];
    }

    private int IndexOf(Memslot slot)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] == slot)
                return i;
        }
        return -1;
    }
}
