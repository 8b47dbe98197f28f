namespace Tandem.Kvm.Mmio;

/// <summary>
/// One decoded instruction from the accepted MMIO set (see <see cref="MmioDecoder"/> and
/// docs/mmio.md). Every field is filled by the decoder; the emulator needs nothing else.
/// </summary>
public struct MmioInstruction
{
    /// <summary>No register operand (immediate forms, string instructions).</summary>
    public const sbyte NoRegister = -1;

    /// <summary>Length in bytes, prefixes included (1-15); RIP advances by this much.</summary>
    public byte Length;

    /// <summary>What the instruction does.</summary>
    public MmioOperation Operation;

    /// <summary>Which way data moves.</summary>
    public MmioDirection Direction;

    /// <summary>Operand size in bytes (1, 2, 4, 8): the register's width, the ALU width.</summary>
    public byte OperandSize;

    /// <summary>Size of the memory access in bytes; differs from <see cref="OperandSize"/> only for
    /// <c>movzx</c>/<c>movsx</c>/<c>movsxd</c>.</summary>
    public byte MemorySize;

    /// <summary>The register operand by SDM encoding (0-15), or <see cref="NoRegister"/>.
    /// The accumulator forms (A0-A3) report 0.</summary>
    public sbyte Register;

    /// <summary>True for AH, CH, DH, BH: a byte register 4-7 without any REX prefix, meaning bits
    /// 8-15 of register <see cref="Register"/> (0-3).</summary>
    public bool RegisterIsHighByte;

    /// <summary>True if the instruction has an immediate (<see cref="Immediate"/>).</summary>
    public bool HasImmediate;

    /// <summary>The immediate, sign-extended to 64 bits where the SDM says so (imm8 of 83,
    /// imm32 of 64-bit forms); only the low <see cref="OperandSize"/> bytes count.</summary>
    public ulong Immediate;

    /// <summary>The memory operand (for <c>movs</c>, the source; the destination is ES:rDI).</summary>
    public MmioMemoryOperand Memory;

    /// <summary>A LOCK prefix (accepted only where the SDM allows it).</summary>
    public bool Lock;

    /// <summary>REP (F3, or F2, which <c>stos</c>/<c>movs</c> treat the same): repeat rCX times.
    /// Only set on string instructions.</summary>
    public bool Rep;
}
