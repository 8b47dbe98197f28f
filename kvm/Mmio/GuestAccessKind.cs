namespace Tandem.Kvm.Mmio;

/// <summary>The kind of access a translation is for: it decides which permission bits count.</summary>
public enum GuestAccessKind : byte
{
    /// <summary>A data read.</summary>
    Read,

    /// <summary>A data write (checks R/W; for supervisor code only with CR0.WP).</summary>
    Write,

    /// <summary>An instruction fetch (checks XD when EFER.NXE is set).</summary>
    Fetch,
}
