using System;
using Iced.Intel;
using Tandem.Kvm.Mmio;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>
/// Iced as the reference for <see cref="MmioDecoder"/>: which Iced decodings belong to the accepted
/// set, and whether a decoding of ours says the same as Iced's.
/// </summary>
internal sealed class IcedOracle
{
    private sealed class BufferReader : CodeReader
    {
        public byte[] Bytes = Array.Empty<byte>();
        public int Length;
        public int Position;

        public override int ReadByte() => Position < Length ? Bytes[Position++] : -1;
    }

    private readonly BufferReader _reader = new();
    private readonly Decoder _decoder;

    public IcedOracle(int bitness)
    {
        _decoder = Decoder.Create(bitness, _reader, 0, DecoderOptions.None);
    }

    public Instruction Decode(byte[] bytes, int length)
    {
        _reader.Bytes = bytes;
        _reader.Length = length;
        _reader.Position = 0;
        _decoder.IP = 0;
        _decoder.Decode(out Instruction instruction);
        return instruction;
    }

    /// <summary>True if Iced's decoding is one of the forms <see cref="MmioDecoder"/> must accept.</summary>
    public static bool InAcceptedSet(in Instruction i)
    {
        if (i.Code == Code.INVALID)
            return false;
        bool memory = false;
        for (int n = 0; n < i.OpCount; n++)
        {
            OpKind k = i.GetOpKind(n);
            if (k == OpKind.Memory || IsStringMemory(k))
                memory = true;
            if (k == OpKind.Register && i.GetOpRegister(n).IsSegmentRegister())
                return false; // mov Sreg forms
        }
        if (!memory)
            return false;
        switch (i.Mnemonic)
        {
            case Mnemonic.Mov:
            case Mnemonic.Movzx:
            case Mnemonic.Movsx:
            case Mnemonic.Movsxd:
            case Mnemonic.Add:
            case Mnemonic.Or:
            case Mnemonic.Adc:
            case Mnemonic.Sbb:
            case Mnemonic.And:
            case Mnemonic.Sub:
            case Mnemonic.Xor:
            case Mnemonic.Cmp:
            case Mnemonic.Test:
            case Mnemonic.Xchg:
                return i.GetOpKind(0) == OpKind.Memory || i.GetOpKind(1) == OpKind.Memory;
            case Mnemonic.Stosb:
            case Mnemonic.Stosw:
            case Mnemonic.Stosd:
            case Mnemonic.Stosq:
            case Mnemonic.Movsb:
            case Mnemonic.Movsw:
            case Mnemonic.Movsd:
            case Mnemonic.Movsq:
                return IsStringMemory(i.GetOpKind(0));
            default:
                return false;
        }
    }

    private static bool IsStringMemory(OpKind k) =>
        k == OpKind.MemoryESDI || k == OpKind.MemoryESEDI || k == OpKind.MemoryESRDI ||
        k == OpKind.MemorySegSI || k == OpKind.MemorySegESI || k == OpKind.MemorySegRSI;

    private static Mnemonic ExpectedMnemonic(in MmioInstruction m)
    {
        switch (m.Operation)
        {
            case MmioOperation.Mov: return Mnemonic.Mov;
            case MmioOperation.MovZx: return Mnemonic.Movzx;
            case MmioOperation.MovSx: return Mnemonic.Movsx;
            case MmioOperation.MovSxd: return Mnemonic.Movsxd;
            case MmioOperation.Add: return Mnemonic.Add;
            case MmioOperation.Or: return Mnemonic.Or;
            case MmioOperation.Adc: return Mnemonic.Adc;
            case MmioOperation.Sbb: return Mnemonic.Sbb;
            case MmioOperation.And: return Mnemonic.And;
            case MmioOperation.Sub: return Mnemonic.Sub;
            case MmioOperation.Xor: return Mnemonic.Xor;
            case MmioOperation.Cmp: return Mnemonic.Cmp;
            case MmioOperation.Test: return Mnemonic.Test;
            case MmioOperation.Xchg: return Mnemonic.Xchg;
            case MmioOperation.Stos:
                return m.OperandSize switch { 1 => Mnemonic.Stosb, 2 => Mnemonic.Stosw, 4 => Mnemonic.Stosd, _ => Mnemonic.Stosq };
            case MmioOperation.Movs:
                return m.OperandSize switch { 1 => Mnemonic.Movsb, 2 => Mnemonic.Movsw, 4 => Mnemonic.Movsd, _ => Mnemonic.Movsq };
            default: return Mnemonic.INVALID;
        }
    }

    /// <summary>The Iced register for a general register number at a width.</summary>
    public static Register Gpr(int index, int size, bool highByte)
    {
        switch (size)
        {
            case 1:
                if (highByte)
                    return Register.AH + index;
                return index < 4 ? Register.AL + index : index < 8 ? Register.SPL + (index - 4) : Register.R8L + (index - 8);
            case 2: return Register.AX + index;
            case 4: return Register.EAX + index;
            default: return Register.RAX + index;
        }
    }

    private static Register AddressRegister(byte number, int addressSize)
    {
        if (number == MmioMemoryOperand.NoRegister)
            return Register.None;
        if (number == MmioMemoryOperand.Rip)
            return addressSize == 8 ? Register.RIP : Register.EIP;
        return Gpr(number, addressSize, false);
    }

    private static Register SegmentRegister(MmioSegment s) => Register.ES + (int)s;

    /// <summary>Null if our decoding agrees with Iced's, else what differs.</summary>
    public static string? Compare(in MmioInstruction m, in Instruction i)
    {
        if (i.Code == Code.INVALID)
            return "Iced says invalid";
        if (i.Length != m.Length)
            return $"length {m.Length} vs Iced {i.Length}";
        if (i.Mnemonic != ExpectedMnemonic(m))
            return $"operation {m.Operation} vs Iced {i.Mnemonic} ({i.Code})";
        if (i.HasLockPrefix != m.Lock)
            return $"lock {m.Lock} vs Iced {i.HasLockPrefix}";
        int memSize = i.MemorySize.GetSize();
        if (memSize != m.MemorySize)
            return $"memory size {m.MemorySize} vs Iced {memSize} ({i.MemorySize})";

        if (m.Operation == MmioOperation.Stos || m.Operation == MmioOperation.Movs)
        {
            bool rep = i.HasRepPrefix || i.HasRepnePrefix;
            if (rep != m.Rep)
                return $"rep {m.Rep} vs Iced {rep}";
            OpKind dst = i.GetOpKind(0);
            int dstSize = dst == OpKind.MemoryESDI ? 2 : dst == OpKind.MemoryESEDI ? 4 : dst == OpKind.MemoryESRDI ? 8 : 0;
            if (dstSize != m.Memory.AddressSize)
                return $"address size {m.Memory.AddressSize} vs Iced {dst}";
            if (m.Operation == MmioOperation.Movs && i.MemorySegment != SegmentRegister(m.Memory.Segment))
                return $"segment {m.Memory.Segment} vs Iced {i.MemorySegment}";
            return null;
        }

        int memOp = i.GetOpKind(0) == OpKind.Memory ? 0 : 1;
        if (i.GetOpKind(memOp) != OpKind.Memory)
            return "Iced has no memory operand";
        MmioDirection expected = m.Direction == MmioDirection.ToRegister ? MmioDirection.ToRegister : MmioDirection.ToMemory;
        if ((memOp == 0 ? MmioDirection.ToMemory : MmioDirection.ToRegister) != expected)
            return $"direction {m.Direction} vs Iced memory operand {memOp}";

        int other = 1 - memOp;
        if (m.Register != MmioInstruction.NoRegister)
        {
            if (i.GetOpKind(other) != OpKind.Register)
                return $"register r{m.Register} vs Iced operand {i.GetOpKind(other)}";
            Register want = Gpr(m.Register, m.OperandSize, m.RegisterIsHighByte);
            if (i.GetOpRegister(other) != want)
                return $"register {want} vs Iced {i.GetOpRegister(other)}";
        }
        else if (m.HasImmediate)
        {
            OpKind k = i.GetOpKind(other);
            if (k == OpKind.Register)
                return "immediate vs Iced register";
            ulong mask = m.OperandSize == 8 ? ulong.MaxValue : (1UL << (8 * m.OperandSize)) - 1;
            if ((i.GetImmediate(other) & mask) != (m.Immediate & mask))
                return $"immediate {m.Immediate:X} vs Iced {i.GetImmediate(other):X}";
            if (memSize != m.OperandSize)
                return $"operand size {m.OperandSize} vs Iced memory size {memSize}";
        }
        else
        {
            return "neither register nor immediate";
        }

        // The memory operand: base, index, scale, displacement, segment, address size.
        int a = m.Memory.AddressSize;
        Register b = AddressRegister(m.Memory.Base, a);
        Register x = AddressRegister(m.Memory.Index, a);
        if (i.MemoryBase != b)
            return $"base {b} vs Iced {i.MemoryBase}";
        if (i.MemoryIndex != x)
            return $"index {x} vs Iced {i.MemoryIndex}";
        if (x != Register.None && i.MemoryIndexScale != m.Memory.Scale)
            return $"scale {m.Memory.Scale} vs Iced {i.MemoryIndexScale}";
        ulong amask = a == 8 ? ulong.MaxValue : (1UL << (8 * a)) - 1;
        ulong disp = (ulong)m.Memory.Displacement;
        if (m.Memory.Base == MmioMemoryOperand.Rip)
            disp += m.Length; // Iced reports the target (decoded at IP 0)
        if (((disp ^ i.MemoryDisplacement64) & amask) != 0)
            return $"displacement {disp & amask:X} vs Iced {i.MemoryDisplacement64:X}";
        if (i.MemorySegment != SegmentRegister(m.Memory.Segment))
            return $"segment {m.Memory.Segment} vs Iced {i.MemorySegment}";
        return null;
    }
}
