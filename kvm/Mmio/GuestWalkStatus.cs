namespace Tandem.Kvm.Mmio;

/// <summary>Why a guest-virtual address did not translate (would be #PF or #GP on hardware).</summary>
public enum GuestWalkStatus : byte
{
    /// <summary>Translated.</summary>
    Ok,

    /// <summary>An entry on the walk has P = 0.</summary>
    NotPresent,

    /// <summary>An entry on the walk has a reserved bit set (SDM Vol. 3A, 4.13 "RSVD").</summary>
    ReservedBit,

    /// <summary>A write to a read-only page (user code, or supervisor code with CR0.WP).</summary>
    WriteProtected,

    /// <summary>User code (CPL 3) touching a supervisor page.</summary>
    UserProtected,

    /// <summary>A fetch from a page with XD set, EFER.NXE on.</summary>
    NoExecute,

    /// <summary>A non-canonical address in long mode (#GP on hardware).</summary>
    NonCanonical,

    /// <summary>A page-table entry or the fetched bytes are not in guest RAM.</summary>
    MemoryError,

    /// <summary>A paging mode the walker does not implement (5-level paging).</summary>
    Unsupported,
}
