using Iced.Intel;
using Tandem.StubGen.Elf;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// The application-processor trampoline: a position-dependent blob, assembled for physical address
/// <see cref="Base"/>, that the kernel copies there before INIT-SIPI-SIPI with vector 0x08 (SDM Vol. 3A
/// 9.4.4.1 "Typical BSP Initialization Sequence": an AP starts in real mode at CS:IP = VV00:0000).
/// </summary>
/// <remarks>
/// Rules for using this:
/// <list type="bullet">
/// <item>Copy <c>tandem_ap_trampoline .. tandem_ap_trampoline_end</c> (at most 0xF00 bytes) to 0x8000.</item>
/// <item>Before each SIPI fill the parameter block at 0x8F00: +0 u64 CR3 (must be below 4 GiB: it is
/// loaded in 32-bit mode), +8 u64 stack top (16-byte aligned), +16 u64 entry point
/// <c>void entry(ulong arg)</c> (SysV), +24 u64 argument, +32 u32 started flag (write 0).</item>
/// <item>Wait for the started flag to become 1: the AP has then read every parameter and the block may be
/// reused for the next AP. The AP's flag store comes after all its parameter loads in program order,
/// and x86 never reorders a store before earlier loads (SDM Vol. 3A 10.2.3.2); pairs with the BSP's
/// poll of the flag.</item>
/// <item>The AP runs on the trampoline's GDT (at 0x8000, selectors 0x08 code64 / 0x10 data, the same as
/// the boot GDT) until the entry point loads the kernel's own GDT; keep the page at 0x8000 intact until
/// then. EFER.NXE is set when CPUID reports NX, as on the BSP. SSE is enabled.</item>
/// </list>
/// </remarks>
internal static class ApTrampoline
{
    public const ulong Base = 0x8000;
    public const ulong Params = 0x8F00;
    public const ulong MaxSize = Params - Base;

    // Parameter block offsets.
    private const ulong ParamCr3 = Params + 0, ParamStack = Params + 8, ParamEntry = Params + 16,
        ParamArg = Params + 24, ParamStarted = Params + 32;

    // Blob layout: fixed offsets keep the cross-mode jumps simple; each piece is checked to fit.
    private const ulong Code16 = Base + 0x000, Code32 = Base + 0x080, Code64 = Base + 0x100,
        Gdt = Base + 0x200, Gdtr = Gdt + 4 * 8, End = Gdtr + 8;

    // The trampoline GDT: null, 0x08 64-bit code, 0x10 data (as the boot GDT), 0x18 32-bit code.
    private const ushort Code32Selector = 0x18;

    /// <summary>Emits the blob into .rodata with symbols <c>tandem_ap_trampoline</c> and <c>tandem_ap_trampoline_end</c>.</summary>
    public static void Emit(ObjectBuilder o)
    {
        var d = new DataBlock();
        d.Symbol("tandem_ap_trampoline", size: End - Base);
        d.Bytes_(RealMode16().Assemble(Code16).Bytes);
        d.PadTo(Code32 - Base, 0xCC);
        d.Bytes_(ProtectedMode32().Assemble(Code32).Bytes);
        d.PadTo(Code64 - Base, 0xCC);
        d.Bytes_(LongMode64().Assemble(Code64).Bytes);
        d.PadTo(Gdt - Base, 0xCC);
        d.U64(0);
        d.U64(Cpu.DescCode64);
        d.U64(Cpu.DescData);
        d.U64(Cpu.DescCode32);
        d.U16(4 * 8 - 1);        // GDTR limit
        d.U32((uint)Gdt);        // GDTR base (24 bits used by a 16-bit LGDT; 0x8200 fits)
        d.U16(0);
        d.Symbol("tandem_ap_trampoline_end", size: 0);
        if (d.Length != End - Base || d.Length > MaxSize)
            throw new InvalidOperationException($"AP trampoline is {d.Length:X} bytes");
        o.Emit(o.Rodata, d, alignment: 16);
    }

    /// <summary>Real mode at 0x0800:0000 = 0x8000 (CS = 0x0800, IP = 0): load the GDT, set CR0.PE, far jump.</summary>
    private static CodeBlock RealMode16()
    {
        var c = new CodeBlock(16);
        var a = c.A;
        a.cli();
        a.cld();
        a.xor(ax, ax);
        a.mov(ds, ax);                             // ds = 0: absolute addresses below 64 KiB work
        a.lgdt(__[Gdtr]);
        a.mov(eax, cr0);
        a.or(eax, (int)Cpu.Cr0Pe);
        a.mov(cr0, eax);                           // protected mode (SDM Vol. 3A 10.9.1)
        // o32 far jump (ptr16:32; Iced would pick ptr16:16 for a small offset): loads the 32-bit CS.
        a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, Code32Selector, (uint)Code32));
        return c;
    }

    /// <summary>32-bit protected mode: PAE, CR3, EFER.LME (+NXE), paging → IA-32e compatibility mode.</summary>
    private static CodeBlock ProtectedMode32()
    {
        var c = new CodeBlock(32);
        var a = c.A;
        a.mov(ax, Cpu.KernelData);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(eax, cr4);
        a.or(eax, Cpu.Cr4Pae);
        a.mov(cr4, eax);
        a.mov(eax, __dword_ptr[ParamCr3]);         // low half of the CR3 parameter (PML4 < 4 GiB)
        a.mov(cr3, eax);

        var noNx = a.CreateLabel();
        a.mov(esi, Cpu.EferLme);
        a.mov(eax, Cpu.CpuidExtFeatures);
        a.cpuid();
        a.bt(edx, Cpu.CpuidEdxNxBit);              // NX available? (same policy as the BSP)
        a.jnc(noNx);
        a.or(esi, Cpu.EferNxe);
        a.Label(ref noNx);
        a.mov(ecx, Cpu.MsrEfer);
        a.rdmsr();
        a.or(eax, esi);
        a.wrmsr();

        a.mov(eax, cr0);
        a.or(eax, Cpu.Cr0Pg | Cpu.Cr0Pe);
        a.mov(cr0, eax);                           // IA-32e mode active (compatibility sub-mode)
        a.jmp(Cpu.KernelCode64, (uint)Code64);     // far jump into 64-bit code
        return c;
    }

    /// <summary>64-bit mode: segments, SSE, stack from the parameter block, signal "started", call the entry.</summary>
    private static CodeBlock LongMode64()
    {
        var c = new CodeBlock(64);
        var a = c.A;
        a.mov(ax, Cpu.KernelData);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        Boot.EnableSse(a);
        a.mov(rsp, __qword_ptr[ParamStack]);       // absolute [disp32] addressing (not RIP-relative)
        a.xor(ebp, ebp);                           // terminates backtraces
        a.mov(rdi, __qword_ptr[ParamArg]);         // arg 0: cpu index
        a.mov(rax, __qword_ptr[ParamEntry]);
        a.mov(__dword_ptr[ParamStarted], 1);       // after all parameter loads: the BSP may reuse the block
        a.call(rax);                               // rsp is 16-byte aligned here
        Boot.HaltForever(a);
        return c;
    }
}
