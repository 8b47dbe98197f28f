using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// VM entry and exit: <c>uint tandem_vm_run(GuestRegs* regs)</c>, one call per VM exit on the path of
/// every exit, so every instruction here counts (kernel/Bench: <c>host_per_exit</c>).
/// </summary>
/// <remarks>
/// <para>The vCPU's register page (kvm/Vmx/Vcpu.cs, GuestRegisters.cs), from <c>regs</c>: 16 u64s
/// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, cr2; then two words of
/// the stub's own, HostRsp (the HOST_RSP value last written to this vCPU's VMCS, together with
/// HOST_RIP; 0: none yet) and Launched (nonzero once VMLAUNCH succeeded; the host clears it after a
/// VMCLEAR); and at <c>regs + 1024</c> the guest's 512-byte FXSAVE area (16-byte aligned). Guest rsp,
/// rip and rflags live in the VMCS guest-state area and are not touched here.</para>
/// <para>Returns the VM-exit reason field (0x4402: basic reason in bits 15:0, bit 31 = VM-entry
/// failure) after a VM exit; <see cref="FailInvalid"/> if VMLAUNCH/VMRESUME (or the VMWRITE of
/// HOST_RSP/HOST_RIP) failed with VMfailInvalid, <see cref="FailValid"/> for VMfailValid (the reason
/// is in the VM-instruction error field, 0x4400). Neither can be an exit reason (bits 30:16 of one are
/// reserved or rare flags, never all ones). On failure the guest registers in *regs are unchanged.</para>
/// <para>Rules for using this: call with interrupts disabled (the exit path runs with RFLAGS = 0x2
/// anyway, SDM Vol. 3C "Loading Host RIP, RSP, and RFLAGS"); the current VMCS's other host-state fields
/// (CR0/3/4, segment selectors, FS/GS/TR/GDTR/IDTR bases, EFER if loaded) must already describe this
/// CPU. The VM exit sets the GDTR and IDTR limits to 0xFFFF (SDM Vol. 3C "Loading Host Segment and
/// Descriptor-Table Registers"): reload them if the kernel relies on the limits. HOST_RSP and HOST_RIP
/// are written only when HOST_RSP differs from HostRsp (the caller's stack depth is the same from one
/// call of its loop to the next; VMCLEAR and VMPTRLD keep the fields, so a vCPU that moved to another
/// CPU keeps them too, as KVM's cached host RSP does).</para>
/// <para>x87/SSE: the CPU does not switch them on VM entry or exit. FXRSTOR64 loads the guest's state
/// before the entry and FXSAVE64 keeps it right after the exit; then the host's MXCSR is loaded (the
/// kernel runs with the reset value 0x1F80 and never changes it: C# cannot, and no stub but this one
/// loads another; UEFI hands over 0x1F80 too). The guest's x87 state (control word, stack, a pending
/// unmasked exception) stays in the CPU until the next FXRSTOR: the kernel executes no x87 or MMX
/// instruction (the compiled C# uses SSE only; an x87 or MMX instruction would take the guest's
/// pending #MF), and FXSAVE/FXRSTOR in the interrupt stubs do not raise it. AVX upper halves (XSAVE
/// components above SSE) are not handled.</para>
/// </remarks>
internal static class VmRun
{
    private const int HostRspField = 0x6C14; // VMCS encoding, SDM Vol. 3C appendix B.4.4 "Natural-Width Host-State Fields"
    private const int HostRipField = 0x6C16;
    private const int ExitReasonField = 0x4402;

    /// <summary>The return values for a failed VMLAUNCH/VMRESUME (arch/x86/Native.cs has the same).</summary>
    public const uint FailInvalid = 0xFFFF_FFFF, FailValid = 0xFFFF_FFFE;

    // Register page offsets.
    private const int RaxOff = 0, RbxOff = 8, RcxOff = 16, RdxOff = 24, RsiOff = 32, RdiOff = 40, RbpOff = 48,
        R8Off = 56, R9Off = 64, R10Off = 72, R11Off = 80, R12Off = 88, R13Off = 96, R14Off = 104, R15Off = 112,
        Cr2Off = 120, HostRspOff = 128, LaunchedOff = 136, FxOff = 1024;

    // Our stack while the guest runs (this rsp is HOST_RSP): [rsp] GuestRegs*, then r15, r14, r13,
    // r12, rbx, rbp, the return address.

    public static void Emit(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        var exitLabel = a.CreateLabel("vm_exit");
        var writeHost = a.CreateLabel("write_host");
        var hostWritten = a.CreateLabel("host_written");
        var firstLaunch = a.CreateLabel("first_launch");
        var loadGuest = a.CreateLabel("load_guest");
        var launch = a.CreateLabel("launch");
        var launchFailed = a.CreateLabel("launch_failed");
        var entryFailed = a.CreateLabel("entry_failed");
        var setupFailed = a.CreateLabel("setup_failed");
        var entryFailedFx = a.CreateLabel("entry_failed_fx");
        var saveFx = a.CreateLabel("save_fx");
        var tail = a.CreateLabel("tail");
        var hostMxcsr = a.CreateLabel("host_mxcsr");

        c.Symbol("tandem_vm_run");

        // ---- Save host state the CPU will not restore for us. ----
        a.push(rbp);                               // SysV callee-saved registers: the VM exit loads only
        a.push(rbx);                               // RSP and RIP from the VMCS, every GPR comes back
        a.push(r12);                               // holding the guest's value
        a.push(r13);
        a.push(r14);
        a.push(r15);
        a.push(rdi);                               // [rsp] GuestRegs*, fetched again at the exit label

        // ---- Tell the VMCS where a VM exit lands (this exact stack and the exit label), if it changed. ----
        a.cmp(rsp, __qword_ptr[rdi + HostRspOff]);
        a.jne(writeHost);                          // out of line below
        a.Label(ref hostWritten);

        // ---- Load guest state that the VMCS does not hold. ----
        a.fxrstor64(__[rdi + FxOff]);              // guest x87/SSE state
        a.mov(rax, __qword_ptr[rdi + Cr2Off]);
        a.mov(cr2, rax);                           // CR2 is not part of the guest-state area (SDM Vol. 3C 25.4.1)

        a.cmp(__byte_ptr[rdi + LaunchedOff], 0);   // ZF = 1: not launched yet. ZF decides vmlaunch vs
        a.je(firstLaunch);                         // vmresume below; MOV and JMP do not touch flags
        a.Label(ref loadGuest);
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
        a.je(launch);                              // ZF from the Launched test
        a.vmresume();
        // Falls through only if the entry failed: rsp is still ours, GPRs hold guest values, flags hold the status.
        a.Label(ref entryFailed);
        a.mov(ecx, unchecked((int)FailInvalid));   // mov keeps flags
        a.jc(entryFailedFx);                       // CF = 1: VMfailInvalid
        a.mov(ecx, unchecked((int)FailValid));     // ZF = 1: VMfailValid
        a.Label(ref entryFailedFx);
        a.mov(rdi, __qword_ptr[rsp]);
        a.jmp(saveFx);                             // the guest FPU state saved back unchanged, the host's MXCSR loaded

        // ---- VM exit lands here: rsp = HOST_RSP, RFLAGS = 0x2, every GPR except rsp is the guest's. ----
        c.Place(exitLabel, "tandem_vm_run.exit", Elf.SymbolKind.Label, global: false);
        a.push(rdi);                               // free one register; GuestRegs* is now at [rsp + 8]
        a.mov(rdi, __qword_ptr[rsp + 8]);
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
        a.pop(__qword_ptr[rdi + RdiOff]);          // guest rdi
        a.mov(rax, cr2);                           // guest CR2 (a guest #PF does not exit unless configured to)
        a.mov(__qword_ptr[rdi + Cr2Off], rax);
        a.mov(ecx, ExitReasonField);
        a.vmread(rcx, rcx);                        // the return value: cannot fail right after a VM exit
        a.Label(ref saveFx);
        a.fxsave64(__[rdi + FxOff]);               // guest x87/SSE state, before any host code touches it
        a.ldmxcsr(__dword_ptr[hostMxcsr]);         // the host's MXCSR (see the remarks)

        // ---- Common return: rsp points at the GuestRegs* slot, ecx = the return value. ----
        a.Label(ref tail);
        a.pop(rdi);                                // drop GuestRegs*
        a.pop(r15);
        a.pop(r14);
        a.pop(r13);
        a.pop(r12);
        a.pop(rbx);
        a.pop(rbp);
        a.mov(eax, ecx);
        a.ret();

        // ---- Out of line: the first entry of this stack depth, the first launch, failures. ----
        a.Label(ref writeHost);
        a.mov(eax, HostRspField);
        a.vmwrite(rax, rsp);                       // HOST_RSP = rsp: the exit label finds the slot above
        a.jbe(setupFailed);                        // CF or ZF: no current VMCS or bad field
        a.lea(rdx, __[exitLabel]);                 // RIP-relative: no relocation needed
        a.mov(eax, HostRipField);
        a.vmwrite(rax, rdx);                       // HOST_RIP = vm_exit
        a.jbe(setupFailed);
        a.mov(__qword_ptr[rdi + HostRspOff], rsp);
        a.jmp(hostWritten);

        a.Label(ref firstLaunch);
        a.mov(__byte_ptr[rdi + LaunchedOff], 1);   // cleared again below if VMLAUNCH fails; keeps ZF = 1
        a.jmp(loadGuest);
        a.Label(ref launch);
        a.vmlaunch();                              // VMCS launch state "clear" → VMLAUNCH
        // Only reached if the entry failed (flags say how).
        a.Label(ref launchFailed);
        a.mov(rdi, __qword_ptr[rsp]);              // mov keeps flags
        a.mov(__byte_ptr[rdi + LaunchedOff], 0);
        a.jmp(entryFailed);

        a.Label(ref setupFailed);                  // a VMWRITE failed before any guest state was loaded
        a.mov(ecx, unchecked((int)FailInvalid));
        a.jc(tail);
        a.mov(ecx, unchecked((int)FailValid));
        a.jmp(tail);

        a.Label(ref hostMxcsr);
        a.dd(0x1F80u);                             // MXCSR reset value: all exceptions masked, round to nearest
        o.Emit(o.Text, c);
    }
}
