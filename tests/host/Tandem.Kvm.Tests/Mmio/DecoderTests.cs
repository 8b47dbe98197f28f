using System;
using Tandem.Kvm.Mmio;
using Xunit;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>The decoder's corner cases, one per way it could plausibly be wrong.</summary>
public class DecoderTests
{
    private const byte None = MmioMemoryOperand.NoRegister;

    private static MmioInstruction Ok(CpuMode mode, params byte[] code)
    {
        MmioDecodeStatus s = MmioDecoder.Decode(code, mode, out MmioInstruction insn);
        Assert.Equal(MmioDecodeStatus.Ok, s);
        return insn;
    }

    private static MmioDecodeStatus Status(CpuMode mode, params byte[] code) => MmioDecoder.Decode(code, mode, out _);

    [Fact]
    public void Disp8IsSignExtended()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x8B, 0x40, 0xFF); // mov eax, [rax-1]
        Assert.Equal(-1L, i.Memory.Displacement);
        Assert.Equal(0, i.Memory.Base);
        Assert.Equal(3, i.Length);
    }

    [Fact]
    public void Disp32IsSignExtended()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x8B, 0x80, 0x00, 0x00, 0x00, 0x80); // mov eax, [rax-0x80000000]
        Assert.Equal(-0x8000_0000L, i.Memory.Displacement);
    }

    [Fact]
    public void SibBase5WithMod0HasNoBaseAndDisp32()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x8B, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12); // mov eax, [0x12345678]
        Assert.Equal(None, i.Memory.Base);
        Assert.Equal(None, i.Memory.Index);
        Assert.Equal(0x12345678L, i.Memory.Displacement);
        Assert.Equal(7, i.Length);
        Assert.Equal(MmioSegment.Ds, i.Memory.Segment);
    }

    [Fact]
    public void SibBase5WithMod1IsRbpAndSs()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x8B, 0x44, 0x25, 0x08); // mov eax, [rbp+8]
        Assert.Equal(5, i.Memory.Base);
        Assert.Equal(8L, i.Memory.Displacement);
        Assert.Equal(MmioSegment.Ss, i.Memory.Segment);
    }

    [Fact]
    public void SibIndex4MeansNoneUnlessRexX()
    {
        Assert.Equal(None, Ok(CpuMode.Bits64, 0x8B, 0x04, 0xA0).Memory.Index); // [rax + none*4]
        MmioInstruction i = Ok(CpuMode.Bits64, 0x42, 0x8B, 0x04, 0xA0); // [rax + r12*4]
        Assert.Equal(12, i.Memory.Index);
        Assert.Equal(4, i.Memory.Scale);
    }

    [Fact]
    public void RexBExtendsBaseAndR12NeedsSib()
    {
        Assert.Equal(8, Ok(CpuMode.Bits64, 0x41, 0x8B, 0x00).Memory.Base); // [r8]
        Assert.Equal(12, Ok(CpuMode.Bits64, 0x41, 0x8B, 0x04, 0x24).Memory.Base); // [r12]
        MmioInstruction r13 = Ok(CpuMode.Bits64, 0x41, 0x8B, 0x45, 0x00); // [r13+0]: mod 1, r13 not RIP
        Assert.Equal(13, r13.Memory.Base);
        MmioInstruction rip = Ok(CpuMode.Bits64, 0x41, 0x8B, 0x05, 1, 0, 0, 0); // REX.B does not turn RIP into r13
        Assert.Equal(MmioMemoryOperand.Rip, rip.Memory.Base);
    }

    [Fact]
    public void RexRExtendsRegister()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x44, 0x89, 0x08); // mov [rax], r9d
        Assert.Equal(9, i.Register);
        Assert.Equal(4, i.OperandSize);
    }

    [Fact]
    public void RexWWinsOver66()
    {
        Assert.Equal(8, Ok(CpuMode.Bits64, 0x66, 0x48, 0x89, 0x00).OperandSize);
        Assert.Equal(2, Ok(CpuMode.Bits64, 0x66, 0x89, 0x00).OperandSize);
    }

    [Fact]
    public void LegacyPrefixAfterRexCancelsIt()
    {
        MmioInstruction i = Ok(CpuMode.Bits64, 0x48, 0x66, 0x89, 0x00);
        Assert.Equal(2, i.OperandSize);
        MmioInstruction b = Ok(CpuMode.Bits64, 0x41, 0x66, 0x88, 0x20); // the REX is gone: AH, [rax]
        Assert.True(b.RegisterIsHighByte);
        Assert.Equal(0, b.Memory.Base);
    }

    [Fact]
    public void HighByteRegistersOnlyWithoutRex()
    {
        MmioInstruction ah = Ok(CpuMode.Bits64, 0x88, 0x20); // mov [rax], ah
        Assert.True(ah.RegisterIsHighByte);
        Assert.Equal(0, ah.Register);
        MmioInstruction bh = Ok(CpuMode.Bits32, 0x8A, 0x38); // mov bh, [eax]
        Assert.True(bh.RegisterIsHighByte);
        Assert.Equal(3, bh.Register);
        MmioInstruction spl = Ok(CpuMode.Bits64, 0x40, 0x88, 0x20); // mov [rax], spl
        Assert.False(spl.RegisterIsHighByte);
        Assert.Equal(4, spl.Register);
    }

    [Fact]
    public void MoffsFollowsTheAddressSize()
    {
        MmioInstruction a = Ok(CpuMode.Bits64, 0x48, 0xA1, 1, 2, 3, 4, 5, 6, 7, 8);
        Assert.Equal(10, a.Length);
        Assert.Equal(0x0807060504030201L, a.Memory.Displacement);
        Assert.Equal(8, a.OperandSize);
        MmioInstruction b = Ok(CpuMode.Bits64, 0x67, 0xA3, 0xF0, 0xFF, 0xFF, 0xFF); // mov [0xFFFFFFF0], eax
        Assert.Equal(6, b.Length);
        Assert.Equal(4, b.Memory.AddressSize);
        Assert.Equal(0xFFFF_FFF0L, b.Memory.Displacement);
        Assert.Equal(MmioDirection.ToMemory, b.Direction);
        MmioInstruction c = Ok(CpuMode.Bits32, 0x67, 0xA0, 0x34, 0x12); // mov al, [0x1234] (16-bit address)
        Assert.Equal(4, c.Length);
        Assert.Equal(2, c.Memory.AddressSize);
        Assert.Equal(1, c.OperandSize);
    }

    [Fact]
    public void RipRelativeOnlyIn64BitCode()
    {
        Assert.Equal(MmioMemoryOperand.Rip, Ok(CpuMode.Bits64, 0x8B, 0x05, 0, 0, 0, 0).Memory.Base);
        Assert.Equal(None, Ok(CpuMode.Bits32, 0x8B, 0x05, 0, 0, 0, 0).Memory.Base);
    }

    [Fact]
    public void SixteenBitAddressing()
    {
        MmioInstruction i = Ok(CpuMode.Bits32, 0x67, 0x8B, 0x00); // mov eax, [bx+si]
        Assert.Equal(3, i.Memory.Base);
        Assert.Equal(6, i.Memory.Index);
        MmioInstruction bp = Ok(CpuMode.Bits16, 0x8B, 0x46, 0xFE); // mov ax, [bp-2]
        Assert.Equal(5, bp.Memory.Base);
        Assert.Equal(-2L, bp.Memory.Displacement);
        Assert.Equal(MmioSegment.Ss, bp.Memory.Segment);
        Assert.Equal(2, bp.OperandSize);
        MmioInstruction abs = Ok(CpuMode.Bits16, 0x8B, 0x06, 0x34, 0x12); // mov ax, [0x1234]
        Assert.Equal(None, abs.Memory.Base);
        Assert.Equal(0x1234L, abs.Memory.Displacement);
    }

    [Fact]
    public void SegmentOverrides()
    {
        Assert.Equal(MmioSegment.Fs, Ok(CpuMode.Bits64, 0x64, 0x8B, 0x00).Memory.Segment);
        Assert.Equal(MmioSegment.Gs, Ok(CpuMode.Bits64, 0x65, 0x2E, 0x8B, 0x00).Memory.Segment); // CS after GS ignored in 64-bit
        Assert.Equal(MmioSegment.Cs, Ok(CpuMode.Bits32, 0x65, 0x2E, 0x8B, 0x00).Memory.Segment); // last wins in 32-bit
        Assert.Equal(MmioSegment.Es, Ok(CpuMode.Bits32, 0x26, 0x8B, 0x45, 0x00).Memory.Segment); // override beats the SS default
    }

    [Fact]
    public void LockOnlyWhereTheSdmAllowsIt()
    {
        Assert.True(Ok(CpuMode.Bits64, 0xF0, 0x01, 0x00).Lock); // lock add [rax], eax
        Assert.True(Ok(CpuMode.Bits64, 0xF0, 0x87, 0x00).Lock); // lock xchg
        Assert.Equal(MmioDecodeStatus.InvalidLock, Status(CpuMode.Bits64, 0xF0, 0x89, 0x00)); // lock mov
        Assert.Equal(MmioDecodeStatus.InvalidLock, Status(CpuMode.Bits64, 0xF0, 0x39, 0x00)); // lock cmp
        Assert.Equal(MmioDecodeStatus.InvalidLock, Status(CpuMode.Bits64, 0xF0, 0x03, 0x00)); // lock add eax, [rax]
        Assert.Equal(MmioDecodeStatus.InvalidLock, Status(CpuMode.Bits64, 0xF0, 0x83, 0x38, 0x01)); // lock cmp imm
        Assert.Equal(MmioDecodeStatus.InvalidLock, Status(CpuMode.Bits64, 0xF0, 0xAB)); // lock stos
    }

    [Fact]
    public void RefusesWhatIsNotAnMmioForm()
    {
        Assert.Equal(MmioDecodeStatus.UnsupportedForm, Status(CpuMode.Bits64, 0x89, 0xC0)); // mov eax, eax
        Assert.Equal(MmioDecodeStatus.UnsupportedForm, Status(CpuMode.Bits64, 0xC7, 0x08, 0, 0, 0, 0)); // C7 /1
        Assert.Equal(MmioDecodeStatus.UnsupportedForm, Status(CpuMode.Bits64, 0xF7, 0x10)); // not [rax]
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, Status(CpuMode.Bits64, 0x0F, 0x0B)); // ud2
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, Status(CpuMode.Bits64, 0x05, 0, 0, 0, 0)); // add eax, imm32
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, Status(CpuMode.Bits32, 0x63, 0x00)); // arpl
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, Status(CpuMode.Bits64, 0x82, 0x00, 0x01)); // 82 is gone in 64-bit
        Assert.Equal(MmioOperation.Add, Ok(CpuMode.Bits32, 0x82, 0x00, 0x01).Operation);
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, Status(CpuMode.Bits32, 0x48, 0x89, 0x00)); // dec eax in 32-bit
    }

    [Fact]
    public void TruncatedAndTooLong()
    {
        Assert.Equal(MmioDecodeStatus.Truncated, Status(CpuMode.Bits64, 0x8B, 0x80, 0x00));
        Assert.Equal(MmioDecodeStatus.Truncated, Status(CpuMode.Bits64));
        byte[] longOne = new byte[17];
        Array.Fill(longOne, (byte)0x66);
        longOne[14] = 0x89;
        longOne[15] = 0x00;
        Assert.Equal(MmioDecodeStatus.TooLong, Status(CpuMode.Bits64, longOne)); // 16 bytes
        longOne[13] = 0x89;
        longOne[14] = 0x00;
        Assert.Equal(15, Ok(CpuMode.Bits64, longOne).Length); // exactly 15 is fine
    }

    [Fact]
    public void ImmediatesAreSignExtendedWhereTheSdmSays()
    {
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, Ok(CpuMode.Bits64, 0x48, 0x83, 0x00, 0xFF).Immediate); // add qword [rax], -1
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, Ok(CpuMode.Bits64, 0x48, 0xC7, 0x00, 0, 0, 0, 0x80).Immediate);
        MmioInstruction w = Ok(CpuMode.Bits64, 0x66, 0xC7, 0x00, 0x34, 0x12); // mov word [rax], 0x1234
        Assert.Equal(0x1234UL, w.Immediate);
        Assert.Equal(5, w.Length);
        Assert.Equal(0xFFUL, Ok(CpuMode.Bits64, 0x80, 0x00, 0xFF).Immediate & 0xFF);
    }

    [Fact]
    public void MovzxMovsxMovsxdSizes()
    {
        MmioInstruction zx = Ok(CpuMode.Bits64, 0x48, 0x0F, 0xB7, 0x08); // movzx rcx, word [rax]
        Assert.Equal(MmioOperation.MovZx, zx.Operation);
        Assert.Equal(8, zx.OperandSize);
        Assert.Equal(2, zx.MemorySize);
        Assert.Equal(1, zx.Register);
        MmioInstruction sxd = Ok(CpuMode.Bits64, 0x48, 0x63, 0x08);
        Assert.Equal(MmioOperation.MovSxd, sxd.Operation);
        Assert.Equal(4, sxd.MemorySize);
        MmioInstruction sx = Ok(CpuMode.Bits32, 0x0F, 0xBE, 0x08);
        Assert.Equal(1, sx.MemorySize);
        Assert.Equal(4, sx.OperandSize);
    }

    [Fact]
    public void StringInstructions()
    {
        MmioInstruction stos = Ok(CpuMode.Bits64, 0xF3, 0x48, 0xAB);
        Assert.Equal(MmioOperation.Stos, stos.Operation);
        Assert.True(stos.Rep);
        Assert.Equal(8, stos.OperandSize);
        Assert.Equal(MmioSegment.Es, stos.Memory.Segment);
        MmioInstruction movs = Ok(CpuMode.Bits32, 0x64, 0x67, 0xA4);
        Assert.False(movs.Rep);
        Assert.Equal(MmioSegment.Fs, movs.Memory.Segment);
        Assert.Equal(2, movs.Memory.AddressSize);
        Assert.True(Ok(CpuMode.Bits64, 0xF2, 0xA5).Rep); // REPNE acts as REP on movs
    }
}
