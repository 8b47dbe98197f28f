using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// One guest memory slot: <see cref="Pages"/> guest frames from <see cref="BaseGfn"/> backed by the
/// host virtual range from <see cref="HostBase"/> in the VM's address space. Immutable.
/// </summary>
public sealed class Memslot
{
    /// <summary>First guest frame.</summary>
    public readonly Gfn BaseGfn;
    /// <summary>Number of 4 KiB frames.</summary>
    public readonly ulong Pages;
    /// <summary>Host virtual address backing <see cref="BaseGfn"/> (4 KiB aligned).</summary>
    public readonly VirtAddr HostBase;
    /// <summary>False: the guest may only read (writes are EPT violations that fail).</summary>
    public readonly bool Writable;

    /// <summary>
    /// Creates a slot. Throws <see cref="System.ArgumentException"/> unless it has at least one page,
    /// its host base is 4 KiB aligned, its guest range ends at or below 2^48 (what a 4-level EPT
    /// maps) and its host range ends at or below 2^47 (the user half), without overflow.
    /// </summary>
    public Memslot(Gfn baseGfn, ulong pages, VirtAddr hostBase, bool writable)
    {
        const ulong guestFrames = 1UL << 36;     // 2^48 bytes of guest-physical space
        const ulong hostTop = 1UL << 47;
        if (pages == 0)
            throw new System.ArgumentException("Memslot: no pages");
        if (!hostBase.IsAligned(PageSizes.Size4K))
            throw new System.ArgumentException("Memslot: host base not 4 KiB aligned");
        if (baseGfn.Value >= guestFrames || pages > guestFrames - baseGfn.Value)
            throw new System.ArgumentException("Memslot: guest range reaches above 2^48");
        if (hostBase.Value >= hostTop || pages > (hostTop - hostBase.Value) >> PageSizes.Shift4K)
            throw new System.ArgumentException("Memslot: host range reaches above the user half (2^47)");
        BaseGfn = baseGfn;
        Pages = pages;
        HostBase = hostBase;
        Writable = writable;
    }

    /// <summary>One past the last guest frame.</summary>
    public ulong EndGfn { get { return BaseGfn.Value + Pages; } }

    /// <summary>One past the last host byte.</summary>
    public VirtAddr HostEnd { get { return HostBase + (Pages << PageSizes.Shift4K); } }

    /// <summary>True when <paramref name="gfn"/> is inside.</summary>
    public bool Contains(Gfn gfn) { return gfn.Value >= BaseGfn.Value && gfn.Value < EndGfn; }

    /// <summary>The host address of <paramref name="gfn"/> (which must be inside).</summary>
    public VirtAddr HostAddressOf(Gfn gfn) { return HostBase + ((gfn.Value - BaseGfn.Value) << PageSizes.Shift4K); }

    /// <summary>The guest-physical address backed by host address <paramref name="hva"/> (which must be inside).</summary>
    public GuestPhysAddr GuestAddressOf(VirtAddr hva) { return new GuestPhysAddr((BaseGfn.Value << PageSizes.Shift4K) + (hva - HostBase)); }
}
