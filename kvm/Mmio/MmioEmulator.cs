using System;
using Tandem.Kvm.Vmx;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// Emulates one decoded MMIO instruction against the bus: the memory access, the destination
/// register with the SDM's width rules (32-bit writes zero-extend to 64 bits, 8- and 16-bit writes
/// merge, AH..BH are bits 15:8), the status flags of the ALU group, and the RIP advance.
/// </summary>
/// <remarks>
/// Rules for using this: fill <see cref="MmioVcpuState"/> from the VMCS, call <see cref="Step"/>
/// (or <see cref="Execute"/> with an instruction decoded elsewhere), and on
/// <see cref="MmioStatus.Done"/> or <see cref="MmioStatus.Partial"/> write RIP, RSP and RFLAGS
/// back. Every data address is translated through the guest's page tables (the same walk that
/// fetched the instruction), then handed to the bus; an access that crosses a page has each page
/// translated on its own and goes to the bus a byte at a time (string instructions excepted:
/// an element that crosses a page is refused).
/// Nothing is allocated; a failure is a status, never an exception. A LOCKed read-modify-write
/// is a bus read then a bus write: devices see it as two accesses.
/// </remarks>
public static partial class MmioEmulator
{
    /// <summary>Iterations of a REP string instruction per step; the rest re-executes.</summary>
    public const int MaxRepIterations = 4096;

    /// <summary>
    /// Fetches the instruction at CS:RIP into <paramref name="bytes"/> (give it 15 bytes; the
    /// count fetched is <paramref name="byteCount"/>, for a dump), decodes it and executes it.
    /// <paramref name="insn"/>, <paramref name="decode"/>, <paramref name="walk"/> and
    /// <paramref name="faultLinear"/> say what happened when the status is not Done.
    /// </summary>
    public static MmioStatus Step<TBus, TMemory>(ref TBus bus, ref TMemory memory, ref GuestRegisters regs, ref MmioVcpuState cpu,
        Span<byte> bytes, out int byteCount, out MmioInstruction insn, out MmioDecodeStatus decode, out GuestWalkStatus walk,
        out ulong faultLinear)
        where TBus : struct, IMmioBus
        where TMemory : struct, IGuestPhysicalReader
    {
        bool is64 = cpu.Mode == CpuMode.Bits64;
        ulong linear = is64 ? cpu.Rip : (cpu.CsBase + cpu.Rip) & 0xFFFF_FFFFUL;
        if (bytes.Length > MmioDecoder.MaxLength)
            bytes = bytes.Slice(0, MmioDecoder.MaxLength);
        byteCount = InstructionFetcher.Fetch(ref memory, cpu.Paging, linear, !is64, bytes, out walk);
        decode = MmioDecoder.Decode(bytes.Slice(0, byteCount), cpu.Mode, out insn);
        faultLinear = 0;
        if (decode == MmioDecodeStatus.Truncated && walk != GuestWalkStatus.Ok)
        {
            faultLinear = linear + (ulong)byteCount;
            return MmioStatus.FetchFault;
        }
        walk = GuestWalkStatus.Ok;
        if (decode != MmioDecodeStatus.Ok)
            return MmioStatus.Refused;
        return Execute(ref bus, ref memory, ref regs, ref cpu, insn, out walk, out faultLinear);
    }

    /// <summary>Executes <paramref name="insn"/> (decoded at <c>cpu.Rip</c>).</summary>
    public static MmioStatus Execute<TBus, TMemory>(ref TBus bus, ref TMemory memory, ref GuestRegisters regs, ref MmioVcpuState cpu,
        in MmioInstruction insn, out GuestWalkStatus walk, out ulong faultLinear)
        where TBus : struct, IMmioBus
        where TMemory : struct, IGuestPhysicalReader
    {
        walk = GuestWalkStatus.Ok;
        faultLinear = 0;
        if (insn.Operation == MmioOperation.Stos || insn.Operation == MmioOperation.Movs)
            return ExecuteString(ref bus, ref memory, ref regs, ref cpu, insn, ref walk, ref faultLinear);

        ulong linear = EffectiveLinear(ref regs, ref cpu, insn);
        int memSize = insn.MemorySize;
        int size = insn.OperandSize;
        MmioOperation op = insn.Operation;
        bool writesMemory = insn.Direction != MmioDirection.ToRegister && op != MmioOperation.Cmp && op != MmioOperation.Test;
        GuestAccessKind kind = writesMemory ? GuestAccessKind.Write : GuestAccessKind.Read;
        int low = (int)Math.Min((ulong)memSize, 0x1000 - (linear & 0xFFF));
        MmioStatus status = Translate(ref memory, cpu, linear, low, kind, out ulong gpa, ref walk, ref faultLinear);
        if (status != MmioStatus.Done || low == memSize)
            return status == MmioStatus.Done ? ExecuteAt(ref bus, ref regs, ref cpu, insn, gpa, writesMemory, low, 0) : status;

        // Across a page boundary: each page is translated on its own (the second may be anywhere),
        // and the access goes to the bus a byte at a time, the low bytes on the first page.
        ulong next = cpu.Mode == CpuMode.Bits64 ? (linear | 0xFFF) + 1 : ((linear | 0xFFF) + 1) & 0xFFFF_FFFFUL;
        status = Translate(ref memory, cpu, next, memSize - low, kind, out ulong high, ref walk, ref faultLinear);
        if (status != MmioStatus.Done)
            return status;
        return ExecuteAt(ref bus, ref regs, ref cpu, insn, gpa, writesMemory, low, high);
    }

    /// <summary>
    /// A bus read of the memory operand: whole, or for a page-crossing operand byte by byte, the
    /// first <paramref name="lowBytes"/> at <paramref name="gpa"/> and the rest at <paramref name="high"/>.
    /// </summary>
    private static bool BusRead<TBus>(ref TBus bus, ulong gpa, int size, int lowBytes, ulong high, out ulong value)
        where TBus : struct, IMmioBus
    {
        if (lowBytes >= size)
            return bus.Read(gpa, size, out value);
        value = 0;
        for (int i = 0; i < size; i++)
        {
            if (!bus.Read(i < lowBytes ? gpa + (ulong)i : high + (ulong)(i - lowBytes), 1, out ulong b))
                return false;
            value |= (b & 0xFF) << (8 * i);
        }
        return true;
    }

    /// <summary>A bus write of the memory operand, split as <see cref="BusRead"/> splits a read.</summary>
    private static bool BusWrite<TBus>(ref TBus bus, ulong gpa, int size, int lowBytes, ulong high, ulong value)
        where TBus : struct, IMmioBus
    {
        if (lowBytes >= size)
            return bus.Write(gpa, size, value);
        for (int i = 0; i < size; i++)
        {
            if (!bus.Write(i < lowBytes ? gpa + (ulong)i : high + (ulong)(i - lowBytes), 1, (value >> (8 * i)) & 0xFF))
                return false;
        }
        return true;
    }

    /// <summary>
    /// The operation of a non-string instruction whose memory operand is at <paramref name="gpa"/>
    /// (its first <paramref name="lowBytes"/> bytes; the rest, if any, at <paramref name="high"/>).
    /// </summary>
    private static MmioStatus ExecuteAt<TBus>(ref TBus bus, ref GuestRegisters regs, ref MmioVcpuState cpu, in MmioInstruction insn, ulong gpa, bool writesMemory,
        int lowBytes, ulong high)
        where TBus : struct, IMmioBus
    {
        int memSize = insn.MemorySize;
        int size = insn.OperandSize;
        MmioOperation op = insn.Operation;
        ulong source = insn.HasImmediate ? insn.Immediate
            : insn.Register >= 0 ? ReadRegister(ref regs, ref cpu, insn.Register, size, insn.RegisterIsHighByte) : 0;
        ulong value;
        switch (op)
        {
            case MmioOperation.Mov:
                if (insn.Direction == MmioDirection.ToMemory)
                    return Finish(ref cpu, insn, BusWrite(ref bus, gpa, size, lowBytes, high, Mask(source, size)));
                if (!BusRead(ref bus, gpa, size, lowBytes, high, out value))
                    return MmioStatus.BusError;
                WriteRegister(ref regs, ref cpu, insn.Register, size, insn.RegisterIsHighByte, value);
                return Finish(ref cpu, insn, true);
            case MmioOperation.MovZx:
            case MmioOperation.MovSx:
            case MmioOperation.MovSxd:
                if (!BusRead(ref bus, gpa, memSize, lowBytes, high, out value))
                    return MmioStatus.BusError;
                if (op != MmioOperation.MovZx)
                    value = SignExtend(value, memSize);
                WriteRegister(ref regs, ref cpu, insn.Register, size, false, value);
                return Finish(ref cpu, insn, true);
            case MmioOperation.Xchg:
                if (!BusRead(ref bus, gpa, size, lowBytes, high, out value))
                    return MmioStatus.BusError;
                if (!BusWrite(ref bus, gpa, size, lowBytes, high, Mask(source, size)))
                    return MmioStatus.BusError;
                WriteRegister(ref regs, ref cpu, insn.Register, size, insn.RegisterIsHighByte, value);
                return Finish(ref cpu, insn, true);
        }

        // The ALU group, test and cmp: memory is the first operand (ToMemory) or the second.
        if (!BusRead(ref bus, gpa, size, lowBytes, high, out value))
            return MmioStatus.BusError;
        ulong rflags = cpu.Rflags;
        if (insn.Direction == MmioDirection.ToMemory)
        {
            ulong result = AluFlags.Compute(op, size, value, source, ref rflags);
            if (writesMemory && !BusWrite(ref bus, gpa, size, lowBytes, high, result))
                return MmioStatus.BusError;
        }
        else
        {
            ulong result = AluFlags.Compute(op, size, source, value, ref rflags);
            if (op != MmioOperation.Cmp)
                WriteRegister(ref regs, ref cpu, insn.Register, size, insn.RegisterIsHighByte, result);
        }
        cpu.Rflags = rflags;
        return Finish(ref cpu, insn, true);
    }

    /// <summary><c>stos</c> and <c>movs</c>, with REP counting rCX down (SDM Vol. 2B, STOS, MOVS, REP).</summary>
    private static MmioStatus ExecuteString<TBus, TMemory>(ref TBus bus, ref TMemory memory, ref GuestRegisters regs, ref MmioVcpuState cpu,
        in MmioInstruction insn, ref GuestWalkStatus walk, ref ulong faultLinear)
        where TBus : struct, IMmioBus
        where TMemory : struct, IGuestPhysicalReader
    {
        int size = insn.OperandSize;
        int addressSize = insn.Memory.AddressSize;
        ulong addressMask = SizeMask(addressSize);
        ulong count = insn.Rep ? regs.Rcx & addressMask : 1;
        ulong step = (cpu.Rflags & MmioVcpuState.FlagDf) != 0 ? (ulong)(-size) : (ulong)size;
        ulong iterations = Math.Min(count, (ulong)MaxRepIterations);
        bool is32Linear = cpu.Mode != CpuMode.Bits64;
        for (ulong i = 0; i < iterations; i++)
        {
            ulong destination = cpu.SegmentBase(MmioSegment.Es) + (regs.Rdi & addressMask);
            if (is32Linear)
                destination &= 0xFFFF_FFFFUL;
            ulong value;
            if (insn.Operation == MmioOperation.Movs)
            {
                ulong source = cpu.SegmentBase(insn.Memory.Segment) + (regs.Rsi & addressMask);
                if (is32Linear)
                    source &= 0xFFFF_FFFFUL;
                MmioStatus s = Translate(ref memory, cpu, source, size, GuestAccessKind.Read, out ulong sourceGpa, ref walk, ref faultLinear);
                if (s != MmioStatus.Done)
                    return s;
                if (!bus.Read(sourceGpa, size, out value))
                    return MmioStatus.BusError;
            }
            else
            {
                value = Mask(regs.Rax, size);
            }
            MmioStatus t = Translate(ref memory, cpu, destination, size, GuestAccessKind.Write, out ulong gpa, ref walk, ref faultLinear);
            if (t != MmioStatus.Done)
                return t;
            if (!bus.Write(gpa, size, value))
                return MmioStatus.BusError;
            SetAddressRegister(ref regs.Rdi, regs.Rdi + step, addressSize);
            if (insn.Operation == MmioOperation.Movs)
                SetAddressRegister(ref regs.Rsi, regs.Rsi + step, addressSize);
            if (insn.Rep)
                SetAddressRegister(ref regs.Rcx, regs.Rcx - 1, addressSize);
        }
        if (insn.Rep && (regs.Rcx & addressMask) != 0)
            return MmioStatus.Partial;
        return Finish(ref cpu, insn, true);
    }

    /// <summary>segment base + base + index * scale + displacement, in the address size (SDM Vol. 1, 3.7.5).</summary>
    private static ulong EffectiveLinear(ref GuestRegisters regs, ref MmioVcpuState cpu, in MmioInstruction insn)
    {
        ulong ea = (ulong)insn.Memory.Displacement;
        byte b = insn.Memory.Base;
        if (b == MmioMemoryOperand.Rip)
            ea += cpu.Rip + insn.Length;
        else if (b != MmioMemoryOperand.NoRegister)
            ea += Gpr(ref regs, ref cpu, b);
        if (insn.Memory.Index != MmioMemoryOperand.NoRegister)
            ea += Gpr(ref regs, ref cpu, insn.Memory.Index) * insn.Memory.Scale;
        ea &= SizeMask(insn.Memory.AddressSize);
        ulong linear = cpu.SegmentBase(insn.Memory.Segment) + ea;
        return cpu.Mode == CpuMode.Bits64 ? linear : linear & 0xFFFF_FFFFUL;
    }

    private static MmioStatus Translate<TMemory>(ref TMemory memory, in MmioVcpuState cpu, ulong linear, int size, GuestAccessKind kind,
        out ulong gpa, ref GuestWalkStatus walk, ref ulong faultLinear)
        where TMemory : struct, IGuestPhysicalReader
    {
        gpa = 0;
        if ((linear & 0xFFF) + (ulong)size > 0x1000)
        {
            faultLinear = linear;
            return MmioStatus.SplitAccess;
        }
        walk = GuestWalker.Translate(ref memory, cpu.Paging, linear, kind, out gpa, out _);
        if (walk != GuestWalkStatus.Ok)
        {
            faultLinear = linear;
            return MmioStatus.AccessFault;
        }
        return MmioStatus.Done;
    }

    /// <summary>Advances RIP past the instruction (wrapping at the code size) if the access succeeded.</summary>
    private static MmioStatus Finish(ref MmioVcpuState cpu, in MmioInstruction insn, bool accessed)
    {
        if (!accessed)
            return MmioStatus.BusError;
        ulong next = cpu.Rip + insn.Length;
        cpu.Rip = cpu.Mode == CpuMode.Bits64 ? next : cpu.Mode == CpuMode.Bits32 ? next & 0xFFFF_FFFFUL : next & 0xFFFFUL;
        return MmioStatus.Done;
    }

    private static ulong SizeMask(int size) => size == 8 ? ulong.MaxValue : (1UL << (8 * size)) - 1;

    private static ulong Mask(ulong value, int size) => value & SizeMask(size);

    private static ulong SignExtend(ulong value, int size)
    {
        switch (size)
        {
            case 1: return (ulong)(long)(sbyte)value;
            case 2: return (ulong)(long)(short)value;
            case 4: return (ulong)(long)(int)value;
            default: return value;
        }
    }

    /// <summary>Register <paramref name="index"/> (0-15); rsp (4) is in <see cref="MmioVcpuState"/>.</summary>
    private static ref ulong Gpr(ref GuestRegisters regs, ref MmioVcpuState cpu, int index)
    {
        if (index == 4)
            return ref cpu.Rsp;
        return ref regs.ByIndex(index);
    }

    /// <summary>Reads a register operand at its width (AH..BH are bits 15:8 of rAX..rBX).</summary>
    public static ulong ReadRegister(ref GuestRegisters regs, ref MmioVcpuState cpu, int index, int size, bool highByte)
    {
        ulong full = Gpr(ref regs, ref cpu, index);
        return highByte ? (full >> 8) & 0xFF : Mask(full, size);
    }

    /// <summary>
    /// Writes a register operand with the SDM's rules (Vol. 1, 3.4.1.1): a 64-bit write replaces
    /// the register, a 32-bit write zero-extends into bits 63:32, 16- and 8-bit writes leave the
    /// other bits alone; a high-byte register (AH..BH) is bits 15:8.
    /// </summary>
    public static void WriteRegister(ref GuestRegisters regs, ref MmioVcpuState cpu, int index, int size, bool highByte, ulong value)
    {
        ref ulong r = ref Gpr(ref regs, ref cpu, index);
        if (highByte)
            r = (r & ~0xFF00UL) | ((value & 0xFF) << 8);
        else if (size >= 4)
            r = Mask(value, size);
        else
            r = (r & ~SizeMask(size)) | Mask(value, size);
    }

    /// <summary>Updates rSI/rDI/rCX in the address size: 64 replaces, 32 zero-extends, 16 merges.</summary>
    private static void SetAddressRegister(ref ulong register, ulong value, int addressSize)
    {
        if (addressSize == 2)
            register = (register & ~0xFFFFUL) | (value & 0xFFFF);
        else
            register = Mask(value, addressSize);
    }
}
