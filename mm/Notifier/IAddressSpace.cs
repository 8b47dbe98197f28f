namespace Tandem.Mm;

/// <summary>
/// What a secondary MMU sees of an address space: its identity, the primary-MMU lookup a
/// secondary fault resolves through, and the frame-state updates a secondary reports back.
/// Implemented by <c>AddressSpace&lt;TPlatform&gt;</c>; non-generic so notifiers need no platform.
/// </summary>
public interface IAddressSpace
{
    /// <summary>A small unique id (also the TLB tag).</summary>
    int Id { get; }

    /// <summary>
    /// Takes a user reference, so the page tables stay while the caller resolves through them.
    /// False when the address space is being torn down (the caller fails its fault with Dead).
    /// </summary>
    bool TryGetUser();

    /// <summary>Drops a reference taken by <see cref="TryGetUser"/>.</summary>
    void PutUser();

    /// <summary>
    /// Resolves <paramref name="address"/> through the primary MMU for a secondary fault, faulting
    /// the page in (demand-zero, userfault wait) when it is missing. On success the result holds a
    /// reference to the frame (unless the mapping is a fixed, untracked one) which the caller drops
    /// with <see cref="ReleaseResolved"/> after installing (or abandoning) its entry.
    /// </summary>
    /// <remarks>
    /// Rules for using this: call it after <see cref="InvalidationSequence.ReadBegin"/> and before
    /// taking your MMU lock; install only if <see cref="InvalidationSequence.RetryUnderLock"/> says so.
    /// </remarks>
    FaultStatus ResolveForSecondary(VirtAddr address, bool write, out ResolvedPage page);

    /// <summary>Drops the reference taken by <see cref="ResolveForSecondary"/>.</summary>
    void ReleaseResolved(in ResolvedPage page);

    /// <summary>Marks a frame dirty: a secondary found its dirty bit set while zapping or aging.</summary>
    void MarkFrameDirty(Pfn frame);
}
