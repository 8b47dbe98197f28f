namespace Tandem.Kvm.Mmio;

/// <summary>The decoder's verdict. Anything but <see cref="Ok"/> is a refusal: the instruction is
/// not emulated (see docs/mmio.md for what the VMM does then).</summary>
public enum MmioDecodeStatus : byte
{
    /// <summary>Decoded: one of the accepted forms.</summary>
    Ok,

    /// <summary>The bytes ran out before the instruction ended (the caller may fetch more, up to 15).</summary>
    Truncated,

    /// <summary>The instruction would be longer than 15 bytes (#GP on hardware).</summary>
    TooLong,

    /// <summary>An opcode outside the accepted set (or invalid in this mode).</summary>
    UnsupportedOpcode,

    /// <summary>An accepted opcode in a form that does not touch memory (ModRM.mod = 3), or a
    /// ModRM.reg extension outside the accepted ones (C6 /1, F6 /2, ...).</summary>
    UnsupportedForm,

    /// <summary>A LOCK prefix on an instruction that does not allow it (#UD on hardware).</summary>
    InvalidLock,
}
