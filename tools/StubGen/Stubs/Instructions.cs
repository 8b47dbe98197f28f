using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// One-instruction wrappers, System V AMD64 ABI: args in rdi, rsi, rdx, rcx; result in rax; rbx, rbp,
/// r12-r15 preserved. Instruction semantics: Intel SDM Vol. 2 under each mnemonic.
/// </summary>
internal static class Instructions
{
    /// <summary>Emits one function into .text: symbol(s) at its start, then <paramref name="body"/>.</summary>
    internal static void Function(ObjectBuilder o, string name, Action<Assembler> body)
    {
        var c = new CodeBlock(64);
        c.Symbol(name);
        body(c.A);
        o.Emit(o.Text, c);
    }

    /// <summary>Defines <paramref name="alias"/> with the same address and size as <paramref name="name"/>.</summary>
    private static void Alias(ObjectBuilder o, string name, string alias) => o.DefineAlias(name, alias);

    // ---- Port I/O (SDM Vol. 1 19.5 "I/O Instructions"). The port goes in dx. ----

    /// <summary><c>byte tandem_inb(ushort port)</c></summary>
    public static void Inb(ObjectBuilder o) => Function(o, "tandem_inb", a =>
    {
        a.mov(edx, edi);
        a.@in(al, dx);
        a.movzx(eax, al);                          // return a clean zero-extended value
        a.ret();
    });

    /// <summary><c>ushort tandem_inw(ushort port)</c></summary>
    public static void Inw(ObjectBuilder o) => Function(o, "tandem_inw", a =>
    {
        a.mov(edx, edi);
        a.@in(ax, dx);
        a.movzx(eax, ax);
        a.ret();
    });

    /// <summary><c>uint tandem_inl(ushort port)</c></summary>
    public static void Inl(ObjectBuilder o) => Function(o, "tandem_inl", a =>
    {
        a.mov(edx, edi);
        a.@in(eax, dx);
        a.ret();
    });

    /// <summary><c>void tandem_outb(ushort port, byte value)</c></summary>
    public static void Outb(ObjectBuilder o) => Function(o, "tandem_outb", a =>
    {
        a.mov(edx, edi);
        a.mov(eax, esi);
        a.@out(dx, al);
        a.ret();
    });

    /// <summary><c>void tandem_outw(ushort port, ushort value)</c></summary>
    public static void Outw(ObjectBuilder o) => Function(o, "tandem_outw", a =>
    {
        a.mov(edx, edi);
        a.mov(eax, esi);
        a.@out(dx, ax);
        a.ret();
    });

    /// <summary><c>void tandem_outl(ushort port, uint value)</c></summary>
    public static void Outl(ObjectBuilder o) => Function(o, "tandem_outl", a =>
    {
        a.mov(edx, edi);
        a.mov(eax, esi);
        a.@out(dx, eax);
        a.ret();
    });

    // ---- MSRs, CPUID, XCRs. RDMSR/WRMSR/XGETBV/XSETBV take the index in ecx and the value in edx:eax. ----

    /// <summary><c>ulong tandem_rdmsr(uint msr)</c></summary>
    public static void Rdmsr(ObjectBuilder o) => Function(o, "tandem_rdmsr", a =>
    {
        a.mov(ecx, edi);
        a.rdmsr();                                 // edx:eax = MSR[ecx] (upper halves of rax/rdx cleared)
        a.shl(rdx, 32);
        a.or(rax, rdx);
        a.ret();
    });

    /// <summary><c>void tandem_wrmsr(uint msr, ulong value)</c></summary>
    public static void Wrmsr(ObjectBuilder o) => Function(o, "tandem_wrmsr", a =>
    {
        a.mov(ecx, edi);
        a.mov(eax, esi);                           // low half
        a.mov(rdx, rsi);
        a.shr(rdx, 32);                            // high half
        a.wrmsr();
        a.ret();
    });

    /// <summary><c>void tandem_cpuid(uint leaf, uint subleaf, uint* out4)</c>: out4[0..3] = eax, ebx, ecx, edx.</summary>
    public static void Cpuid(ObjectBuilder o) => Function(o, "tandem_cpuid", a =>
    {
        a.push(rbx);                               // CPUID writes ebx, which is callee-saved
        a.mov(r8, rdx);                            // out4 (cpuid overwrites rdx)
        a.mov(eax, edi);
        a.mov(ecx, esi);
        a.cpuid();
        a.mov(__dword_ptr[r8], eax);
        a.mov(__dword_ptr[r8 + 4], ebx);
        a.mov(__dword_ptr[r8 + 8], ecx);
        a.mov(__dword_ptr[r8 + 12], edx);
        a.pop(rbx);
        a.ret();
    });

    /// <summary><c>ulong tandem_xgetbv(uint index)</c></summary>
    public static void Xgetbv(ObjectBuilder o) => Function(o, "tandem_xgetbv", a =>
    {
        a.mov(ecx, edi);
        a.xgetbv();
        a.shl(rdx, 32);
        a.or(rax, rdx);
        a.ret();
    });

    /// <summary><c>void tandem_xsetbv(uint index, ulong value)</c></summary>
    public static void Xsetbv(ObjectBuilder o) => Function(o, "tandem_xsetbv", a =>
    {
        a.mov(ecx, edi);
        a.mov(eax, esi);
        a.mov(rdx, rsi);
        a.shr(rdx, 32);
        a.xsetbv();
        a.ret();
    });

    // ---- Control registers. ----

    /// <summary><c>ulong tandem_read_cr0()</c></summary>
    public static void ReadCr0(ObjectBuilder o) => Function(o, "tandem_read_cr0", a => { a.mov(rax, cr0); a.ret(); });

    /// <summary><c>ulong tandem_read_cr2()</c> (the faulting linear address of the last #PF)</summary>
    public static void ReadCr2(ObjectBuilder o) => Function(o, "tandem_read_cr2", a => { a.mov(rax, cr2); a.ret(); });

    /// <summary><c>ulong tandem_read_cr3()</c></summary>
    public static void ReadCr3(ObjectBuilder o) => Function(o, "tandem_read_cr3", a => { a.mov(rax, cr3); a.ret(); });

    /// <summary><c>ulong tandem_read_cr4()</c></summary>
    public static void ReadCr4(ObjectBuilder o) => Function(o, "tandem_read_cr4", a => { a.mov(rax, cr4); a.ret(); });

    /// <summary><c>void tandem_write_cr0(ulong value)</c></summary>
    public static void WriteCr0(ObjectBuilder o) => Function(o, "tandem_write_cr0", a => { a.mov(cr0, rdi); a.ret(); });

    /// <summary><c>void tandem_write_cr3(ulong value)</c> (flushes non-global TLB entries)</summary>
    public static void WriteCr3(ObjectBuilder o) => Function(o, "tandem_write_cr3", a => { a.mov(cr3, rdi); a.ret(); });

    /// <summary><c>void tandem_write_cr4(ulong value)</c></summary>
    public static void WriteCr4(ObjectBuilder o) => Function(o, "tandem_write_cr4", a => { a.mov(cr4, rdi); a.ret(); });

    // ---- TLB, descriptor tables, segments. ----

    /// <summary><c>void tandem_invlpg(ulong addr)</c></summary>
    public static void Invlpg(ObjectBuilder o) => Function(o, "tandem_invlpg", a => { a.invlpg(__[rdi]); a.ret(); });

    /// <summary><c>void tandem_lgdt(void* descriptorPointer)</c>: 10-byte pseudo-descriptor (u16 limit, u64 base).</summary>
    public static void Lgdt(ObjectBuilder o) => Function(o, "tandem_lgdt", a => { a.lgdt(__[rdi]); a.ret(); });

    /// <summary><c>void tandem_lidt(void* descriptorPointer)</c>: 10-byte pseudo-descriptor (u16 limit, u64 base).</summary>
    public static void Lidt(ObjectBuilder o) => Function(o, "tandem_lidt", a => { a.lidt(__[rdi]); a.ret(); });

    /// <summary><c>void tandem_sgdt(void* descriptorPointer)</c>: stores GDTR (u16 limit, u64 base).</summary>
    public static void Sgdt(ObjectBuilder o) => Function(o, "tandem_sgdt", a => { a.sgdt(__[rdi]); a.ret(); });

    /// <summary><c>void tandem_sidt(void* descriptorPointer)</c>: stores IDTR (u16 limit, u64 base).</summary>
    public static void Sidt(ObjectBuilder o) => Function(o, "tandem_sidt", a => { a.sidt(__[rdi]); a.ret(); });

    /// <summary><c>void tandem_ltr(ushort selector)</c></summary>
    public static void Ltr(ObjectBuilder o) => Function(o, "tandem_ltr", a => { a.ltr(di); a.ret(); });

    /// <summary>
    /// <c>void tandem_reload_segments(ushort codeSelector, ushort dataSelector)</c>: ds, es, ss, fs, gs =
    /// data; cs = code via a far return. Loading fs/gs zeroes their bases: write IA32_FS_BASE /
    /// IA32_GS_BASE (and KERNEL_GS_BASE) after this, not before.
    /// </summary>
    public static void ReloadSegments(ObjectBuilder o) => Function(o, "tandem_reload_segments", a =>
    {
        a.mov(ds, si);
        a.mov(es, si);
        a.mov(ss, si);
        a.mov(fs, si);
        a.mov(gs, si);
        a.movzx(edi, di);                          // clean selector for the far-return frame
        a.pop(rax);                                // our return address
        a.push(rdi);                               // far-return frame: [rsp] = rip, [rsp+8] = cs
        a.push(rax);
        a.AddInstruction(Instruction.Create(Code.Retfq)); // REX.W RETF: pops 64-bit rip, then cs
    });

    // ---- Interrupt flag, halting, small CPU state reads. ----

    /// <summary><c>void tandem_cli()</c></summary>
    public static void Cli(ObjectBuilder o) => Function(o, "tandem_cli", a => { a.cli(); a.ret(); });

    /// <summary><c>void tandem_sti()</c></summary>
    public static void Sti(ObjectBuilder o) => Function(o, "tandem_sti", a => { a.sti(); a.ret(); });

    /// <summary><c>void tandem_hlt()</c></summary>
    public static void Hlt(ObjectBuilder o) => Function(o, "tandem_hlt", a => { a.hlt(); a.ret(); });

    /// <summary>
    /// <c>void tandem_sti_hlt()</c>: STI delays interrupt recognition until after the next instruction
    /// (SDM Vol. 2B, STI), so no interrupt can slip in between and leave hlt waiting forever.
    /// </summary>
    public static void StiHlt(ObjectBuilder o) => Function(o, "tandem_sti_hlt", a => { a.sti(); a.hlt(); a.ret(); });

    /// <summary><c>void tandem_pause()</c> (spin-wait hint)</summary>
    public static void Pause(ObjectBuilder o) => Function(o, "tandem_pause", a => { a.pause(); a.ret(); });

    /// <summary><c>ulong tandem_rdtsc()</c></summary>
    public static void Rdtsc(ObjectBuilder o) => Function(o, "tandem_rdtsc", a =>
    {
        a.rdtsc();                                 // edx:eax = TSC
        a.shl(rdx, 32);
        a.or(rax, rdx);
        a.ret();
    });

    /// <summary><c>ulong tandem_read_rflags()</c></summary>
    public static void ReadRflags(ObjectBuilder o) => Function(o, "tandem_read_rflags", a => { a.pushfq(); a.pop(rax); a.ret(); });

    /// <summary><c>ulong tandem_read_rbp()</c>: the caller's rbp (this function builds no frame).</summary>
    public static void ReadRbp(ObjectBuilder o) => Function(o, "tandem_read_rbp", a => { a.mov(rax, rbp); a.ret(); });

    /// <summary><c>ulong tandem_read_rsp()</c>: the caller's rsp as it is after this call returns.</summary>
    public static void ReadRsp(ObjectBuilder o) => Function(o, "tandem_read_rsp", a =>
    {
        a.lea(rax, __[rsp + 8]);                   // skip our return address
        a.ret();
    });

    /// <summary><c>void tandem_int3()</c></summary>
    public static void Int3(ObjectBuilder o) => Function(o, "tandem_int3", a => { a.int3(); a.ret(); });

    /// <summary><c>void tandem_ud2()</c></summary>
    public static void Ud2(ObjectBuilder o) => Function(o, "tandem_ud2", a => { a.ud2(); a.ret(); });

    /// <summary><c>void tandem_wbinvd()</c></summary>
    public static void Wbinvd(ObjectBuilder o) => Function(o, "tandem_wbinvd", a => { a.wbinvd(); a.ret(); });

    /// <summary><c>void tandem_magic_break()</c>: Bochs' magic breakpoint (xchg bx, bx with magic_break: enabled=1).</summary>
    public static void MagicBreak(ObjectBuilder o) => Function(o, "tandem_magic_break", a =>
    {
        a.db(0x66, 0x87, 0xDB);                    // xchg bx, bx (exactly this encoding is what Bochs matches)
        a.ret();
    });

    /// <summary><c>void tandem_halt_forever()</c> (does not return)</summary>
    public static void HaltForever(ObjectBuilder o) => Function(o, "tandem_halt_forever", Boot.HaltForever);

    // ---- Memory. DF is clear on entry (SysV), so the string instructions go upwards. ----

    /// <summary><c>void* tandem_memset(void* dst, byte value, ulong n)</c>, also <c>memset</c>; returns dst like C.</summary>
    public static void Memset(ObjectBuilder o)
    {
        Function(o, "tandem_memset", a =>
        {
            a.mov(r9, rdi);                        // keep dst for the return value
            a.mov(eax, esi);                       // al = value
            a.mov(rcx, rdx);                       // count
            a.rep.stosb();
            a.mov(rax, r9);
            a.ret();
        });
        Alias(o, "tandem_memset", "memset");
    }

    /// <summary><c>void* tandem_memcpy(void* dst, void* src, ulong n)</c>, also <c>memcpy</c>; returns dst like C.</summary>
    public static void Memcpy(ObjectBuilder o)
    {
        Function(o, "tandem_memcpy", a =>
        {
            a.mov(rax, rdi);                       // return value: dst
            a.mov(rcx, rdx);                       // count
            a.rep.movsb();                         // rdi = dst, rsi = src already
            a.ret();
        });
        Alias(o, "tandem_memcpy", "memcpy");
    }
}
