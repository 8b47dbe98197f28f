namespace Tandem.Kvm.Mmio;

/// <summary>What an accepted instruction does to its memory operand.</summary>
public enum MmioOperation : byte
{
    /// <summary>Nothing decoded.</summary>
    None,

    /// <summary><c>mov</c> (88, 89, 8A, 8B, C6 /0, C7 /0, A0-A3).</summary>
    Mov,

    /// <summary><c>movzx</c> (0F B6, 0F B7): the memory operand zero-extended into the register.</summary>
    MovZx,

    /// <summary><c>movsx</c> (0F BE, 0F BF): the memory operand sign-extended into the register.</summary>
    MovSx,

    /// <summary><c>movsxd</c> (63, 64-bit code only): a 32-bit (16 with 66) operand sign-extended.</summary>
    MovSxd,

    /// <summary><c>add</c> (00-03, 80/81/83 /0).</summary>
    Add,

    /// <summary><c>or</c> (08-0B, 80/81/83 /1).</summary>
    Or,

    /// <summary><c>adc</c> (10-13, 80/81/83 /2).</summary>
    Adc,

    /// <summary><c>sbb</c> (18-1B, 80/81/83 /3).</summary>
    Sbb,

    /// <summary><c>and</c> (20-23, 80/81/83 /4).</summary>
    And,

    /// <summary><c>sub</c> (28-2B, 80/81/83 /5).</summary>
    Sub,

    /// <summary><c>xor</c> (30-33, 80/81/83 /6).</summary>
    Xor,

    /// <summary><c>cmp</c> (38-3B, 80/81/83 /7): flags only.</summary>
    Cmp,

    /// <summary><c>test</c> (84, 85, F6/F7 /0 and /1): flags only.</summary>
    Test,

    /// <summary><c>xchg</c> (86, 87): memory and register swapped.</summary>
    Xchg,

    /// <summary><c>stos</c> (AA, AB), with or without REP: accumulator stored at ES:rDI.</summary>
    Stos,

    /// <summary><c>movs</c> (A4, A5), with or without REP: seg:rSI copied to ES:rDI.</summary>
    Movs,
}
