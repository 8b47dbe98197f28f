using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// VMX instruction wrappers. Each returns the VMX status of its instruction (SDM Vol. 3C, "Conventions"
/// of the VMX instruction reference): 0 = VMsucceed (CF = ZF = 0), 1 = VMfailInvalid (CF = 1, no
/// current VMCS / no error number), 2 = VMfailValid (ZF = 1, read VM-instruction error field 0x4400).
/// </summary>
/// <remarks>
/// Exact signatures (System V AMD64):
/// <code>
/// int tandem_vmxon(ulong physAddrOfVmxonRegion);   // by value; the wrapper makes the m64 operand on the stack
/// int tandem_vmclear(ulong physAddrOfVmcs);        // by value
/// int tandem_vmptrld(ulong physAddrOfVmcs);        // by value
/// int tandem_vmxoff();
/// int tandem_vmread(ulong field, ulong* value);    // *value written only on success
/// int tandem_vmwrite(ulong field, ulong value);
/// int tandem_invept(ulong type, void* descriptor16);   // 16-byte INVEPT descriptor
/// int tandem_invvpid(ulong type, void* descriptor16);  // 16-byte INVVPID descriptor
/// </code>
/// </remarks>
internal static class Vmx
{
    private static void Function(ObjectBuilder o, string name, Action<Assembler> body)
    {
        var c = new CodeBlock(64);
        c.Symbol(name);
        body(c.A);
        o.Emit(o.Text, c);
    }

    /// <summary>
    /// Turns RFLAGS after a VMX instruction into eax = 0/1/2 and returns. Only MOV and Jcc run between
    /// the VMX instruction and here, and neither changes flags.
    /// </summary>
    internal static void ReturnVmStatus(Assembler a)
    {
        var done = a.CreateLabel();
        a.mov(eax, 0);                             // mov (not xor): must keep the flags
        a.ja(done);                                // CF = 0 and ZF = 0: VMsucceed
        a.mov(eax, 1);
        a.jc(done);                                // CF = 1: VMfailInvalid
        a.mov(eax, 2);                             // ZF = 1: VMfailValid
        a.Label(ref done);
        a.ret();
    }

    /// <summary>VMXON/VMCLEAR/VMPTRLD take an m64 holding the physical address: put it on the stack.</summary>
    private static void WithPhysOnStack(Assembler a, Action<AssemblerMemoryOperand> instruction)
    {
        a.push(rdi);                               // [rsp] = physical address
        instruction(__qword_ptr[rsp]);
        a.pop(rdi);                                // pop does not change flags
        ReturnVmStatus(a);
    }

    /// <summary><c>int tandem_vmxon(ulong phys)</c></summary>
    public static void Vmxon(ObjectBuilder o) => Function(o, "tandem_vmxon", a => WithPhysOnStack(a, m => a.vmxon(m)));

    /// <summary><c>int tandem_vmclear(ulong phys)</c></summary>
    public static void Vmclear(ObjectBuilder o) => Function(o, "tandem_vmclear", a => WithPhysOnStack(a, m => a.vmclear(m)));

    /// <summary><c>int tandem_vmptrld(ulong phys)</c></summary>
    public static void Vmptrld(ObjectBuilder o) => Function(o, "tandem_vmptrld", a => WithPhysOnStack(a, m => a.vmptrld(m)));

    /// <summary><c>int tandem_vmxoff()</c></summary>
    public static void Vmxoff(ObjectBuilder o) => Function(o, "tandem_vmxoff", a =>
    {
        a.vmxoff();
        ReturnVmStatus(a);
    });

    /// <summary><c>int tandem_vmread(ulong field, ulong* value)</c></summary>
    public static void Vmread(ObjectBuilder o) => Function(o, "tandem_vmread", a =>
    {
        a.vmread(__qword_ptr[rsi], rdi);           // VMREAD r/m64, r64: [value] = VMCS[field]
        ReturnVmStatus(a);
    });

    /// <summary>
    /// <c>int tandem_vmx_skip_instruction()</c>: guest RIP += VM-exit instruction length, the step
    /// every instruction-intercepting exit ends with, done in one call (three VMX instructions)
    /// because it is on the hot path of CPUID, I/O, MSR and HLT exits.
    /// </summary>
    public static void SkipInstruction(ObjectBuilder o) => Function(o, "tandem_vmx_skip_instruction", a =>
    {
        var fail = a.CreateLabel();
        a.mov(ecx, 0x681E);                        // GUEST_RIP
        a.vmread(rax, rcx);
        a.jbe(fail);                               // CF or ZF: VMfail
        a.mov(edx, 0x440C);                        // VM-exit instruction length
        a.vmread(rdx, rdx);
        a.jbe(fail);
        a.add(rax, rdx);
        a.vmwrite(rcx, rax);
        a.Label(ref fail);
        ReturnVmStatus(a);                         // flags from the last VMX instruction (add does not reach here on failure)
    });

    /// <summary><c>int tandem_vmwrite(ulong field, ulong value)</c></summary>
    public static void Vmwrite(ObjectBuilder o) => Function(o, "tandem_vmwrite", a =>
    {
        a.vmwrite(rdi, rsi);                       // VMWRITE r64, r/m64: VMCS[field = rdi] = rsi
        ReturnVmStatus(a);
    });

    /// <summary><c>int tandem_invept(ulong type, void* descriptor16)</c></summary>
    public static void Invept(ObjectBuilder o) => Function(o, "tandem_invept", a =>
    {
        a.invept(rdi, __xmmword_ptr[rsi]);         // INVEPT r64 (type), m128 (descriptor)
        ReturnVmStatus(a);
    });

    /// <summary><c>int tandem_invvpid(ulong type, void* descriptor16)</c></summary>
    public static void Invvpid(ObjectBuilder o) => Function(o, "tandem_invvpid", a =>
    {
        a.invvpid(rdi, __xmmword_ptr[rsi]);        // INVVPID r64 (type), m128 (descriptor)
        ReturnVmStatus(a);
    });
}
