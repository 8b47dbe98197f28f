namespace Tandem.Mm;

/// <summary>
/// An immutable, sorted snapshot of an address space's regions. Changes build a new map that
/// replaces the old one as a whole (readers take no lock; the old map goes to DeferFree).
/// </summary>
public sealed class RegionMap
{
    private readonly Region[] _regions;

    /// <summary>The empty map.</summary>
    public static readonly RegionMap Empty = new RegionMap(new Region[0]);

    private RegionMap(Region[] regions) { _regions = regions; }

    /// <summary>Number of regions.</summary>
    public int Count { get { return _regions.Length; } }

    /// <summary>The <paramref name="index"/>-th region in address order.</summary>
    public Region this[int index] { get { return _regions[index]; } }

    /// <summary>The region containing <paramref name="address"/>, or null (binary search).</summary>
    public Region? Find(VirtAddr address)
    {
        int lo = 0;
        int hi = _regions.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            Region r = _regions[mid];
            if (address < r.Start)
                hi = mid - 1;
            else if (address >= r.End)
                lo = mid + 1;
            else
                return r;
        }
        return null;
    }

    /// <summary>A new map with <paramref name="region"/> added; null if it overlaps an existing one.</summary>
    public RegionMap? WithAdded(Region region)
    {
        int at = 0;
        while (at < _regions.Length && _regions[at].Start < region.Start)
            at++;
        if (at > 0 && _regions[at - 1].End > region.Start)
            return null;
        if (at < _regions.Length && _regions[at].Start < region.End)
            return null;
        Region[] next = new Region[_regions.Length + 1];
        for (int i = 0; i < at; i++)
            next[i] = _regions[i];
        next[at] = region;
        for (int i = at; i < _regions.Length; i++)
            next[i + 1] = _regions[i];
        return new RegionMap(next);
    }

    /// <summary>A new map without <paramref name="region"/>; null if it is not in this map.</summary>
    public RegionMap? WithRemoved(Region region)
    {
        int at = -1;
        for (int i = 0; i < _regions.Length; i++)
        {
            if (_regions[i] == region)
                at = i;
        }
        if (at < 0)
            return null;
        Region[] next = new Region[_regions.Length - 1];
        int j = 0;
        for (int i = 0; i < _regions.Length; i++)
        {
            if (i != at)
                next[j++] = _regions[i];
        }
        return new RegionMap(next);
    }
}
