namespace Tandem.Kvm.Ept;

/// <summary>
/// An immutable snapshot of a VM's memslots, sorted by guest frame (compare rust-vmm's
/// <c>GuestMemoryMmap</c>): replaced as a whole, never edited in place, so the fault and invalidate
/// paths read it with one <c>Volatile.Read</c> and no lock. Slots never overlap in guest space.
/// </summary>
public sealed class MemslotMap
{
    /// <summary>The map with no slot.</summary>
    public static readonly MemslotMap Empty = new MemslotMap(new Memslot[0]);

    private readonly Memslot[] _slots;

    private MemslotMap(Memslot[] slots) { _slots = slots; }

    /// <summary>Number of slots.</summary>
    public int Count { get { return _slots.Length; } }

    /// <summary>The slot at <paramref name="index"/> (guest order).</summary>
    public Memslot this[int index] { get { return _slots[index]; } }

    /// <summary>The slot holding <paramref name="gfn"/>, or null (binary search).</summary>
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
                return s;
        }
        return null;
    }

    /// <summary>A new map with <paramref name="slot"/> added; null if it overlaps a slot in guest space.</summary>
    public MemslotMap? WithAdded(Memslot slot)
    {
        Memslot[] next = new Memslot[_slots.Length + 1];
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
            next[j++] = s;
        }
        if (!placed)
            next[j] = slot;
        return new MemslotMap(next);
    }

    /// <summary>A new map without <paramref name="slot"/>; null if it is not in the map.</summary>
    public MemslotMap? WithRemoved(Memslot slot)
    {
        int index = -1;
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] == slot)
                index = i;
        }
        if (index < 0)
            return null;
        Memslot[] next = new Memslot[_slots.Length - 1];
        int j = 0;
        for (int i = 0; i < _slots.Length; i++)
        {
            if (i != index)
                next[j++] = _slots[i];
        }
        return new MemslotMap(next);
    }

    /// <summary>True when <paramref name="slot"/> (this very object) is in the map.</summary>
    public bool Holds(Memslot slot)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] == slot)
                return true;
        }
        return false;
    }
}
