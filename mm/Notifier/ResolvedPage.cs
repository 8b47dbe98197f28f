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

    /// <summary>Creates a result.</summary>
    public ResolvedPage(Pfn frame, bool writable, bool holdsReference)
    {
        Frame = frame;
        Writable = writable;
        HoldsReference = holdsReference;
    }
}
