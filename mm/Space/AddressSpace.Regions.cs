using System.Threading;

namespace Tandem.Mm;

public sealed partial class AddressSpace<TPlatform>
{
    /// <summary>Adds a region (replacing the region map as a whole). False if it overlaps or lies above <see cref="UserTop"/>.</summary>
    public bool AddRegion(Region region)
    {
        if (region.End.Value > UserTop)
            return false;
        _regionLock.Enter(_platform);
        RegionMap old = _regions;
        RegionMap? next = old.WithAdded(region);
        if (next != null)
        {
            // Release: the new map is fully built before it is published; pairs with the
            // Volatile.Read in Regions.
            Volatile.Write(ref _regions, next);
        }
        _regionLock.Exit(_platform);
        if (next == null)
            return false;
        _platform.DeferFree(old);
        return true;
    }

    /// <summary>Removes a region and unmaps its range. False if it is not in the map.</summary>
    public bool RemoveRegion(Region region)
    {
        _regionLock.Enter(_platform);
        RegionMap old = _regions;
        RegionMap? next = old.WithRemoved(region);
        if (next != null)
        {
            // Release; pairs with the Volatile.Read in Regions.
            Volatile.Write(ref _regions, next);
        }
        _regionLock.Exit(_platform);
        if (next == null)
            return false;
        _platform.DeferFree(old);
        // Faults that read the old map may still install an entry in the range until they finish;
        // unmapping after publication removes what they installed before this point. (Concurrent
        // faults on a region being removed are a caller bug; the kernel quiesces users first.)
        Unmap(region.Start, region.End);
        return true;
    }
}
