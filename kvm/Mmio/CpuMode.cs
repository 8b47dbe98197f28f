namespace Tandem.Kvm.Mmio;

/// <summary>
/// The code size the guest runs in, from CS.L and CS.D (SDM Vol. 3A, 3.4.5): CS.L = 1 in long
/// mode is 64-bit code; otherwise CS.D = 1 is 32-bit and CS.D = 0 is 16-bit (real mode too).
/// </summary>
public enum CpuMode : byte
{
    /// <summary>16-bit code: operand and address size 16 by default.</summary>
    Bits16 = 16,

    /// <summary>32-bit code: operand and address size 32 by default.</summary>
    Bits32 = 32,

    /// <summary>64-bit code: operand size 32 and address size 64 by default, REX prefixes.</summary>
    Bits64 = 64,
}
