using System;
using System.Collections.Generic;
using System.Linq;
using Iced.Intel;
using Tandem.StubGen.Guests;
using Xunit;

namespace Tandem.StubGen.Tests;

/// <summary>
/// The guests of kernel/Tests/GuestModeTests.cs, decoded with Iced: mmiobad32 records the address
/// of its refused instruction, longmode32 far-jumps to real 64-bit code, and mmio64b uses the forms
/// its test claims.
/// </summary>
public class GuestModeGuestTests
{
    private static byte[] Image(string name) => TestGuests.All().Single(g => g.Name == name).Image;

    /// <summary>The instructions from the entry to <paramref name="end"/> (an image offset; the image's end if 0).</summary>
    private static List<Instruction> Code(byte[] image, int bitness, int start, int end = 0)
    {
        if (end == 0)
            end = image.Length;
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(image, start, end - start), TestGuestImageTests.LoadAddress + (uint)start);
        var list = new List<Instruction>();
        while (decoder.IP < TestGuestImageTests.LoadAddress + (uint)end)
            list.Add(decoder.Decode());
        return list;
    }

    [Fact]
    public void MmioBadRecordsTheAddressOfAnIncOnTheScratchPage()
    {
        byte[] image = Image("mmiobad32");
        int entry = (int)TestGuestImageTests.U32(image, 8);
        List<Instruction> code = Code(image, 32, entry);
        Instruction record = code.Single(i => i.Mnemonic == Mnemonic.Mov && i.Op0Kind == OpKind.Memory && i.MemoryDisplacement32 == TestGuests.MmioRefusedRipSlot);
        Instruction refused = code.Single(i => i.IP == record.Immediate32);
        Assert.Equal(Mnemonic.Inc, refused.Mnemonic);
        Assert.Equal(Register.EDI, refused.MemoryBase);
        Assert.Equal(TestGuests.MmioRefusedOffset, refused.MemoryDisplacement32);
        int at = (int)(refused.IP - TestGuestImageTests.LoadAddress);
        Assert.Equal(new byte[] { 0xFF, 0x47, 0x40 }, image.AsSpan(at, 3).ToArray());
    }

    [Fact]
    public void LongModeFarJumpsToSixtyFourBitCode()
    {
        byte[] image = Image("longmode32");
        int entry = (int)TestGuestImageTests.U32(image, 8);
        List<Instruction> code = Code(image, 32, entry);
        Instruction jump = code.First(i => i.Code == Iced.Intel.Code.Jmp_ptr1632);
        Assert.Equal(TestGuests.LongModeCode64, jump.FarBranchSelector);
        // The descriptor: L=1, D=0, present code (0x00AF9A00 in the high dword at GDT + 0x28 + 4).
        Assert.Contains(code, i => i.Mnemonic == Mnemonic.Mov && i.MemoryDisplacement32 == TestGuests.LongModeCode64 + 4u && i.Immediate32 == 0x00AF9A00u);
        // Paging goes on with NE in the same MOV to CR0, after CR3 is loaded with the PML4.
        int cr0 = code.FindLastIndex(code.IndexOf(jump), i => i.Code == Iced.Intel.Code.Mov_cr_r32 && i.Op0Register == Register.CR0);
        Assert.True(cr0 > 0 && code[cr0 - 1].Mnemonic == Mnemonic.Or && code[cr0 - 1].Immediate32 == 0x8000_0020u);
        Assert.Contains(code.Take(cr0), i => i.Code == Iced.Intel.Code.Mov_cr_r32 && i.Op0Register == Register.CR3);
        List<Instruction> code64 = Code(image, 64, (int)(jump.FarBranch32 - TestGuestImageTests.LoadAddress));
        Assert.Equal("mov ecx,0C0000080h", code64[0].ToString());
        Assert.Equal(Mnemonic.Rdmsr, code64[1].Mnemonic);
        Assert.DoesNotContain(code64, i => i.Code == Iced.Intel.Code.INVALID);
        Assert.Contains(code64, i => i.Code == Iced.Intel.Code.Mov_r64_imm64 && i.Immediate64 == 0x1_FFFF_FFFFUL);
        // Back by a far return to CS 0x08 (32-bit code: compatibility mode), which turns PG and NE off in one MOV.
        int ret = code64.FindIndex(i => i.Code == Iced.Intel.Code.Retfq);
        Assert.True(ret >= 3);
        Assert.Equal(0x08UL, code64[ret - 3].Immediate64);                       // push 8
        Assert.Equal(Register.RAX, code64[ret - 1].Op0Register);                 // mov eax, back; push rax
        List<Instruction> back = Code(image, 32, (int)(code64[ret - 2].Immediate32 - TestGuestImageTests.LoadAddress));
        Assert.Equal("mov eax,cr0", back[0].ToString());
        Assert.Equal("and eax,7FFFFFDFh", back[1].ToString());
        Assert.Equal("mov cr0,eax", back[2].ToString());
    }

    /// <summary>Every accepted form mmio64b is there for (kvm/Mmio/MmioDecoder.cs), by Iced's code.</summary>
    [Fact]
    public void Mmio64bUsesTheFormsItsTestNames()
    {
        byte[] image = Image("mmio64b");
        int entry = (int)TestGuestImageTests.U32(image, 8);
        var codes = Code(image, 64, entry).Select(i => i.Code).ToHashSet();
        Code[] wanted =
        [
            Iced.Intel.Code.Mov_rm8_imm8, Iced.Intel.Code.Mov_r8_rm8, Iced.Intel.Code.Mov_rm16_r16, Iced.Intel.Code.Mov_r16_rm16,
            Iced.Intel.Code.Mov_rm16_imm16, Iced.Intel.Code.Movsxd_r64_rm32, Iced.Intel.Code.Movzx_r32_rm16, Iced.Intel.Code.Movsx_r32_rm8,
            Iced.Intel.Code.Sub_rm32_imm8, Iced.Intel.Code.Sub_rm32_r32, Iced.Intel.Code.Sub_r32_rm32, Iced.Intel.Code.Sub_rm16_r16,
            Iced.Intel.Code.Adc_rm32_imm8, Iced.Intel.Code.Adc_r32_rm32, Iced.Intel.Code.Adc_rm64_r64,
            Iced.Intel.Code.Sbb_rm32_imm8, Iced.Intel.Code.Sbb_r32_rm32, Iced.Intel.Code.Sbb_rm32_r32,
            Iced.Intel.Code.Add_rm32_r32, Iced.Intel.Code.Add_r32_rm32, Iced.Intel.Code.Or_rm32_r32, Iced.Intel.Code.Or_r32_rm32,
            Iced.Intel.Code.And_rm32_r32, Iced.Intel.Code.And_r32_rm32, Iced.Intel.Code.Xor_rm32_r32, Iced.Intel.Code.Xor_r32_rm32,
            Iced.Intel.Code.Cmp_rm32_r32, Iced.Intel.Code.Cmp_r32_rm32, Iced.Intel.Code.Test_rm32_r32, Iced.Intel.Code.Cmp_rm64_r64,
            Iced.Intel.Code.Add_rm8_imm8, Iced.Intel.Code.Add_rm8_r8, Iced.Intel.Code.Add_r8_rm8, Iced.Intel.Code.Test_rm8_imm8,
            Iced.Intel.Code.Test_rm8_r8, Iced.Intel.Code.Xor_rm8_imm8, Iced.Intel.Code.Cmp_rm8_imm8, Iced.Intel.Code.Add_rm16_imm16,
            Iced.Intel.Code.Mov_rm64_imm32, Iced.Intel.Code.Sub_rm64_imm8, Iced.Intel.Code.Add_rm64_imm32,
            Iced.Intel.Code.Xchg_rm8_r8, Iced.Intel.Code.Xchg_rm64_r64,
            Iced.Intel.Code.Mov_moffs8_AL, Iced.Intel.Code.Mov_AL_moffs8, Iced.Intel.Code.Mov_moffs16_AX, Iced.Intel.Code.Mov_AX_moffs16,
            Iced.Intel.Code.Mov_moffs32_EAX, Iced.Intel.Code.Mov_moffs64_RAX, Iced.Intel.Code.Mov_RAX_moffs64,
            Iced.Intel.Code.Stosb_m8_AL, Iced.Intel.Code.Stosw_m16_AX, Iced.Intel.Code.Stosd_m32_EAX, Iced.Intel.Code.Stosq_m64_RAX,
            Iced.Intel.Code.Movsb_m8_m8, Iced.Intel.Code.Movsw_m16_m16, Iced.Intel.Code.Movsd_m32_m32, Iced.Intel.Code.Movsq_m64_m64,
        ];
        Assert.Equal(Array.Empty<Code>(), wanted.Where(c => !codes.Contains(c)).ToArray());
    }
}
