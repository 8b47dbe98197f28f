using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>Where msr64 keeps the qwords its FS-, GS- and KERNEL_GS-relative loads must find (at base + 8).</summary>
    public const uint Msr64FsArea = 0x8000, Msr64GsArea = 0x9000, Msr64KernelGsArea = 0xA000;

    /// <summary>msr64 writes 1 here when CPUID offered RDTSCP and it checked it, 2 when CPUID did not offer it.</summary>
    public const uint Msr64RdtscpSlot = 0x7400;

    /// <summary>The IA32_TSC value msr64 writes (its RDTSC must go on from there).</summary>
    public const ulong Msr64TscValue = 0x0050_0000_0000_0000;

    /// <summary>
    /// 64-bit: a guest's writes to the MSRs it owns take effect. Checks (exit status = the number of
    /// the first that failed, 0 when all hold; no IDT: a #GP the host injects ends the VM in a triple fault):
    /// 1-12 FS_BASE, GS_BASE, KERNEL_GS_BASE, SYSENTER_CS/ESP/EIP, STAR, LSTAR, CSTAR, FMASK, PAT
    /// and TSC_AUX each read back what was written; 13 an FS-relative load and 14 a GS-relative
    /// load find the bytes at the bases written; 15 after SWAPGS a GS-relative load finds the
    /// KERNEL_GS_BASE area, 16 and RDMSR sees the two bases exchanged, 17 a second SWAPGS swaps them
    /// back; 18 RDTSCP returns TSC_AUX in ECX if CPUID 0x8000_0001 EDX[27] offers it (otherwise
    /// skipped; <see cref="Msr64RdtscpSlot"/> says which); 19 after a WRMSR of IA32_TSC, RDTSC is
    /// just above the value written; 20 an EFER write sets SCE (LME and LMA kept); 21 SYSCALL lands
    /// at LSTAR with CS and SS from STAR[47:32], 22 RCX = the return RIP, 23 R11 = the RFLAGS before,
    /// 24 FMASK's bits (DF, AC) cleared and IOPL kept; SYSRETQ returns to ring 3 with 25 CS and SS
    /// from STAR[63:48] (0x33 and 0x2B), 26 RFLAGS from R11 (all of them, DF and AC set again). The rest runs at CPL 3:
    /// IOPL 3 (set before SYSCALL, restored by SYSRET) lets it print and write the exit port, and
    /// the guest sets the user bit in its page tables before.
    /// </summary>
    private static byte[] Msr64()
    {
        var strings = new Strings("msr64 guest: MSR writes take effect\n", "msr64 guest: every check passed\n", "MSR64 CHECK FAILED\n");
        var a = new Assembler(64);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var entry = a.CreateLabel();
        var back = a.CreateLabel();
        const uint FsBase = 0xC000_0100, GsBase = 0xC000_0101, KernelGsBase = 0xC000_0102, TscAux = 0xC000_0103;
        const uint Efer = 0xC000_0080, Star = 0xC000_0081, Lstar = 0xC000_0082, Cstar = 0xC000_0083, Fmask = 0xC000_0084;
        const uint SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176, Pat = 0x277, Tsc = 0x10;
        const ulong StarValue = 0x0020_0008_0000_0000;        // SYSCALL: CS 0x08, SS 0x10; SYSRET: CS 0x33, SS 0x2B
        const uint FmaskValue = (1 << 10) | (1 << 18);         // DF and AC
        const ulong Magic1 = 0x1111_2222_3333_4444, Magic2 = 0x5555_6666_7777_8888, Magic3 = 0x9999_AAAA_BBBB_CCCC;

        Print(a, strings.Address(0), long64: true);
        a.mov(ebp, 0);                                         // check number
        void WriteMsr(uint msr, ulong value)
        {
            a.mov(ecx, msr);
            a.mov(eax, (uint)value);
            a.mov(edx, (uint)(value >> 32));
            a.wrmsr();
        }
        void ReadMsr(uint msr)                                 // rax = the MSR
        {
            a.mov(ecx, msr);
            a.rdmsr();
            a.shl(rdx, 32);
            a.mov(eax, eax);
            a.or(rax, rdx);
        }
        void Expect(AssemblerRegister64 reg, ulong value)
        {
            a.mov(rbx, value);
            a.cmp(reg, rbx);
            a.jne(fail);
        }
        void ReadsBack(uint msr, ulong value)
        {
            a.inc(ebp);
            WriteMsr(msr, value);
            ReadMsr(msr);
            Expect(rax, value);
        }

        // The flat descriptors STAR names, in the GDT the VMCS puts at base 0: kernel code (64-bit)
        // and data at 0x08 and 0x10, user data and code (64-bit) at 0x28 and 0x30.
        a.xor(edi, edi);
        a.mov(rax, 0x00AF_9A00_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x08], rax);
        a.mov(rax, 0x00CF_9200_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x10], rax);
        a.mov(rax, 0x00CF_F200_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x28], rax);
        a.mov(rax, 0x00AF_FA00_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x30], rax);
        // The qwords the segment-relative loads must find.
        a.mov(rax, Magic1);
        a.mov(__qword_ptr[rdi + (int)Msr64FsArea + 8], rax);
        a.mov(rax, Magic2);
        a.mov(__qword_ptr[rdi + (int)Msr64GsArea + 8], rax);
        a.mov(rax, Magic3);
        a.mov(__qword_ptr[rdi + (int)Msr64KernelGsArea + 8], rax);
        a.mov(__dword_ptr[rdi + (int)Msr64RdtscpSlot], 0);

        // 1-12: each MSR reads back what was written (canonical addresses above the mapped GiB).
        ReadsBack(FsBase, 0xFFFF_8000_0000_1000);
        ReadsBack(GsBase, 0xFFFF_8000_0000_2000);
        ReadsBack(KernelGsBase, 0xFFFF_8000_0000_3000);
        ReadsBack(SysenterCs, 0x10);
        ReadsBack(SysenterEsp, 0xFFFF_8000_0000_4000);
        ReadsBack(SysenterEip, 0xFFFF_8000_0000_5000);
        ReadsBack(Star, StarValue);
        ReadsBack(Lstar, 0xFFFF_8000_0000_6000);
        ReadsBack(Cstar, 0xFFFF_8000_0000_7000);
        ReadsBack(Fmask, FmaskValue);
        ReadsBack(Pat, 0x0106_0405_0700_0406);                 // every entry a valid type, none the default's order
        ReadsBack(TscAux, 0x1234_5678);

        // 13: an FS-relative load uses FS_BASE
        a.inc(ebp);
        WriteMsr(FsBase, Msr64FsArea);
        a.xor(edi, edi);
        a.mov(rax, __qword_ptr.fs[rdi + 8]);
        Expect(rax, Magic1);
        // 14: a GS-relative load uses GS_BASE
        a.inc(ebp);
        WriteMsr(GsBase, Msr64GsArea);
        WriteMsr(KernelGsBase, Msr64KernelGsArea);
        a.xor(edi, edi);
        a.mov(rax, __qword_ptr.gs[rdi + 8]);
        Expect(rax, Magic2);
        // 15: SWAPGS: GS-relative loads now use what KERNEL_GS_BASE held
        a.inc(ebp);
        a.swapgs();
        a.mov(rax, __qword_ptr.gs[rdi + 8]);
        Expect(rax, Magic3);
        // 16: and RDMSR sees the two exchanged
        a.inc(ebp);
        ReadMsr(GsBase);
        Expect(rax, Msr64KernelGsArea);
        ReadMsr(KernelGsBase);
        Expect(rax, Msr64GsArea);
        // 17: a second SWAPGS swaps them back
        a.inc(ebp);
        a.swapgs();
        a.xor(edi, edi);
        a.mov(rax, __qword_ptr.gs[rdi + 8]);
        Expect(rax, Magic2);
        ReadMsr(KernelGsBase);
        Expect(rax, Msr64KernelGsArea);

        // 18: RDTSCP returns TSC_AUX in ECX, when CPUID offers it
        a.inc(ebp);
        var noRdtscp = a.CreateLabel();
        var rdtscpDone = a.CreateLabel();
        a.mov(eax, 0x8000_0001u);
        a.xor(ecx, ecx);
        a.cpuid();
        a.bt(edx, 27);
        a.jnc(noRdtscp);
        a.xor(ecx, ecx);
        a.rdtscp();
        a.cmp(ecx, 0x1234_5678);
        a.jne(fail);
        a.mov(__dword_ptr[(uint)Msr64RdtscpSlot], 1);
        a.jmp(rdtscpDone);
        a.Label(ref noRdtscp);
        a.mov(__dword_ptr[(uint)Msr64RdtscpSlot], 2);
        a.Label(ref rdtscpDone);

        // 19: a write to IA32_TSC moves the TSC: RDTSC goes on just above the value written
        // (the VM's TSC started at 0 when it was made, far below it)
        a.inc(ebp);
        WriteMsr(Tsc, Msr64TscValue);
        a.rdtsc();
        a.shl(rdx, 32);
        a.mov(eax, eax);
        a.or(rax, rdx);
        a.mov(rbx, Msr64TscValue);
        a.sub(rax, rbx);
        a.jb(fail);                                            // below the value written
        a.mov(rbx, 0x1_0000_0000UL);
        a.cmp(rax, rbx);
        a.jae(fail);                                           // not near it

        // 20: EFER.SCE through a write (LME and LMA stay)
        a.inc(ebp);
        ReadMsr(Efer);
        a.or(rax, 1);
        a.mov(rdx, rax);
        a.shr(rdx, 32);
        a.mov(ecx, Efer);
        a.wrmsr();
        ReadMsr(Efer);
        a.and(eax, 0x501);
        a.cmp(eax, 0x501);
        a.jne(fail);

        // Ring 3 comes after SYSRET: every paging level gets the user bit (tables at 0x1000, 0x2000,
        // 0x3000: PML4[0], PDPT[0] and the 512 2 MiB entries), and IOPL 3 for the ports.
        a.xor(edi, edi);
        a.or(__qword_ptr[rdi + 0x1000], 4);
        a.or(__qword_ptr[rdi + 0x2000], 4);
        var user = a.CreateLabel();
        a.mov(edi, 0x3000u);
        a.mov(ecx, 512u);
        a.Label(ref user);
        a.or(__qword_ptr[rdi], 4);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(user);
        a.mov(rax, cr3);
        a.mov(cr3, rax);

        // 21-24: SYSCALL to LSTAR, with STAR and FMASK as written
        WriteMsr(Star, StarValue);
        WriteMsr(Fmask, FmaskValue);
        a.lea(rax, __[entry]);
        a.mov(rdx, rax);
        a.shr(rdx, 32);
        a.mov(ecx, Lstar);
        a.wrmsr();
        a.lea(r14, __[back]);                                  // where SYSCALL must say it came from
        a.inc(ebp);                                            // (before the flags are taken: INC changes them)
        a.pushfq();
        a.or(__qword_ptr[rsp], 0x3000 | (1 << 18));            // IOPL 3, AC
        a.popfq();
        a.std();
        a.pushfq();
        a.pop(r13);                                            // RFLAGS as SYSCALL finds them
        a.syscall();
        a.Label(ref back);
        a.pushfq();
        a.pop(r12);                                            // RFLAGS right after SYSRETQ
        a.cld();
        // 25: SYSRETQ came back to ring 3 with the selectors STAR[63:48] names
        a.mov(eax, cs);
        a.cmp(eax, 0x33);
        a.jne(fail);
        a.mov(eax, ss);
        a.cmp(eax, 0x2B);
        a.jne(fail);
        // 26: and the RFLAGS of R11 (DF was set again)
        a.inc(ebp);
        a.cmp(r12, r13);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: true);

        // The SYSCALL entry (ring 0).
        a.Label(ref entry);
        a.mov(eax, cs);                                        // 21: CS and SS from STAR[47:32]
        a.cmp(eax, 0x08);
        a.jne(fail);
        a.mov(eax, ss);
        a.cmp(eax, 0x10);
        a.jne(fail);
        a.inc(ebp);                                            // 22: RCX = the return RIP
        a.cmp(rcx, r14);
        a.jne(fail);
        a.inc(ebp);                                            // 23: R11 = the RFLAGS before
        a.cmp(r11, r13);
        a.jne(fail);
        a.inc(ebp);                                            // 24: FMASK's bits cleared, IOPL kept
        a.pushfq();
        a.pop(rax);
        a.test(eax, FmaskValue);
        a.jnz(fail);
        a.and(eax, 0x3000);
        a.cmp(eax, 0x3000);
        a.jne(fail);
        a.inc(ebp);                                            // 25 is checked after the return
        a.sysretq();
        return strings.Image(a, 64);
    }
}
