using System;
using Tandem.Kvm.Vmx;

namespace Tandem.Kvm.Mmio;

public static partial class MmioEmulator
{
    /// <summary>
    /// INS and OUTS, with or without REP (SDM Vol. 2B, INS/INSB/INSW/INSD, OUTS/OUTSB/OUTSW/OUTSD;
    /// the exit qualification, SDM Vol. 3C table 28-5, gives the port, the element size, the
    /// direction and REP). The instruction's own bytes give what the exit does not: the address size
    /// (0x67) and, for OUTS, a segment override; the opcode must agree with the qualification.
    /// INS writes <c>ES:rDI</c>, OUTS reads <c>seg:rSI</c> (DS unless overridden); each element
    /// moves rDI or rSI by the size, down when RFLAGS.DF is set, and REP counts rCX down, all in the
    /// address size. An element is translated before the port is touched, so a fault never loses
    /// input. At most <see cref="MaxRepIterations"/> elements per call: <see cref="MmioStatus.Partial"/>
    /// leaves RIP on the instruction, which the guest executes again (taking interrupts between
    /// slices, as REP does); <see cref="MmioStatus.Done"/> moves RIP past it. From the exit:
    /// <paramref name="input"/> (INS) or OUTS, the <paramref name="port"/> (DX), the element
    /// <paramref name="size"/> (1, 2 or 4) and <paramref name="rep"/>.
    /// </summary>
    public static MmioStatus PortString<TPorts, TBus, TMemory>(ref TPorts ports, ref TBus bus, ref TMemory memory, ref GuestRegisters regs,
        ref MmioVcpuState cpu, bool input, ushort port, int size, bool rep, Span<byte> bytes, out int byteCount,
        out GuestWalkStatus walk, out ulong faultLinear)
        where TPorts : struct, IPortIo
        where TBus : struct, IMmioBus
        where TMemory : struct, IGuestPhysicalReader
    {
        walk = GuestWalkStatus.Ok;
        faultLinear = 0;
        bool is64 = cpu.Mode == CpuMode.Bits64;
        ulong ripLinear = is64 ? cpu.Rip : (cpu.CsBase + cpu.Rip) & 0xFFFF_FFFFUL;
        if (bytes.Length > MmioDecoder.MaxLength)
            bytes = bytes.Slice(0, MmioDecoder.MaxLength);
        byteCount = InstructionFetcher.Fetch(ref memory, cpu.Paging, ripLinear, !is64, bytes, out walk);
        if (size != 1 && size != 2 && size != 4)
            return MmioStatus.Refused;

        // Prefixes, then the opcode (6C INSB, 6D INSW/D, 6E OUTSB, 6F OUTSW/D).
        int addressSize = cpu.Mode == CpuMode.Bits64 ? 8 : cpu.Mode == CpuMode.Bits32 ? 4 : 2;
        MmioSegment segment = MmioSegment.Ds;
        int at = 0;
        bool addressOverride = false;
        while (true)
        {
            if (at >= byteCount)
            {
                if (walk != GuestWalkStatus.Ok)
                {
                    faultLinear = ripLinear + (ulong)at;
                    return MmioStatus.FetchFault;
                }
                return MmioStatus.Refused;
            }
            byte b = bytes[at];
            if (b == 0x67)
                addressOverride = true;
            else if (b == 0x26) segment = MmioSegment.Es;
            else if (b == 0x2E) segment = MmioSegment.Cs;
            else if (b == 0x36) segment = MmioSegment.Ss;
            else if (b == 0x3E) segment = MmioSegment.Ds;
            else if (b == 0x64) segment = MmioSegment.Fs;
            else if (b == 0x65) segment = MmioSegment.Gs;
            else if (b == 0x66 || b == 0xF2 || b == 0xF3)
            {
                // operand size and REP: the qualification already says what they meant
            }
            else if (is64 && b >= 0x40 && b <= 0x4F && at + 1 < byteCount && bytes[at + 1] >= 0x6C && bytes[at + 1] <= 0x6F)
            {
                // a REX prefix right before the opcode: ignored by INS/OUTS
            }
            else
                break;
            at++;
        }
        walk = GuestWalkStatus.Ok;
        byte opcode = bytes[at];
        bool opcodeInput = opcode == 0x6C || opcode == 0x6D;
        if (opcode < 0x6C || opcode > 0x6F || opcodeInput != input || ((opcode & 1) == 0) != (size == 1))
            return MmioStatus.Refused;     // not what the exit said: the code changed under us
        int length = at + 1;
        if (addressOverride)
            addressSize = addressSize == 4 ? 2 : 4;

        ulong addressMask = SizeMask(addressSize);
        ulong count = rep ? regs.Rcx & addressMask : 1;
        ulong step = (cpu.Rflags & MmioVcpuState.FlagDf) != 0 ? (ulong)(-size) : (ulong)size;
        ulong iterations = Math.Min(count, (ulong)MaxRepIterations);
        bool is32Linear = !is64;
        bool stopped = false;
        for (ulong i = 0; i < iterations && !stopped; i++)
        {
            if (input)
            {
                ulong destination = cpu.SegmentBase(MmioSegment.Es) + (regs.Rdi & addressMask);
                if (is32Linear)
                    destination &= 0xFFFF_FFFFUL;
                MmioStatus t = Translate(ref memory, cpu, destination, size, GuestAccessKind.Write, out ulong gpa, ref walk, ref faultLinear);
                if (t != MmioStatus.Done)
                    return t;
                uint value = ports.Read(port, size);
                if (!bus.Write(gpa, size, Mask(value, size)))
                    return MmioStatus.BusError;
                SetAddressRegister(ref regs.Rdi, regs.Rdi + step, addressSize);
            }
            else
            {
                ulong source = cpu.SegmentBase(segment) + (regs.Rsi & addressMask);
                if (is32Linear)
                    source &= 0xFFFF_FFFFUL;
                MmioStatus t = Translate(ref memory, cpu, source, size, GuestAccessKind.Read, out ulong gpa, ref walk, ref faultLinear);
                if (t != MmioStatus.Done)
                    return t;
                if (!bus.Read(gpa, size, out ulong value))
                    return MmioStatus.BusError;
                stopped = !ports.Write(port, size, (uint)value);
                SetAddressRegister(ref regs.Rsi, regs.Rsi + step, addressSize);
            }
            if (rep)
                SetAddressRegister(ref regs.Rcx, regs.Rcx - 1, addressSize);
        }
        if (rep && (regs.Rcx & addressMask) != 0)
            return MmioStatus.Partial;
        ulong next = cpu.Rip + (ulong)length;
        cpu.Rip = cpu.Mode == CpuMode.Bits64 ? next : cpu.Mode == CpuMode.Bits32 ? next & 0xFFFF_FFFFUL : next & 0xFFFFUL;
        return MmioStatus.Done;
    }
}
