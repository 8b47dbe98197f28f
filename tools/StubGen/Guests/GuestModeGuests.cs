using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>Where mmiobad32 stores the address of the instruction the decoder refuses.</summary>
    public const uint MmioRefusedRipSlot = 0x7000;

    /// <summary>The scratch-page offset mmiobad32 touches (its refused instruction's GPA is <see cref="ScratchBase"/> + this).</summary>
    public const uint MmioRefusedOffset = 0x40;

    /// <summary>
    /// 32-bit, paging off: an MMIO instruction the decoder refuses must stop the VM with a dump,
    /// never the host. Stores the address of the refused instruction at
    /// <see cref="MmioRefusedRipSlot"/> (the host test compares it with the dump's RIP), does an
    /// accepted store to the MMIO test page (<c>mov dword [edi+0x40], 5</c>), then
    /// <c>inc dword [edi+0x40]</c> (FF 47 40: INC is not an MMIO form, kvm/Mmio/MmioDecoder.cs).
    /// If the host emulated it anyway the guest prints a complaint and exits 1.
    /// </summary>
    private static byte[] MmioRefused32()
    {
        return TwoPass("mmiobad32", MmioRefused32Pass);
    }

    private static byte[] MmioRefused32Pass(uint refusedAddress, out ulong refusedRip)
    {
        var strings = new Strings("mmiobad guest: an instruction the MMIO decoder refuses comes next\n", "MMIO REFUSED INSTRUCTION WAS EMULATED\n");
        var a = new Assembler(32);
        var refused = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.mov(__dword_ptr[MmioRefusedRipSlot], refusedAddress);
        a.mov(edi, ScratchBase);
        a.mov(__dword_ptr[edi + (int)MmioRefusedOffset], 5);   // accepted: C7 /0
        a.Label(ref refused);
        a.inc(__dword_ptr[edi + (int)MmioRefusedOffset]);      // refused: FF /0
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 1);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32, refused, out refusedRip);
    }

    /// <summary>
    /// 64-bit: the MMIO forms the decoder accepts that mmio64 does not use, one numbered check after
    /// another against the MMIO test page (kvm/Devices/ScratchMmio.cs: it reads back what was
    /// written, at any width): byte immediate stores and byte/high-byte loads, 16-bit register and
    /// immediate moves, movsxd, movzx of a word, movsx of a byte; sub, adc and sbb in each form (with
    /// the carry in and out checked); add/or/and/xor/cmp/test with a register source and with memory
    /// as the source; 8-, 16- and 64-bit ALU forms; xchg of a byte and a qword; LOCK; the moffs
    /// stores and loads of al, ax, eax and rax; stos of bytes, words and qwords (with and without
    /// REP, and downward); movs from RAM to the page, from the page to RAM and within the page;
    /// REX registers, a scaled index, a 32-bit address size and a GS override. Exits with the number
    /// of the first check that failed, or 0.
    /// </summary>
    private static byte[] Mmio64b()
    {
        var strings = new Strings("mmio64b guest: the remaining decoded forms against the MMIO test page\n", "mmio64b guest: every form checked\n", "MMIO64B CHECK FAILED\n");
        var a = new Assembler(64);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: true);
        MapScratchGib(a);
        a.mov(ebx, 0);                                      // check number
        a.mov(rsi, (ulong)ScratchBase);
        a.mov(r8, rsi);                                     // the page again, for the string checks (they move rsi)
        a.cld();
        void Next() => a.inc(ebx);                          // before any flag a check tests: inc keeps only CF

        // 1: mov byte [m], imm8 (C6) merges into the dword around it
        a.mov(__dword_ptr[rsi], 0x11223344);
        a.mov(__byte_ptr[rsi], 0x5A);
        a.mov(eax, __dword_ptr[rsi]);
        Next(); a.cmp(eax, 0x1122335A); a.jne(fail);
        // 2: mov al, [m] (8A) keeps rax's other bits
        a.mov(rax, -1L);
        a.mov(al, __byte_ptr[rsi]);
        Next(); a.cmp(rax, -0xA6); a.jne(fail);
        // 3: mov ah, [m] (8A, high byte)
        a.xor(eax, eax);
        a.mov(ah, __byte_ptr[rsi + 1]);
        Next(); a.cmp(eax, 0x3300); a.jne(fail);
        // 4: mov [m], ax (66 89)
        a.mov(__dword_ptr[rsi + 8], unchecked((int)0xAAAAAAAA));
        a.mov(eax, 0x7777BEEF);
        a.mov(__word_ptr[rsi + 8], ax);
        a.mov(ecx, __dword_ptr[rsi + 8]);
        Next(); a.cmp(ecx, unchecked((int)0xAAAABEEF)); a.jne(fail);
        // 5: mov cx, [m] (66 8B) keeps rcx's other bits
        a.mov(rcx, -1L);
        a.mov(cx, __word_ptr[rsi + 8]);
        Next(); a.cmp(rcx, -0x4111); a.jne(fail);
        // 6: mov word [m], imm16 (66 C7)
        a.mov(__word_ptr[rsi + 10], 0x1234);
        a.mov(ecx, __dword_ptr[rsi + 8]);
        Next(); a.cmp(ecx, 0x1234BEEF); a.jne(fail);
        // 7: movsxd rcx, [m] (48 63)
        a.mov(__dword_ptr[rsi + 16], unchecked((int)0x80000001));
        a.movsxd(rcx, __dword_ptr[rsi + 16]);
        Next(); a.cmp(rcx, unchecked((int)0x80000001)); a.jne(fail);
        // 8: movzx ecx, word [m] (0F B7) clears rcx's upper half
        a.mov(__dword_ptr[rsi + 20], unchecked((int)0x87658765));
        a.mov(rcx, -1L);
        a.movzx(ecx, __word_ptr[rsi + 20]);
        Next(); a.cmp(rcx, 0x8765); a.jne(fail);
        // 9: movsx ecx, byte [m] (0F BE): 0x87 -> 0xFFFFFF87, upper half of rcx clear
        a.mov(rcx, -1L);
        a.movsx(ecx, __byte_ptr[rsi + 21]);
        a.mov(edx, 0xFFFFFF87u);                            // rdx = 0x00000000FFFFFF87
        Next(); a.cmp(rcx, rdx); a.jne(fail);

        // 10: sub [m], imm8 (83 /5)
        a.mov(__dword_ptr[rsi + 24], 100);
        a.sub(__dword_ptr[rsi + 24], 30);
        Next(); a.cmp(__dword_ptr[rsi + 24], 70); a.jne(fail);
        // 11: sub [m], reg (29) with a borrow out: CF set, 70 - 71 = -1
        a.mov(edx, 71);
        Next(); a.sub(__dword_ptr[rsi + 24], edx); a.jnc(fail);
        a.cmp(__dword_ptr[rsi + 24], -1); a.jne(fail);
        // 12: sub reg, [m] (2B): 100 - (-1) = 101
        a.mov(ecx, 100);
        a.sub(ecx, __dword_ptr[rsi + 24]);
        Next(); a.cmp(ecx, 101); a.jne(fail);
        // 13: adc [m], imm8 (83 /2) with CF in: 10 + 5 + 1
        a.mov(__dword_ptr[rsi + 28], 10);
        a.stc();
        a.adc(__dword_ptr[rsi + 28], 5);
        Next(); a.cmp(__dword_ptr[rsi + 28], 16); a.jne(fail);
        // 14: adc reg, [m] (13) without CF in, with a carry out: 0xFFFFFFF0 + 16 = 0, CF and ZF
        a.mov(ecx, 0xFFFFFFF0u);
        a.clc();
        Next(); a.adc(ecx, __dword_ptr[rsi + 28]); a.jnc(fail); a.jnz(fail);
        // 15: adc [m], reg (48 11) with CF in: 0x1_FFFFFFFF + 1 + 1
        a.mov(rax, 0x1_FFFF_FFFFUL);
        a.mov(__qword_ptr[rsi + 32], rax);
        a.mov(edx, 1);
        a.stc();
        a.adc(__qword_ptr[rsi + 32], rdx);
        a.mov(rcx, 0x2_0000_0001UL);
        Next(); a.cmp(__qword_ptr[rsi + 32], rcx); a.jne(fail);   // cmp [m], reg (48 39)
        // 16: sbb [m], imm8 (83 /3) with CF in: 50 - 8 - 1
        a.mov(__dword_ptr[rsi + 40], 50);
        a.stc();
        a.sbb(__dword_ptr[rsi + 40], 8);
        Next(); a.cmp(__dword_ptr[rsi + 40], 41); a.jne(fail);
        // 17: sbb reg, [m] (1B) with CF in: 100 - 41 - 1
        a.mov(ecx, 100);
        a.stc();
        a.sbb(ecx, __dword_ptr[rsi + 40]);
        Next(); a.cmp(ecx, 58); a.jne(fail);
        // 18: sbb [m], reg (19) without CF in, with a borrow out: 41 - 42 = -1, CF set
        a.mov(edx, 42);
        a.clc();
        Next(); a.sbb(__dword_ptr[rsi + 40], edx); a.jnc(fail);
        a.cmp(__dword_ptr[rsi + 40], -1); a.jne(fail);

        // 19: add [m], reg (01); 20: add reg, [m] (03)
        a.mov(__dword_ptr[rsi + 48], 1000);
        a.mov(edx, 234);
        a.add(__dword_ptr[rsi + 48], edx);
        Next(); a.cmp(__dword_ptr[rsi + 48], 1234); a.jne(fail);
        a.mov(ecx, 1);
        a.add(ecx, __dword_ptr[rsi + 48]);
        Next(); a.cmp(ecx, 1235); a.jne(fail);
        // 21: or [m], reg (09) and or reg, [m] (0B): 0x4D2 | 0x10000, then | 0x20000
        a.mov(edx, 0x10000);
        a.or(__dword_ptr[rsi + 48], edx);
        a.mov(ecx, 0x20000);
        a.or(ecx, __dword_ptr[rsi + 48]);
        Next(); a.cmp(ecx, 0x304D2); a.jne(fail);
        // 22: and [m], reg (21) and and reg, [m] (23): 0x104D2 & 0xFF = 0xD2, then & 0xF0
        a.mov(edx, 0xFF);
        a.and(__dword_ptr[rsi + 48], edx);
        a.mov(ecx, 0xF0);
        a.and(ecx, __dword_ptr[rsi + 48]);
        Next(); a.cmp(ecx, 0xD0); a.jne(fail);
        // 23: xor [m], reg (31) and xor reg, [m] (33): 0xD2 ^ 0xFF = 0x2D, then 0x2D ^ 0x2D = 0 (ZF)
        a.mov(edx, 0xFF);
        a.xor(__dword_ptr[rsi + 48], edx);
        a.mov(ecx, 0x2D);
        Next(); a.xor(ecx, __dword_ptr[rsi + 48]); a.jnz(fail);
        // 24: cmp [m], reg (39) equal; cmp reg, [m] (3B) above
        a.mov(edx, 0x2D);
        Next(); a.cmp(__dword_ptr[rsi + 48], edx); a.jne(fail);
        a.mov(ecx, 0x2E);
        a.cmp(ecx, __dword_ptr[rsi + 48]); a.jbe(fail);
        // 25: test [m], reg (85): 0x2D & 0x20 set, 0x2D & 0x10 clear
        a.mov(edx, 0x20);
        Next(); a.test(__dword_ptr[rsi + 48], edx); a.jz(fail);
        a.mov(edx, 0x10);
        a.test(__dword_ptr[rsi + 48], edx); a.jnz(fail);

        // 26: add byte [m], imm8 (80 /0) with a carry out, the next byte untouched; cmp word [m], imm (66 83 /7)
        a.mov(__word_ptr[rsi + 56], 0x00F0);
        Next(); a.add(__byte_ptr[rsi + 56], 0x20); a.jnc(fail);
        a.cmp(__word_ptr[rsi + 56], 0x0010); a.jne(fail);
        // 27: add byte [m], r8 (00) and add r8, [m] (02)
        a.mov(dl, 5);
        a.add(__byte_ptr[rsi + 56], dl);
        a.mov(cl, 1);
        a.add(cl, __byte_ptr[rsi + 56]);
        Next(); a.cmp(cl, 0x16); a.jne(fail);
        // 28: test byte [m], imm8 (F6 /0), test byte [m], r8 (84), xor byte [m], imm8 (80 /6) sets SF, cmp byte (80 /7)
        Next(); a.test(__byte_ptr[rsi + 56], 0x04); a.jz(fail);
        a.mov(dl, 0x08);
        a.test(__byte_ptr[rsi + 56], dl); a.jnz(fail);
        a.xor(__byte_ptr[rsi + 56], 0x80); a.jns(fail);
        a.cmp(__byte_ptr[rsi + 56], 0x95); a.jne(fail);
        // 29: 16-bit ALU with imm16 (66 81 /0) and a 16-bit register source (66 29)
        a.mov(__word_ptr[rsi + 60], 0x1000);
        a.add(__word_ptr[rsi + 60], 0x2345);
        a.mov(dx, 0x0300);
        a.sub(__word_ptr[rsi + 60], dx);
        Next(); a.cmp(__word_ptr[rsi + 60], 0x3045); a.jne(fail);
        // 30: 64-bit immediates sign-extended: mov qword (48 C7), sub qword imm8 (48 83 /5), add qword imm32 (48 81 /0)
        a.mov(__qword_ptr[rsi + 64], 0);
        a.sub(__qword_ptr[rsi + 64], 0x10);
        Next(); a.cmp(__qword_ptr[rsi + 64], -16); a.jne(fail);
        a.mov(__qword_ptr[rsi + 72], -2);
        a.add(__qword_ptr[rsi + 72], 0x1000);
        a.mov(rcx, __qword_ptr[rsi + 72]);
        a.cmp(rcx, 0xFFE); a.jne(fail);

        // 31: xchg byte [m], r8 (86)
        a.mov(__byte_ptr[rsi + 80], 0x11);
        a.mov(cl, 0x22);
        a.xchg(__byte_ptr[rsi + 80], cl);
        Next(); a.cmp(cl, 0x11); a.jne(fail);
        a.cmp(__byte_ptr[rsi + 80], 0x22); a.jne(fail);
        // 32: xchg qword [m], r64 (48 87)
        a.mov(rdx, 0x0102_0304_0506_0708UL);
        a.mov(__qword_ptr[rsi + 88], rdx);
        a.mov(rcx, -1L);
        a.xchg(__qword_ptr[rsi + 88], rcx);
        Next(); a.cmp(rcx, rdx); a.jne(fail);
        a.cmp(__qword_ptr[rsi + 88], -1); a.jne(fail);
        // 33: lock add [m], reg (F0 01) and lock or [m], imm8 (F0 83 /1)
        a.mov(__dword_ptr[rsi + 96], 1);
        a.mov(edx, 2);
        a.@lock.add(__dword_ptr[rsi + 96], edx);
        a.@lock.or(__dword_ptr[rsi + 96], 0x40);
        Next(); a.cmp(__dword_ptr[rsi + 96], 0x43); a.jne(fail);

        // 34-37: moffs stores and loads (A2/A0, 66 A3/66 A1, A3, 48 A3/48 A1), checked through [rsi+...]
        a.mov(al, 0x77);
        a.mov(__byte_ptr[(ulong)ScratchBase + 0x100], al);
        a.xor(eax, eax);
        a.mov(al, __byte_ptr[(ulong)ScratchBase + 0x100]);
        Next(); a.cmp(eax, 0x77); a.jne(fail);
        a.mov(ax, 0xABCD);
        a.mov(__word_ptr[(ulong)ScratchBase + 0x102], ax);
        a.xor(eax, eax);
        a.mov(ax, __word_ptr[(ulong)ScratchBase + 0x102]);
        Next(); a.cmp(eax, 0xABCD); a.jne(fail);
        a.cmp(__word_ptr[rsi + 0x102], unchecked((short)0xABCD)); a.jne(fail);
        a.mov(eax, 0x12345678);
        a.mov(__dword_ptr[(ulong)ScratchBase + 0x104], eax);
        Next(); a.cmp(__dword_ptr[rsi + 0x104], 0x12345678); a.jne(fail);
        a.mov(rdx, 0x1122_3344_5566_7788UL);
        a.mov(rax, rdx);
        a.mov(__qword_ptr[(ulong)ScratchBase + 0x108], rax);
        a.xor(eax, eax);
        a.mov(rax, __qword_ptr[(ulong)ScratchBase + 0x108]);
        Next(); a.cmp(rax, rdx); a.jne(fail);

        // 38: stosb without REP (AA): one byte, rdi + 1
        a.lea(rdi, __[rsi + 0x200]);
        a.mov(al, 0x3C);
        a.stosb();
        Next(); a.cmp(__byte_ptr[rsi + 0x200], 0x3C); a.jne(fail);
        a.lea(rcx, __[rsi + 0x201]);
        a.cmp(rdi, rcx); a.jne(fail);
        // 39: rep stosw (66 F3 AB): four words from 0x201, rcx counted to 0
        a.mov(ecx, 4);
        a.mov(ax, 0xA1B2);
        a.rep.stosw();
        Next(); a.test(rcx, rcx); a.jnz(fail);
        a.cmp(__word_ptr[rsi + 0x207], unchecked((short)0xA1B2)); a.jne(fail);
        a.cmp(__byte_ptr[rsi + 0x209], 0); a.jne(fail);
        // 40: rep stosq (F3 48 AB)
        a.lea(rdi, __[rsi + 0x210]);
        a.mov(ecx, 3);
        a.mov(rax, 0x0BAD_CAFE_F00D_D00DUL);
        a.rep.stosq();
        Next(); a.cmp(__qword_ptr[rsi + 0x220], rax); a.jne(fail);
        a.cmp(__dword_ptr[rsi + 0x228], 0); a.jne(fail);
        // 41: stosd with DF set: two dwords downward from 0x240, rdi ends at 0x238
        a.lea(rdi, __[rsi + 0x240]);
        a.mov(eax, 0x5555AAAA);
        a.std();
        a.stosd();
        a.stosd();
        a.cld();
        Next(); a.cmp(__dword_ptr[rsi + 0x23C], 0x5555AAAA); a.jne(fail);
        a.lea(rcx, __[rsi + 0x238]);
        a.cmp(rdi, rcx); a.jne(fail);

        // 42: rep movsb from RAM (0x8000) to the page (0x300)
        a.mov(edi, 0x8000u);
        a.mov(rax, 0x0706_0504_0302_0100UL);
        a.mov(rdx, 0x0808_0808_0808_0808UL);
        a.mov(__qword_ptr[rdi], rax);
        a.add(rax, rdx);
        a.mov(__qword_ptr[rdi + 8], rax);
        a.add(rax, rdx);
        a.mov(__qword_ptr[rdi + 16], rax);
        a.add(rax, rdx);
        a.mov(__qword_ptr[rdi + 24], rax);
        a.mov(esi, 0x8000u);
        a.lea(rdi, __[r8 + 0x300]);
        a.mov(ecx, 16);
        a.rep.movsb();
        a.mov(rsi, r8);
        Next(); a.cmp(__dword_ptr[rsi + 0x30C], 0x0F0E0D0C); a.jne(fail);
        // 43: rep movsq from RAM to the page (0x310)
        a.mov(esi, 0x8010u);
        a.lea(rdi, __[r8 + 0x310]);
        a.mov(ecx, 2);
        a.rep.movsq();
        a.mov(rsi, r8);
        a.mov(rcx, 0x1F1E_1D1C_1B1A_1918UL);
        Next(); a.cmp(__qword_ptr[rsi + 0x318], rcx); a.jne(fail);
        // 44: movsd from the page to RAM (A5, no REP)
        a.lea(rsi, __[r8 + 0x304]);
        a.mov(edi, 0x8100u);
        a.movsd();
        a.mov(rsi, r8);
        Next(); a.cmp(__dword_ptr[0x8100], 0x07060504); a.jne(fail);
        a.cmp(rdi, 0x8104); a.jne(fail);
        // 45: movsw within the page (66 A5: both operands on the device)
        a.lea(rsi, __[r8 + 0x31E]);
        a.lea(rdi, __[r8 + 0x380]);
        a.movsw();
        a.mov(rsi, r8);
        Next(); a.cmp(__word_ptr[rsi + 0x380], 0x1F1E); a.jne(fail);

        // 46: REX.R source and REX.B base (mov [r8+d], r9d; mov r10, [r8+d])
        a.mov(r9d, 0xCAFE);
        a.mov(__dword_ptr[r8 + 0x400], r9d);
        a.mov(r10, __qword_ptr[r8 + 0x400]);
        Next(); a.cmp(r10, 0xCAFE); a.jne(fail);
        // 47: a scaled index with REX.X ([r8 + r11*8 + 0x3E0])
        a.mov(r11d, 4);
        a.mov(eax, __dword_ptr[r8 + r11 * 8 + 0x3E0]);
        Next(); a.cmp(eax, 0xCAFE); a.jne(fail);
        // 48: a byte register that needs REX (dil: 40 88, not BH)
        a.mov(edi, 0x99);
        a.mov(__byte_ptr[rsi + 0x410], dil);
        a.movzx(ecx, __byte_ptr[rsi + 0x410]);
        Next(); a.cmp(ecx, 0x99); a.jne(fail);
        // 49: 32-bit address size (67 8B: [esi+0x400])
        a.mov(eax, __dword_ptr[esi + 0x400]);
        Next(); a.cmp(eax, 0xCAFE); a.jne(fail);
        // 50: a GS override (base 0 in the test guests)
        a.mov(eax, __dword_ptr.gs[rsi + 0x400]);
        Next(); a.cmp(eax, 0xCAFE); a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebx, long64: true);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// The 64-bit test guests' identity map covers the first GiB only: map the MMIO test page's GiB
    /// (PDPT[3] -> a page directory at 0x4000 of 2 MiB pages for 3-4 GiB), as mmio64 does.
    /// </summary>
    private static void MapScratchGib(Assembler a)
    {
        var fill = a.CreateLabel();
        a.mov(edi, 0x4000u);
        a.mov(ecx, 512u);
        a.mov(eax, 0xC000_0083u);                           // 0xC0000000 | present | writable | 2 MiB
        a.Label(ref fill);
        a.mov(__dword_ptr[rdi], eax);
        a.mov(__dword_ptr[rdi + 4], 0);
        a.add(eax, 0x20_0000);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(fill);
        a.mov(edi, 0x2000u + 3 * 8);
        a.mov(__qword_ptr[rdi], 0x4003);                    // PDPT[3] -> the new directory
        a.mov(rax, cr3);
        a.mov(cr3, rax);                                    // flush
    }

    /// <summary>Page tables longmode32 builds: PML4, PDPT and one page directory, 4 KiB each.</summary>
    public const uint LongModePml4 = 0x1_0000, LongModePdpt = 0x1_1000, LongModePd = 0x1_2000;

    /// <summary>The 64-bit code selector longmode32 adds to the GDT at base 0.</summary>
    public const ushort LongModeCode64 = 0x28;

    /// <summary>
    /// 32-bit protected mode, paging off, that switches itself to long mode as a boot loader does
    /// (SDM Vol. 3A, 10.8.5), and back: builds identity-mapped 4-level page tables of 2 MiB pages
    /// for the first GiB at <see cref="LongModePml4"/> (PML4[1] maps the same GiB again at 512 GiB),
    /// adds a 64-bit code descriptor (<see cref="LongModeCode64"/>) to its GDT, sets CR4.PAE,
    /// EFER.LME by WRMSR (check 1: RDMSR shows LME, not yet LMA), loads CR3, and sets CR0.PG. It
    /// first clears CR0.NE and sets it again with PG, in the same MOV, as a guest that came up from
    /// real mode with NE clear would: NE is a host-owned bit, so that MOV exits and the host, not the
    /// CPU, makes the switch to IA-32e mode (kvm/Vmx/Exits/CrAccessExit.cs). Then a far jump to the
    /// 64-bit code: check 2 EFER.LMA is set; 3 64-bit arithmetic above 4 GiB; 4 a read through the
    /// alias at 512 GiB (a 4-level walk) sees the same bytes as the identity map; it prints a line
    /// from 64-bit code and far-returns to 32-bit code (compatibility mode), which clears PG and NE
    /// in one MOV (again an exit: the host leaves IA-32e mode) and checks 5 EFER.LMA is clear.
    /// Exits 0, or with the number of the check that failed.
    /// </summary>
    private static byte[] LongMode32()
    {
        byte[] image = LongMode32Pass(0, 0, out ulong code64, out ulong back32);
        byte[] final = LongMode32Pass((uint)code64, (uint)back32, out ulong again64, out ulong againBack);
        if (again64 != code64 || againBack != back32 || final.Length != image.Length)
            throw new InvalidOperationException("longmode32: the code moved between passes");
        return final;
    }

    private static byte[] LongMode32Pass(uint code64Address, uint back32Address, out ulong code64Rip, out ulong back32Rip)
    {
        var strings = new Strings("longmode guest: 32-bit protected mode, switching to long mode\n", "longmode guest: back in 32-bit protected mode, every check passed\n",
            "LONGMODE CHECK FAILED\n", "longmode guest: running 64-bit code\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var code64 = a.CreateLabel();
        var back32 = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        a.mov(__dword_ptr[ebx + LongModeCode64], 0x0000FFFF);
        a.mov(__dword_ptr[ebx + LongModeCode64 + 4], 0x00AF9A00);   // present, code, L=1, D=0, G
        a.mov(ebp, 0);                                              // check number

        // The tables: zero 12 KiB, PML4[0] and PML4[1] -> PDPT, PDPT[0] -> PD, PD: 512 x 2 MiB.
        a.cld();
        a.mov(edi, LongModePml4);
        a.mov(ecx, 3 * 1024);
        a.xor(eax, eax);
        a.rep.stosd();
        a.mov(__dword_ptr[LongModePml4], LongModePdpt | 3);
        a.mov(__dword_ptr[LongModePml4 + 8], LongModePdpt | 3);
        a.mov(__dword_ptr[LongModePdpt], LongModePd | 3);
        var fill = a.CreateLabel();
        a.mov(edi, LongModePd);
        a.mov(eax, 0x83);                                           // present | writable | 2 MiB
        a.mov(ecx, 512);
        a.Label(ref fill);
        a.mov(__dword_ptr[edi], eax);
        a.add(eax, 0x20_0000);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(fill);

        // CR4.PAE, then EFER.LME; 1: RDMSR sees LME and not LMA
        a.mov(eax, cr4);
        a.or(eax, 1 << 5);
        a.mov(cr4, eax);
        a.mov(ecx, 0xC000_0080u);
        a.rdmsr();
        a.or(eax, 1 << 8);
        a.wrmsr();
        a.inc(ebp);
        a.rdmsr();
        a.test(eax, 1 << 8);
        a.jz(fail);
        a.test(eax, 1 << 10);
        a.jnz(fail);

        // CR3, then CR0: NE off, then PG and NE on in one MOV (which exits to the host).
        a.mov(eax, LongModePml4);
        a.mov(cr3, eax);
        a.mov(eax, cr0);
        a.and(eax, ~(1 << 5));
        a.mov(cr0, eax);
        a.or(eax, unchecked((int)((1u << 31) | (1u << 5))));
        a.mov(cr0, eax);
        a.inc(ebp);                                                 // 2: in compatibility mode now; to 64-bit code
        a.jmp(LongModeCode64, code64Address);

        // 5: back from 64-bit code, in compatibility mode: PG and NE off in one MOV (an exit), then LMA is clear.
        a.Label(ref back32);
        a.mov(eax, cr0);
        a.and(eax, ~unchecked((int)((1u << 31) | (1u << 5))));
        a.mov(cr0, eax);
        a.mov(ecx, 0xC000_0080u);
        a.rdmsr();
        a.test(eax, 1 << 10);
        a.jnz(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        a.Label(ref code64);
        a.db(LongMode64Part(code64Address, back32Address, strings));
        return strings.Image2(a, 32, code64, back32, out code64Rip, out back32Rip);
    }

    /// <summary>longmode32's 64-bit code, assembled for <paramref name="address"/>; ebp holds 2, the check about to run.</summary>
    private static byte[] LongMode64Part(uint address, uint back32, Strings strings)
    {
        var a = new Assembler(64);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        // 2: EFER.LMA
        a.mov(ecx, 0xC000_0080u);
        a.rdmsr();
        a.test(eax, 1 << 10);
        a.jz(fail);
        // 3: 64-bit arithmetic: 0x1_FFFF_FFFF + 1 = 0x2_0000_0000, then >> 32 = 2
        a.inc(ebp);
        a.mov(rax, 0x1_FFFF_FFFFUL);
        a.add(rax, 1);
        a.mov(rdx, rax);
        a.shr(rdx, 32);
        a.cmp(rdx, 2);
        a.jne(fail);
        a.test(eax, eax);
        a.jnz(fail);
        // 4: the image's first qword through PML4[1] (512 GiB + 1 MiB) equals it through the identity map
        a.inc(ebp);
        a.mov(rsi, 0x80_0000_0000UL + LoadAddress);
        a.mov(rax, __qword_ptr[rsi]);
        a.mov(edi, (uint)LoadAddress);
        a.cmp(rax, __qword_ptr[rdi]);
        a.jne(fail);
        a.cmp(eax, 0x54534754);                                     // "TGST"
        a.jne(fail);
        Print(a, strings.Address(3), long64: true);
        // To 32-bit code (CS 0x08: compatibility mode) by a far return, for check 5.
        a.inc(ebp);
        a.push(0x08);
        a.mov(eax, back32);                                         // 5 bytes in both passes (push imm would shrink for 0)
        a.push(rax);
        a.AddInstruction(Instruction.Create(Code.Retfq));              // 48 CB: pops RIP, then CS
        a.Label(ref fail);
        Print(a, strings.Address(2), long64: true);
        a.mov(eax, ebp);
        a.mov(dx, Exit);
        a.@out(dx, al);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }
}
