using System;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// Decodes the small set of x86 instructions guests use on MMIO (SDM Vol. 2A, chapter 2 and the
/// opcode map in Vol. 2D, appendix A): <c>mov</c>, <c>movzx</c>/<c>movsx</c>/<c>movsxd</c>, the
/// ALU group (<c>add or adc sbb and sub xor cmp</c>), <c>test</c>, <c>xchg</c>, <c>stos</c> and
/// <c>movs</c>, each only with a memory operand. Everything else is refused, never guessed.
/// </summary>
/// <remarks>
/// Rules for using this: pass the bytes at the guest's RIP (up to 15; fewer when the fetch stopped
/// at an unmapped page, in which case <see cref="MmioDecodeStatus.Truncated"/> means the missing
/// bytes were needed). The decoder allocates nothing and reads nothing but <c>code</c>.
/// Prefix handling follows the hardware (and Iced, against which it is tested on the host): the
/// last F2/F3 wins; in 64-bit code a REX prefix counts only directly before the opcode, and a
/// later ES/CS/SS/DS override does not replace an FS/GS one.
/// </remarks>
public static class MmioDecoder
{
    /// <summary>The architectural limit on instruction length (SDM Vol. 2A, 2.3.11).</summary>
    public const int MaxLength = 15;

    private const int RexW = 8, RexR = 4, RexX = 2, RexB = 1;

    /// <summary>Decodes the instruction at the start of <paramref name="code"/> in <paramref name="mode"/>.</summary>
    public static MmioDecodeStatus Decode(ReadOnlySpan<byte> code, CpuMode mode, out MmioInstruction insn)
    {
        insn = default;
        insn.Register = MmioInstruction.NoRegister;
        insn.Memory.Base = MmioMemoryOperand.NoRegister;
        insn.Memory.Index = MmioMemoryOperand.NoRegister;
        insn.Memory.Scale = 1;

        bool is64 = mode == CpuMode.Bits64;
        bool operandPrefix = false, addressPrefix = false, lockPrefix = false, repPrefix = false;
        int segment = -1;
        bool segmentFsGs = false;
        int rex = 0;
        int pos = 0;
        int op;
        while (true)
        {
            if (pos >= MaxLength)
                return MmioDecodeStatus.TooLong;
            if (pos >= code.Length)
                return MmioDecodeStatus.Truncated;
            op = code[pos];
            if (is64 && (op & 0xF0) == 0x40)
            {
                rex = op; // REX (SDM 2.2.1): only the last one, directly before the opcode, counts
                pos++;
                continue;
            }
            switch (op)
            {
                case 0x66: operandPrefix = true; break;
                case 0x67: addressPrefix = true; break;
                case 0xF0: lockPrefix = true; break;
                case 0xF2:
                case 0xF3: repPrefix = true; break;
                case 0x26:
                case 0x2E:
                case 0x36:
                case 0x3E:
                    // In 64-bit code these are null prefixes; they do not replace FS/GS.
                    if (!is64 || !segmentFsGs)
                        segment = (op >> 3) & 3;
                    break;
                case 0x64:
                case 0x65:
                    segment = op - 0x64 + (int)MmioSegment.Fs;
                    segmentFsGs = true;
                    break;
                default:
                    goto Opcode;
            }
            rex = 0; // a legacy prefix after REX cancels the REX
            pos++;
        }

    Opcode:
        pos++;
        int defaultSize = mode == CpuMode.Bits16 ? 2 : 4;
        int operandSize = (rex & RexW) != 0 ? 8 : operandPrefix ? 6 - defaultSize : defaultSize;
        int addressSize = is64 ? (addressPrefix ? 4 : 8) : (addressPrefix ? 6 - defaultSize : defaultSize);
        insn.Memory.AddressSize = (byte)addressSize;
        insn.OperandSize = (byte)operandSize;
        bool lockAllowed = false;
        MmioDecodeStatus status;
        int immediateSize = 0;
        bool immediateByteSignExtended = false;
        bool hasModRm = true;
        bool byteRegister = false;
        int regField = -1; // set by the ModRM decode

        if (op < 0x40 && (op & 7) < 4)
        {
            // 00-3F: op rm8,r8 / op rm,r / op r8,rm8 / op r,rm (SDM Vol. 2D, Table A-2).
            insn.Operation = AluOperation(op >> 3);
            insn.Direction = (op & 2) == 0 ? MmioDirection.ToMemory : MmioDirection.ToRegister;
            byteRegister = (op & 1) == 0;
            lockAllowed = insn.Direction == MmioDirection.ToMemory && insn.Operation != MmioOperation.Cmp;
        }
        else
        {
            switch (op)
            {
                case 0x63:
                    if (!is64)
                        return MmioDecodeStatus.UnsupportedOpcode; // ARPL
                    insn.Operation = MmioOperation.MovSxd;
                    insn.Direction = MmioDirection.ToRegister;
                    break;
                case 0x80:
                case 0x81:
                case 0x82:
                case 0x83:
                    if (op == 0x82 && is64)
                        return MmioDecodeStatus.UnsupportedOpcode;
                    insn.Direction = MmioDirection.ToMemory;
                    byteRegister = op != 0x81 && op != 0x83;
                    immediateSize = op == 0x81 ? Math.Min(operandSize, 4) : 1;
                    immediateByteSignExtended = op == 0x83;
                    break; // operation from ModRM.reg below
                case 0x84:
                case 0x85:
                    insn.Operation = MmioOperation.Test;
                    insn.Direction = MmioDirection.ToMemory;
                    byteRegister = op == 0x84;
                    break;
                case 0x86:
                case 0x87:
                    insn.Operation = MmioOperation.Xchg;
                    insn.Direction = MmioDirection.Exchange;
                    byteRegister = op == 0x86;
                    lockAllowed = true;
                    break;
                case 0x88:
                case 0x89:
                case 0x8A:
                case 0x8B:
                    insn.Operation = MmioOperation.Mov;
                    insn.Direction = op < 0x8A ? MmioDirection.ToMemory : MmioDirection.ToRegister;
                    byteRegister = (op & 1) == 0;
                    break;
                case 0xA0:
                case 0xA1:
                case 0xA2:
                case 0xA3:
                    insn.Operation = MmioOperation.Mov;
                    insn.Direction = op < 0xA2 ? MmioDirection.ToRegister : MmioDirection.ToMemory;
                    byteRegister = (op & 1) == 0;
                    hasModRm = false;
                    break;
                case 0xA4:
                case 0xA5:
                case 0xAA:
                case 0xAB:
                    insn.Operation = op < 0xA8 ? MmioOperation.Movs : MmioOperation.Stos;
                    insn.Direction = MmioDirection.ToMemory;
                    byteRegister = (op & 1) == 0;
                    insn.Rep = repPrefix;
                    hasModRm = false;
                    break;
                case 0xC6:
                case 0xC7:
                    insn.Operation = MmioOperation.Mov;
                    insn.Direction = MmioDirection.ToMemory;
                    byteRegister = op == 0xC6;
                    immediateSize = op == 0xC6 ? 1 : Math.Min(operandSize, 4);
                    break;
                case 0xF6:
                case 0xF7:
                    insn.Operation = MmioOperation.Test;
                    insn.Direction = MmioDirection.ToMemory;
                    byteRegister = op == 0xF6;
                    immediateSize = op == 0xF6 ? 1 : Math.Min(operandSize, 4);
                    break;
                case 0x0F:
                    status = Available(code, pos);
                    if (status != MmioDecodeStatus.Ok)
                        return status;
                    int op2 = code[pos++];
                    if (op2 != 0xB6 && op2 != 0xB7 && op2 != 0xBE && op2 != 0xBF)
                        return MmioDecodeStatus.UnsupportedOpcode;
                    insn.Operation = op2 < 0xB8 ? MmioOperation.MovZx : MmioOperation.MovSx;
                    insn.Direction = MmioDirection.ToRegister;
                    insn.MemorySize = (byte)((op2 & 1) == 0 ? 1 : 2);
                    break;
                default:
                    return MmioDecodeStatus.UnsupportedOpcode;
            }
        }

        if (byteRegister)
            insn.OperandSize = 1;
        if (insn.MemorySize == 0)
            insn.MemorySize = insn.Operation == MmioOperation.MovSxd ? (byte)Math.Min(operandSize, 4) : insn.OperandSize;

        if (hasModRm)
        {
            status = DecodeModRm(code, ref pos, mode, addressSize, rex, ref insn.Memory, out regField);
            if (status != MmioDecodeStatus.Ok)
                return status;
        }
        else if (insn.Operation == MmioOperation.Mov)
        {
            // A0-A3: moffs, an absolute offset of the address size (SDM Vol. 2B, MOV).
            ulong offset;
            status = ReadLittleEndian(code, ref pos, addressSize, out offset);
            if (status != MmioDecodeStatus.Ok)
                return status;
            insn.Memory.Displacement = (long)offset;
            insn.Register = 0;
        }
        else
        {
            // String instructions: the source (movs) is seg:[rSI]; stos and the destination of
            // movs are ES:[rDI], which no prefix overrides.
            insn.Memory.Base = (byte)(insn.Operation == MmioOperation.Movs ? 6 : 7);
        }
        insn.Memory.Segment = segment >= 0 ? (MmioSegment)segment
            : insn.Memory.Base == 4 || insn.Memory.Base == 5 ? MmioSegment.Ss : MmioSegment.Ds;
        if (insn.Operation == MmioOperation.Stos)
            insn.Memory.Segment = MmioSegment.Es;

        if (regField >= 0)
        {
            if (op >= 0x80 && op <= 0x83)
            {
                insn.Operation = AluOperation(regField & 7);
                lockAllowed = insn.Operation != MmioOperation.Cmp;
            }
            else if (op == 0xC6 || op == 0xC7)
            {
                if ((regField & 7) != 0)
                    return MmioDecodeStatus.UnsupportedForm;
            }
            else if (op == 0xF6 || op == 0xF7)
            {
                if ((regField & 7) > 1)
                    return MmioDecodeStatus.UnsupportedForm; // /0 and /1 are TEST; /2../7 are not MMIO forms
            }
            else if (insn.OperandSize == 1 && rex == 0 && regField >= 4 && regField < 8)
            {
                insn.Register = (sbyte)(regField - 4); // AH, CH, DH, BH
                insn.RegisterIsHighByte = true;
            }
            else
            {
                insn.Register = (sbyte)regField;
            }
        }

        if (immediateSize != 0)
        {
            ulong imm;
            status = ReadLittleEndian(code, ref pos, immediateSize, out imm);
            if (status != MmioDecodeStatus.Ok)
                return status;
            if (immediateSize == 1 && immediateByteSignExtended)
                imm = (ulong)(long)(sbyte)imm;
            else if (immediateSize == 4)
                imm = (ulong)(long)(int)imm;
            insn.Immediate = imm;
            insn.HasImmediate = true;
        }

        if (lockPrefix && !lockAllowed)
            return MmioDecodeStatus.InvalidLock;
        insn.Lock = lockPrefix;
        insn.Length = (byte)pos;
        return MmioDecodeStatus.Ok;
    }

    private static MmioOperation AluOperation(int family)
    {
        switch (family)
        {
            case 0: return MmioOperation.Add;
            case 1: return MmioOperation.Or;
            case 2: return MmioOperation.Adc;
            case 3: return MmioOperation.Sbb;
            case 4: return MmioOperation.And;
            case 5: return MmioOperation.Sub;
            case 6: return MmioOperation.Xor;
            default: return MmioOperation.Cmp;
        }
    }

    /// <summary>
    /// ModRM, SIB and displacement (SDM Vol. 2A, Tables 2-1, 2-2, 2-3 and 2.2.1.6). Refuses the
    /// register form (mod 3): the accepted instructions are the ones that touch memory.
    /// </summary>
    private static MmioDecodeStatus DecodeModRm(ReadOnlySpan<byte> code, ref int pos, CpuMode mode, int addressSize,
        int rex, ref MmioMemoryOperand mem, out int regField)
    {
        regField = -1;
        MmioDecodeStatus status = Available(code, pos);
        if (status != MmioDecodeStatus.Ok)
            return status;
        int modrm = code[pos++];
        int mod = modrm >> 6;
        int rm = modrm & 7;
        regField = ((modrm >> 3) & 7) | ((rex & RexR) != 0 ? 8 : 0);
        if (mod == 3)
            return MmioDecodeStatus.UnsupportedForm;

        int displacementSize;
        if (addressSize == 2)
        {
            // Table 2-1: [BX+SI] [BX+DI] [BP+SI] [BP+DI] [SI] [DI] [BP]/disp16 [BX].
            displacementSize = mod == 1 ? 1 : mod == 2 ? 2 : 0;
            switch (rm)
            {
                case 0: mem.Base = 3; mem.Index = 6; break;
                case 1: mem.Base = 3; mem.Index = 7; break;
                case 2: mem.Base = 5; mem.Index = 6; break;
                case 3: mem.Base = 5; mem.Index = 7; break;
                case 4: mem.Base = 6; break;
                case 5: mem.Base = 7; break;
                case 6:
                    if (mod == 0)
                        displacementSize = 2;
                    else
                        mem.Base = 5;
                    break;
                default: mem.Base = 3; break;
            }
        }
        else
        {
            displacementSize = mod == 1 ? 1 : mod == 2 ? 4 : 0;
            if (rm == 4)
            {
                status = Available(code, pos);
                if (status != MmioDecodeStatus.Ok)
                    return status;
                int sib = code[pos++];
                int index = ((sib >> 3) & 7) | ((rex & RexX) != 0 ? 8 : 0);
                if (index != 4)
                    mem.Index = (byte)index; // index 100b without REX.X means none; r12 is an index
                mem.Scale = (byte)(1 << (sib >> 6));
                if ((sib & 7) == 5 && mod == 0)
                    displacementSize = 4; // no base, disp32
                else
                    mem.Base = (byte)((sib & 7) | ((rex & RexB) != 0 ? 8 : 0));
            }
            else if (rm == 5 && mod == 0)
            {
                displacementSize = 4;
                if (mode == CpuMode.Bits64)
                    mem.Base = MmioMemoryOperand.Rip; // RIP-relative (SDM 2.2.1.6)
            }
            else
            {
                mem.Base = (byte)(rm | ((rex & RexB) != 0 ? 8 : 0));
            }
        }

        if (displacementSize != 0)
        {
            ulong raw;
            status = ReadLittleEndian(code, ref pos, displacementSize, out raw);
            if (status != MmioDecodeStatus.Ok)
                return status;
            mem.Displacement = displacementSize == 1 ? (sbyte)raw : displacementSize == 2 ? (short)raw : (int)raw;
        }
        return MmioDecodeStatus.Ok;
    }

    private static MmioDecodeStatus ReadLittleEndian(ReadOnlySpan<byte> code, ref int pos, int size, out ulong value)
    {
        value = 0;
        for (int i = 0; i < size; i++)
        {
            MmioDecodeStatus status = Available(code, pos);
            if (status != MmioDecodeStatus.Ok)
                return status;
            value |= (ulong)code[pos++] << (8 * i);
        }
        return MmioDecodeStatus.Ok;
    }

    /// <summary>Whether byte <paramref name="pos"/> of the instruction may be read: within 15 bytes and within <paramref name="code"/>.</summary>
    private static MmioDecodeStatus Available(ReadOnlySpan<byte> code, int pos)
    {
        if (pos >= MaxLength)
            return MmioDecodeStatus.TooLong;
        return pos < code.Length ? MmioDecodeStatus.Ok : MmioDecodeStatus.Truncated;
    }
}
