namespace Tandem.Kvm.Mmio;

/// <summary>
/// The vCPU's paging controls, read from the VMCS guest-state area (CR0, CR3, CR4, IA32_EFER, and
/// CPL from SS.DPL). The paging mode follows SDM Vol. 3A, 4.1.1: CR0.PG = 0 is no paging;
/// CR4.PAE = 0 is 32-bit paging; EFER.LMA = 1 is 4-level paging; otherwise PAE paging.
/// </summary>
public struct GuestPagingState
{
    /// <summary>CR0.WP (bit 16): supervisor writes honour R/W.</summary>
    public const ulong Cr0Wp = 1UL << 16;

    /// <summary>CR0.PG (bit 31): paging on.</summary>
    public const ulong Cr0Pg = 1UL << 31;

    /// <summary>CR4.PSE (bit 4): 4 MiB pages in 32-bit paging.</summary>
    public const ulong Cr4Pse = 1UL << 4;

    /// <summary>CR4.PAE (bit 5): 64-bit entries (PAE or 4-level paging).</summary>
    public const ulong Cr4Pae = 1UL << 5;

    /// <summary>CR4.LA57 (bit 12): 5-level paging (refused).</summary>
    public const ulong Cr4La57 = 1UL << 12;

    /// <summary>IA32_EFER.LMA (bit 10): long mode active.</summary>
    public const ulong EferLma = 1UL << 10;

    /// <summary>IA32_EFER.NXE (bit 11): the XD bit is honoured (otherwise it is reserved).</summary>
    public const ulong EferNxe = 1UL << 11;

    /// <summary>Guest CR0.</summary>
    public ulong Cr0;

    /// <summary>Guest CR3: the root table.</summary>
    public ulong Cr3;

    /// <summary>Guest CR4.</summary>
    public ulong Cr4;

    /// <summary>Guest IA32_EFER.</summary>
    public ulong Efer;

    /// <summary>Current privilege level: 3 means user accesses (U/S checked).</summary>
    public byte Cpl;

    /// <summary>MAXPHYADDR (CPUID 80000008H:EAX[7:0]); entry bits at and above it are reserved.
    /// 0 means 52.</summary>
    public byte MaxPhysAddrBits;
}
