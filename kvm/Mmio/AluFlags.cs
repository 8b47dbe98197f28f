using System.Numerics;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// The arithmetic of the ALU group and the status flags it leaves (SDM Vol. 1, 3.4.3.1 and
/// appendix A; Vol. 2 per instruction). Carry and overflow come from the top bit of the operand
/// width: CF = carry (borrow) out, OF = signed overflow, AF = carry out of bit 3. The logical
/// operations clear CF and OF; AF is undefined for them and left 0 here.
/// </summary>
public static class AluFlags
{
    /// <summary>Computes <paramref name="a"/> op <paramref name="b"/> at <paramref name="size"/>
    /// bytes, returns the result (masked to the width) and sets the status flags in
    /// <paramref name="rflags"/>. <c>adc</c>/<c>sbb</c> take CF from it.</summary>
    public static ulong Compute(MmioOperation op, int size, ulong a, ulong b, ref ulong rflags)
    {
        ulong mask = size == 8 ? ulong.MaxValue : (1UL << (8 * size)) - 1;
        ulong sign = 1UL << (8 * size - 1);
        a &= mask;
        b &= mask;
        ulong carryIn = (rflags & MmioVcpuState.FlagCf) != 0 ? 1UL : 0UL;
        ulong r;
        ulong flags = 0;
        switch (op)
        {
            case MmioOperation.Add:
            case MmioOperation.Adc:
                r = (a + b + (op == MmioOperation.Adc ? carryIn : 0)) & mask;
                if ((((a & b) | ((a | b) & ~r)) & sign) != 0)
                    flags |= MmioVcpuState.FlagCf;
                if (((a ^ r) & (b ^ r) & sign) != 0)
                    flags |= MmioVcpuState.FlagOf;
                flags |= (a ^ b ^ r) & MmioVcpuState.FlagAf;
                break;
            case MmioOperation.Sub:
            case MmioOperation.Sbb:
            case MmioOperation.Cmp:
                r = (a - b - (op == MmioOperation.Sbb ? carryIn : 0)) & mask;
                if ((((~a & b) | (~(a ^ b) & r)) & sign) != 0)
                    flags |= MmioVcpuState.FlagCf;
                if (((a ^ b) & (a ^ r) & sign) != 0)
                    flags |= MmioVcpuState.FlagOf;
                flags |= (a ^ b ^ r) & MmioVcpuState.FlagAf;
                break;
            case MmioOperation.Or:
                r = a | b;
                break;
            case MmioOperation.Xor:
                r = a ^ b;
                break;
            default: // And, Test
                r = a & b;
                break;
        }
        if (r == 0)
            flags |= MmioVcpuState.FlagZf;
        if ((r & sign) != 0)
            flags |= MmioVcpuState.FlagSf;
        if ((BitOperations.PopCount((uint)(r & 0xFF)) & 1) == 0)
            flags |= MmioVcpuState.FlagPf;
        rflags = (rflags & ~MmioVcpuState.StatusFlags) | flags;
        return r;
    }
}
