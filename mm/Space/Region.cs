using System;

namespace Tandem.Mm;

/// <summary>An immutable range of an address space with one kind of backing and one protection.</summary>
public sealed class Region
{
    /// <summary>First byte (4 KiB aligned).</summary>
    public readonly VirtAddr Start;
    /// <summary>One past the last byte (4 KiB aligned).</summary>
    public readonly VirtAddr End;
    /// <summary>Backing.</summary>
    public readonly RegionKind Kind;
    /// <summary>Rights of new mappings.</summary>
    public readonly PageProt Prot;
    /// <summary>For <see cref="RegionKind.Fixed"/>: the physical address mapped at <see cref="Start"/>.</summary>
    public readonly PhysAddr FixedBase;
    /// <summary>Non-null: missing pages go to this handler (userfault region).</summary>
    public readonly IUserfaultHandler? Userfault;
    private int _mergeable;
    private int _hugePages;

    /// <summary>Creates a region.</summary>
    public Region(VirtAddr start, VirtAddr end, RegionKind kind, PageProt prot, PhysAddr fixedBase, IUserfaultHandler? userfault)
    {
        if (!start.IsAligned(PageSizes.Size4K) || !end.IsAligned(PageSizes.Size4K) || end <= start)
            throw new ArgumentException("Region: bad bounds");
        Start = start;
        End = end;
        Kind = kind;
        Prot = prot;
        FixedBase = fixedBase;
        Userfault = userfault;
    }

    /// <summary>
    /// Anonymous memory whose identical pages the merge scanner may share (mm/Merge). Only
    /// anonymous regions without a userfault handler can be mergeable. Turning it off stops new
    /// merges in the region; pages already shared stay shared until written (copy-on-write).
    /// </summary>
    public bool Mergeable
    {
        // Acquire/release: a plain flag read by the scanner on every pass.
        get { return System.Threading.Volatile.Read(ref _mergeable) != 0; }
        set { System.Threading.Volatile.Write(ref _mergeable, value && Kind == RegionKind.Anonymous && Userfault == null ? 1 : 0); }
    }

    /// <summary>
    /// Anonymous memory that a fault may back with a tracked 2 MiB page (compare Linux's
    /// transparent huge pages with <c>MADV_HUGEPAGE</c>): a demand fault whose 2 MiB-aligned span
    /// lies wholly inside the region, where nothing is mapped yet and a free 2 MiB block exists,
    /// maps the whole span with one leaf; otherwise it maps 4 KiB as before. The page is aged as
    /// one unit and split into 512 tracked 4 KiB pages (through the notifiers) before any part of
    /// it is evicted, unmapped or protected alone. Only anonymous regions without a userfault
    /// handler can have it; off by default.
    /// </summary>
    public bool HugePages
    {
        get { return System.Threading.Volatile.Read(ref _hugePages) != 0; }
        set { System.Threading.Volatile.Write(ref _hugePages, value && Kind == RegionKind.Anonymous && Userfault == null ? 1 : 0); }
    }

    /// <summary>An anonymous demand-zero region, mergeable (the default for anonymous memory and
    /// guest RAM: nothing merges unless a merge scanner runs; turn it off with <see cref="Mergeable"/>).</summary>
    public static Region Anonymous(VirtAddr start, ulong size, PageProt prot)
    {
        return Anonymous(start, size, prot, true);
    }

    /// <summary>An anonymous demand-zero region; <paramref name="mergeable"/>: see <see cref="Mergeable"/>.</summary>
    public static Region Anonymous(VirtAddr start, ulong size, PageProt prot, bool mergeable)
    {
        Region r = new Region(start, start + size, RegionKind.Anonymous, prot, default, null);
        r.Mergeable = mergeable;
        return r;
    }

    /// <summary>An anonymous region whose missing pages go to <paramref name="handler"/>.</summary>
    public static Region UserfaultAnonymous(VirtAddr start, ulong size, PageProt prot, IUserfaultHandler handler)
    {
        return new Region(start, start + size, RegionKind.Anonymous, prot, default, handler);
    }

    /// <summary>A fixed mapping of <c>[physical, physical + size)</c>.</summary>
    public static Region Fixed(VirtAddr start, ulong size, PageProt prot, PhysAddr physical)
    {
        return new Region(start, start + size, RegionKind.Fixed, prot, physical, null);
    }

    /// <summary>True when <paramref name="address"/> is inside.</summary>
    public bool Contains(VirtAddr address) { return address >= Start && address < End; }
}
