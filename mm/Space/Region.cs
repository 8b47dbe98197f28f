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

    /// <summary>An anonymous demand-zero region.</summary>
    public static Region Anonymous(VirtAddr start, ulong size, PageProt prot)
    {
        return new Region(start, start + size, RegionKind.Anonymous, prot, default, null);
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
