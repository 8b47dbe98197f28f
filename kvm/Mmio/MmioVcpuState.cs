namespace Tandem.Kvm.Mmio;

/// <summary>
/// The vCPU state the emulator needs besides the general registers of
/// <see cref="Tandem.Kvm.Vmx.GuestRegisters"/>: what the VMCS holds (RIP, RSP, RFLAGS, the code
/// size from CS, the segment bases, the paging controls). The VMM fills it from the VMCS before
/// the step and writes RIP, RSP and RFLAGS back after it.
/// </summary>
public struct MmioVcpuState
{
    /// <summary>RFLAGS.CF (bit 0).</summary>
    public const ulong FlagCf = 1UL << 0;

    /// <summary>RFLAGS.PF (bit 2).</summary>
    public const ulong FlagPf = 1UL << 2;

    /// <summary>RFLAGS.AF (bit 4).</summary>
    public const ulong FlagAf = 1UL << 4;

    /// <summary>RFLAGS.ZF (bit 6).</summary>
    public const ulong FlagZf = 1UL << 6;

    /// <summary>RFLAGS.SF (bit 7).</summary>
    public const ulong FlagSf = 1UL << 7;

    /// <summary>RFLAGS.DF (bit 10): string instructions count down.</summary>
    public const ulong FlagDf = 1UL << 10;

    /// <summary>RFLAGS.OF (bit 11).</summary>
    public const ulong FlagOf = 1UL << 11;

    /// <summary>The six status flags the ALU instructions write.</summary>
    public const ulong StatusFlags = FlagCf | FlagPf | FlagAf | FlagZf | FlagSf | FlagOf;

    /// <summary>Guest RIP (the faulting instruction); advanced by the emulator.</summary>
    public ulong Rip;

    /// <summary>Guest RSP (register 4, which lives in the VMCS).</summary>
    public ulong Rsp;

    /// <summary>Guest RFLAGS.</summary>
    public ulong Rflags;

    /// <summary>Code size from CS.L / CS.D.</summary>
    public CpuMode Mode;

    /// <summary>Segment bases (ES, CS, SS, DS, FS, GS); in 64-bit code only FS and GS count.</summary>
    public ulong EsBase, CsBase, SsBase, DsBase, FsBase, GsBase;

    /// <summary>The paging controls for the software walk.</summary>
    public GuestPagingState Paging;

    /// <summary>The base of <paramref name="segment"/> as the address computation uses it.</summary>
    public readonly ulong SegmentBase(MmioSegment segment)
    {
        switch (segment)
        {
            case MmioSegment.Fs: return FsBase;
            case MmioSegment.Gs: return GsBase;
        }
        if (Mode == CpuMode.Bits64)
            return 0; // SDM 3.4.4: ES, CS, SS and DS have base 0 in 64-bit mode
        switch (segment)
        {
            case MmioSegment.Es: return EsBase;
            case MmioSegment.Cs: return CsBase;
            case MmioSegment.Ss: return SsBase;
            default: return DsBase;
        }
    }
}
