using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>RAX back from a VMCALL made at CPL != 0 (kvm/Vmx/Exits/VmcallExit.cs NotPermitted).</summary>
    public const ulong VmcallNotPermitted = unchecked((ulong)-2L);

    /// <summary>
    /// 64-bit: a ring-3 program inside a guest cannot make hypercalls. Checks (exit status = the
    /// number of the first that failed, 0 when all hold; no IDT): 1 VMCALL ping at ring 0 returns 0;
    /// then SYSRETQ to ring 3 (as msr64: EFER.SCE, STAR, the user bit in every paging level, IOPL 3
    /// in R11 so ring 3 may print and write the exit port) and 2 CS is 0x33 there; 3 VMCALL ping and
    /// 4 VMCALL yield at ring 3 each return -2 (not permitted). The host counts the two refusals.
    /// </summary>
    private static byte[] Ring3Vmcall64()
    {
        var strings = new Strings("ring3vmcall64 guest: VMCALL at ring 0, then at ring 3\n", "ring3vmcall64 guest: ring 3 was refused\n", "RING3VMCALL64 CHECK FAILED\n");
        var a = new Assembler(64);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var ring3 = a.CreateLabel();
        const uint Efer = 0xC000_0080, Star = 0xC000_0081;
        const ulong StarValue = 0x0020_0008_0000_0000;        // SYSRET: CS 0x33, SS 0x2B

        Print(a, strings.Address(0), long64: true);
        a.mov(ebp, 1);                                         // check number
        // 1: ping at ring 0 is answered
        a.xor(eax, eax);
        a.vmcall();
        a.test(rax, rax);
        a.jnz(fail);

        // The flat user descriptors SYSRET's selectors name, in the GDT the VMCS puts at base 0.
        a.xor(edi, edi);
        a.mov(rax, 0x00CF_F200_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x28], rax);
        a.mov(rax, 0x00AF_FA00_0000_FFFFUL);
        a.mov(__qword_ptr[rdi + 0x30], rax);
        // The user bit at every paging level (tables at 0x1000, 0x2000, 0x3000, as msr64).
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
        // EFER.SCE (SYSRET raises #UD without it) and STAR.
        a.mov(ecx, Efer);
        a.rdmsr();
        a.or(eax, 1);
        a.wrmsr();
        a.mov(ecx, Star);
        a.mov(eax, unchecked((uint)StarValue));
        a.mov(edx, (uint)(StarValue >> 32));
        a.wrmsr();
        // SYSRETQ: RIP from RCX, RFLAGS from R11 (IOPL 3, IF clear).
        a.lea(rcx, __[ring3]);
        a.mov(r11d, 0x3002u);
        a.sysretq();

        a.Label(ref ring3);
        // 2: this is ring 3
        a.inc(ebp);
        a.mov(eax, cs);
        a.cmp(eax, 0x33);
        a.jne(fail);
        // 3: ping at ring 3 is refused
        a.inc(ebp);
        a.xor(eax, eax);
        a.vmcall();
        a.mov(rbx, VmcallNotPermitted);
        a.cmp(rax, rbx);
        a.jne(fail);
        // 4: yield at ring 3 is refused
        a.inc(ebp);
        a.mov(eax, 1);
        a.vmcall();
        a.cmp(rax, rbx);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: true);
        return strings.Image(a, 64);
    }
}
