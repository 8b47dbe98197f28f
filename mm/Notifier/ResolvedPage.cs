namespace Tandem.Mm;

/// <summary>The answer of <see cref="IAddressSpace.ResolveForSecondary"/>.</summary>
public readonly struct ResolvedPage
{
    /// <summary>The 4 KiB frame that backs the address now.</summary>
    public readonly Pfn Frame;
    /// <summary>The primary entry allows writes.</summary>
    public readonly bool Writable;
    /// <summary>The caller holds a frame reference that must be released.</summary>
    public readonly bool HoldsReference;
    /// <summary>The level of the primary leaf: 1 for 4 KiB, 2 for 2 MiB, 3 for 1 GiB (a secondary may map as large).</summary>
    public readonly int Level;

    /// <summary>Creates a result.</summary>
    public ResolvedPage(Pfn frame, bool writable, bool holdsReference, int level = 1)
    {
        Frame = frame;
        Writable = writable;
        HoldsReference = holdsReference;
        Level = level;
    }
}
