using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// VM entry and exit: <c>int tandem_vm_run(GuestRegs* regs, int launched)</c> and
/// <c>int tandem_vm_run_fx(GuestRegs* regs, int launched, void* guestFxArea)</c>.
/// </summary>
/// <remarks>
/// <para>GuestRegs is 16 u64s: rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15,
/// cr2. Guest rsp, rip and rflags live in the VMCS guest-state area and are not touched here.</para>
/// <para>Returns 0 after a VM exit (read the exit reason from the VMCS), 1 if VMLAUNCH/VMRESUME (or
/// the VMWRITE of HOST_RSP/HOST_RIP) failed with VMfailInvalid, 2 for VMfailValid (the reason is in
/// the VM-instruction error field, 0x4400). On failure the guest registers in *regs are unchanged.</para>
/// <para>Rules for using this: call with interrupts disabled (the exit path runs with RFLAGS = 0x2
/// anyway, SDM Vol. 3C "Loading Host RIP, RSP, and RFLAGS"); the current VMCS's other host-state fields
/// (CR0/3/4, segment selectors, FS/GS/TR/GDTR/IDTR bases, EFER if loaded) must already describe this
/// CPU. The VM exit sets the GDTR and IDTR limits to 0xFFFF (SDM Vol. 3C "Loading Host Segment and
/// Descriptor-Table Registers"): reload them if the kernel relies on the limits. HOST_RSP and HOST_RIP
/// are rewritten on every call because the caller's stack depth may differ between calls.</para>
/// <para>x87/SSE: the CPU does not switch them on VM entry or exit. <c>tandem_vm_run</c> leaves them
/// alone (the guest sees whatever the host left in xmm0-15, and the host's C# code may clobber the
/// guest's). <c>tandem_vm_run_fx</c> keeps the guest's FPU/SSE state in a 512-byte, 16-byte-aligned
/// FXSAVE area: FXRSTOR64 before entry, FXSAVE64 right after exit, then FNINIT and the caller's
/// MXCSR and x87 control word are restored (both are callee-saved in the SysV ABI). AVX upper halves
/// (XSAVE components above SSE) are not handled.</para>
/// </remarks>
internal static class VmRun
{
    private const int HostRspField = 0x6C14; // VMCS encoding, SDM Vol. 3C appendix B.4.4 "Natural-Width Host-State Fields"
    private const int HostRipField = 0x6C16;

    // GuestRegs offsets.
    private const int RaxOff = 0, RbxOff = 8, RcxOff = 16, RdxOff = 24, RsiOff = 32, RdiOff = 40, RbpOff = 48,
        R8Off = 56, R9Off = 64, R10Off = 72, R11Off = 80, R12Off = 88, R13Off = 96, R14Off = 104, R15Off = 112,
        Cr2Off = 120;

    // Our stack while the guest runs (this rsp is HOST_RSP): [rsp] GuestRegs*, [rsp+8] host MXCSR (u32),
    // [rsp+12] host x87 FCW (u16), [rsp+16] guest FXSAVE area or 0, then r15, r14, r13, r12, rbx, rbp,
    // return address.
    private const int RegsSlot = 0, MxcsrSlot = 8, FcwSlot = 12, FxSlot = 16, SlotsSize = 24;

    public static void Emit(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        var exitLabel = a.CreateLabel("vm_exit");
        var launchFailed = a.CreateLabel("launch_failed");
        var setupFailed = a.CreateLabel("setup_failed");
        var tail = a.CreateLabel("tail");
        var tailNoFx = a.CreateLabel("tail_nofx");

        c.Symbol("tandem_vm_run");
        a.xor(edx, edx);                           // no guest FXSAVE area; fall into tandem_vm_run_fx
        c.Symbol("tandem_vm_run_fx");

        // ---- Save host state the CPU will not restore for us. ----
        a.push(rbp);                               // SysV callee-saved registers: the VM exit loads only
        a.push(rbx);                               // RSP and RIP from the VMCS, every GPR comes back
        a.push(r12);                               // holding the guest's value
        a.push(r13);
        a.push(r14);
        a.push(r15);
        a.push(rdx);                               // [FxSlot] guest FXSAVE area (or 0)
        a.sub(rsp, 8);                             // [MxcsrSlot], [FcwSlot]
        a.stmxcsr(__dword_ptr[rsp]);               // host MXCSR (restored after the guest's FXSAVE)
        a.fnstcw(__word_ptr[rsp + 4]);             // host x87 control word
        a.push(rdi);                               // [RegsSlot] GuestRegs*, fetched again at the exit label

        // ---- Tell the VMCS where a VM exit lands: this exact stack and the exit label. ----
        a.mov(eax, HostRspField);
        a.vmwrite(rax, rsp);                       // HOST_RSP = rsp: the exit label finds the slots above
        a.jbe(setupFailed);                        // CF or ZF: no current VMCS or bad field
        a.lea(rdx, __[exitLabel]);                 // RIP-relative: no relocation needed
        a.mov(eax, HostRipField);
        a.vmwrite(rax, rdx);                       // HOST_RIP = vm_exit
        a.jbe(setupFailed);

        // ---- Load guest state that the VMCS does not hold. ----
        var noFxLoad = a.CreateLabel();
        a.mov(rax, __qword_ptr[rsp + FxSlot]);
        a.test(rax, rax);
        a.jz(noFxLoad);
        a.fxrstor64(__[rax]);                      // guest x87/SSE state
        a.Label(ref noFxLoad);
        a.mov(rax, __qword_ptr[rdi + Cr2Off]);
        a.mov(cr2, rax);                           // CR2 is not part of the guest-state area (SDM Vol. 3C 25.4.1)

        a.test(esi, esi);                          // launched? ZF decides vmlaunch vs vmresume below;
                                                   // the MOVs in between do not touch flags
        a.mov(rax, __qword_ptr[rdi + RaxOff]);
        a.mov(rbx, __qword_ptr[rdi + RbxOff]);
        a.mov(rcx, __qword_ptr[rdi + RcxOff]);
        a.mov(rdx, __qword_ptr[rdi + RdxOff]);
        a.mov(rsi, __qword_ptr[rdi + RsiOff]);
        a.mov(rbp, __qword_ptr[rdi + RbpOff]);
        a.mov(r8, __qword_ptr[rdi + R8Off]);
        a.mov(r9, __qword_ptr[rdi + R9Off]);
        a.mov(r10, __qword_ptr[rdi + R10Off]);
        a.mov(r11, __qword_ptr[rdi + R11Off]);
        a.mov(r12, __qword_ptr[rdi + R12Off]);
        a.mov(r13, __qword_ptr[rdi + R13Off]);
        a.mov(r14, __qword_ptr[rdi + R14Off]);
        a.mov(r15, __qword_ptr[rdi + R15Off]);
        a.mov(rdi, __qword_ptr[rdi + RdiOff]);     // last: rdi held the GuestRegs pointer

        var resume = a.CreateLabel();
        a.jnz(resume);                             // launched != 0 → VMRESUME
        a.vmlaunch();                              // VMCS launch state "clear" → VMLAUNCH
        a.jmp(launchFailed);                       // only reached if the entry failed (flags say how)
        a.Label(ref resume);
        a.vmresume();
        // Falls through only if the entry failed.

        // ---- VM entry failed: rsp is still ours, GPRs hold guest values, flags hold the status. ----
        a.Label(ref launchFailed);
        a.mov(ecx, 1);                             // mov keeps flags
        a.jc(tail);                                // CF = 1: VMfailInvalid
        a.mov(ecx, 2);                             // ZF = 1: VMfailValid
        a.jmp(tail);                               // (tail saves the loaded guest FPU state back: harmless)

        a.Label(ref setupFailed);                  // a VMWRITE failed before any guest state was loaded
        a.mov(ecx, 1);
        a.jc(tailNoFx);
        a.mov(ecx, 2);
        a.jmp(tailNoFx);

        // ---- VM exit lands here: rsp = HOST_RSP, RFLAGS = 0x2, every GPR except rsp is the guest's. ----
        c.Place(exitLabel, "tandem_vm_run.exit", Elf.SymbolKind.Label, global: false);
        a.push(rdi);                               // free one register; GuestRegs* is now at [rsp + 8]
        a.mov(rdi, __qword_ptr[rsp + 8 + RegsSlot]);
        a.mov(__qword_ptr[rdi + RaxOff], rax);
        a.mov(__qword_ptr[rdi + RbxOff], rbx);
        a.mov(__qword_ptr[rdi + RcxOff], rcx);
        a.mov(__qword_ptr[rdi + RdxOff], rdx);
        a.mov(__qword_ptr[rdi + RsiOff], rsi);
        a.mov(__qword_ptr[rdi + RbpOff], rbp);
        a.mov(__qword_ptr[rdi + R8Off], r8);
        a.mov(__qword_ptr[rdi + R9Off], r9);
        a.mov(__qword_ptr[rdi + R10Off], r10);
        a.mov(__qword_ptr[rdi + R11Off], r11);
        a.mov(__qword_ptr[rdi + R12Off], r12);
        a.mov(__qword_ptr[rdi + R13Off], r13);
        a.mov(__qword_ptr[rdi + R14Off], r14);
        a.mov(__qword_ptr[rdi + R15Off], r15);
        a.pop(rax);                                // guest rdi
        a.mov(__qword_ptr[rdi + RdiOff], rax);
        a.mov(rax, cr2);                           // guest CR2 (a guest #PF does not exit unless configured to)
        a.mov(__qword_ptr[rdi + Cr2Off], rax);
        a.xor(ecx, ecx);                           // status 0: VM exit

        // ---- Common return: rsp points at the slots; ecx = status. ----
        a.Label(ref tail);
        a.mov(rax, __qword_ptr[rsp + FxSlot]);
        a.test(rax, rax);
        a.jz(tailNoFx);
        a.fxsave64(__[rax]);                       // guest x87/SSE state, before any host code touches it
        a.fninit();                                // empty x87 stack, as the ABI expects at a call boundary
        a.fldcw(__word_ptr[rsp + FcwSlot]);        // host x87 control word
        a.ldmxcsr(__dword_ptr[rsp + MxcsrSlot]);   // host MXCSR
        a.Label(ref tailNoFx);
        a.add(rsp, SlotsSize);                     // drop GuestRegs*, MXCSR/FCW, FXSAVE area pointer
        a.pop(r15);
        a.pop(r14);
        a.pop(r13);
        a.pop(r12);
        a.pop(rbx);
        a.pop(rbp);
        a.mov(eax, ecx);
        a.ret();
        o.Emit(o.Text, c);
    }
}
