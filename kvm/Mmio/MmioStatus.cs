namespace Tandem.Kvm.Mmio;

/// <summary>The outcome of one emulation step. Anything but <see cref="Done"/> leaves RIP where it
/// was; the VMM injects #UD or stops the VM with a dump (docs/mmio.md).</summary>
public enum MmioStatus : byte
{
    /// <summary>Emulated; registers, RFLAGS and RIP updated.</summary>
    Done,

    /// <summary>The decoder refused the instruction (see the decode status).</summary>
    Refused,

    /// <summary>The instruction bytes could not be fetched (see the walk status and fault address).</summary>
    FetchFault,

    /// <summary>A data address did not translate (see the walk status and fault address).</summary>
    AccessFault,

    /// <summary>A data access crosses a page boundary (not emulated).</summary>
    SplitAccess,

    /// <summary>The bus had nothing at a guest-physical address.</summary>
    BusError,

    /// <summary>A REP string instruction did a bounded number of iterations and rCX is not yet 0:
    /// registers are updated, RIP is not, so the guest executes it again (as hardware does after
    /// an interrupt in the middle of a REP).</summary>
    Partial,
}
