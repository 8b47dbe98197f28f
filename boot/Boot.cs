using Iced.Intel;
using Tandem.StubGen.Elf;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// The bootstrap processor's path from GRUB to C#: the multiboot2 header, <c>_start</c> (32-bit protected
/// mode → IA-32e long mode), the boot GDT, page tables and stacks.
/// </summary>
internal static class Boot
{
    public const string EntrySymbol = "tandem_main";
    public const ulong BootStackSize = 64 * 1024;
    public const ulong EarlyStackSize = 16 * 1024;

    /// <summary>
    /// Multiboot2 header (Multiboot2 spec 1.0, 3.1 "OS image format"): u32 magic, u32 architecture
    /// (0 = 32-bit protected-mode i386), u32 header_length, u32 checksum (the four sum to 0 mod 2^32),
    /// then 8-byte-aligned tags ending with the end tag (type 0, flags 0, size 8). No address tag: GRUB
    /// loads the ELF segments at their physical addresses and enters at e_entry. No framebuffer tag:
    /// the kernel uses text mode and the serial port.
    /// </summary>
    public static void MultibootHeader(ObjectBuilder o)
    {
        const uint magic = 0xE852_50D6, architecture = 0, length = 16 + 8;
        var d = new DataBlock();
        d.Symbol("tandem_multiboot_header", global: false);
        d.U32(magic);
        d.U32(architecture);
        d.U32(length);
        d.U32(unchecked(0u - (magic + architecture + length)));
        d.U16(0); // end tag: type 0
        d.U16(0); //          flags 0
        d.U32(8); //          size 8
        o.Emit(o.Multiboot, d, alignment: 8); // spec: header must be 64-bit aligned, in the first 32 KiB
    }

    /// <summary>
    /// Boot data: the GDT used by <c>_start</c>, the identity page tables (PML4, PDPT, four page
    /// directories = 0..4 GiB in 2 MiB pages), the early 16 KiB stack and the 64 KiB BSP stack.
    /// </summary>
    public static void Data(ObjectBuilder o)
    {
        // GDT (SDM Vol. 3A 3.5.1): null, 0x08 64-bit code, 0x10 data.
        var gdt = new DataBlock();
        gdt.Symbol("tandem_boot_gdt", global: false, size: 24);
        gdt.U64(0);
        gdt.U64(Cpu.DescCode64);
        gdt.U64(Cpu.DescData);
        // Pseudo-descriptor for LGDT (SDM Vol. 3A 3.5.1, figure 3-11): u16 limit, then the base. In
        // 32-bit mode LGDT reads a 32-bit base: the low half of this u64, fine since we are below 4 GiB.
        gdt.Symbol("tandem_boot_gdtr", global: false, size: 10);
        gdt.U16(3 * 8 - 1);
        gdt.Address64("tandem_boot_gdt");
        o.Emit(o.Rodata, gdt, alignment: 16);

        // Page tables must be 4 KiB aligned and are laid out back to back (_start zeroes all six at once).
        o.ReserveBss("tandem_boot_pml4", 4096, 4096, global: true);
        o.ReserveBss("tandem_boot_pdpt", 4096, 4096, global: false);
        o.ReserveBss("tandem_boot_pd", 4 * 4096, 4096, global: false);
        o.ReserveBss("tandem_boot_early_stack", EarlyStackSize, 16, global: false);
        o.ReserveBss("tandem_boot_stack", BootStackSize, 16, global: true);
    }

    /// <summary>
    /// <c>_start</c>, first half: 32-bit protected mode as GRUB leaves it (Multiboot2 spec 3.3 "I386
    /// machine state": EAX = 0x36D76289, EBX = physical address of the boot information, CS/DS flat
    /// 32-bit, paging and interrupts off, ESP undefined). Builds the page tables and switches to
    /// IA-32e mode following SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode".
    /// </summary>
    public static void Start32(ObjectBuilder o)
    {
        var c = new CodeBlock(32);
        var a = c.A;
        c.Symbol("_start");
        a.cli();                                   // GRUB already did; be explicit
        a.cld();
        a.mov(esp, 0);                             // esp = top of the 16 KiB early stack
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_early_stack", (long)EarlyStackSize);
        a.push(eax);                               // [esp+4] = multiboot2 magic
        a.push(ebx);                               // [esp+0] = boot information address

        // Zero PML4 + PDPT + 4 PDs (6 pages, contiguous). GRUB zeroes .bss, but do not depend on it.
        a.mov(edi, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pml4");
        a.xor(eax, eax);
        a.mov(ecx, 6 * 4096 / 4);
        a.rep.stosd();

        // PML4[0] = PDPT | present | writable.
        a.mov(edi, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pml4");
        a.mov(eax, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pdpt", Cpu.PtePresent | Cpu.PteWritable);
        a.mov(__dword_ptr[edi], eax);

        // PDPT[0..3] = PD[i] | present | writable (each PD covers 1 GiB). High dwords stay 0.
        var pdptLoop = a.CreateLabel();
        a.mov(edi, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pdpt");
        a.mov(eax, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pd", Cpu.PtePresent | Cpu.PteWritable);
        a.mov(ecx, 4);
        a.Label(ref pdptLoop);
        a.mov(__dword_ptr[edi], eax);
        a.add(eax, 4096);                          // next page directory
        a.add(edi, 8);                             // next PDPT entry
        a.dec(ecx);
        a.jnz(pdptLoop);

        // PD entries 0..2047 = i * 2 MiB | present | writable | PS: identity map of 0..4 GiB.
        // All physical addresses are < 4 GiB, so the high dwords stay 0.
        var pdLoop = a.CreateLabel();
        a.mov(edi, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pd");
        a.mov(eax, Cpu.PtePresent | Cpu.PteWritable | Cpu.PtePageSize);
        a.mov(ecx, 4 * 512);
        a.Label(ref pdLoop);
        a.mov(__dword_ptr[edi], eax);
        a.add(eax, 0x20_0000);                     // next 2 MiB frame
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(pdLoop);

        a.lgdt(__[0]);                             // 64-bit-capable GDT (used after the far jump)
        c.Reloc(Field.Displacement, RelocType.Abs32, "tandem_boot_gdtr");

        a.mov(eax, 0);
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_pml4");
        a.mov(cr3, eax);                           // CR3 = PML4 (PCD/PWT = 0)
        a.mov(eax, cr4);
        a.or(eax, Cpu.Cr4Pae);                     // SDM 10.8.5 step 2: PAE before LME+PG
        a.mov(cr4, eax);

        // EFER.NXE only if CPUID says NX exists (setting it otherwise is #GP). CPUID clobbers ebx: the
        // info pointer is safe on the stack.
        var noNx = a.CreateLabel();
        a.mov(esi, Cpu.EferLme);
        a.mov(eax, Cpu.CpuidExtFeatures);
        a.cpuid();
        a.bt(edx, Cpu.CpuidEdxNxBit);
        a.jnc(noNx);
        a.or(esi, Cpu.EferNxe);
        a.Label(ref noNx);
        a.mov(ecx, Cpu.MsrEfer);
        a.rdmsr();                                 // edx:eax = IA32_EFER
        a.or(eax, esi);                            // LME (+ NXE)
        a.wrmsr();

        a.mov(eax, cr0);
        a.or(eax, Cpu.Cr0Pg | Cpu.Cr0Pe);          // paging on: IA-32e mode active, compatibility sub-mode
        a.mov(cr0, eax);

        a.pop(esi);                                // esi = boot information address
        a.pop(edi);                                // edi = multiboot2 magic
        a.jmp(Cpu.KernelCode64, 0u);               // far jump: CS = 64-bit code selector → 64-bit mode
        c.Reloc(Field.Immediate, RelocType.Abs32, "tandem_boot_long_mode");
        o.Emit(o.TextBoot, c);
    }

    /// <summary>
    /// <c>_start</c>, second half: first 64-bit instructions. Loads data segments, enables SSE, moves
    /// to the 64 KiB BSP stack and calls <c>tandem_main(uint magic, ulong info)</c>.
    /// </summary>
    public static void Start64(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        c.Symbol("tandem_boot_long_mode", SymbolKind.Function, global: false);
        a.mov(ax, Cpu.KernelData);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        EnableSse(a);

        // The upper halves of registers carried over from 32-bit code are undefined (SDM Vol. 1 3.4.1.1):
        // a 32-bit mov zero-extends.
        a.mov(edi, edi);                           // arg 0: multiboot2 magic
        a.mov(esi, esi);                           // arg 1: boot information physical address
        c.LeaRipRelative(Register.RSP, "tandem_boot_stack", (long)BootStackSize); // top of the 64 KiB stack, 16-byte aligned
        a.xor(ebp, ebp);                           // rbp = 0 ends frame-pointer backtraces
        a.call(0UL);                               // rsp % 16 == 0 here, as the SysV ABI requires
        c.Reloc(Field.Immediate, RelocType.Plt32, EntrySymbol);
        HaltForever(a);
        o.Emit(o.TextBoot, c);
    }

    /// <summary>
    /// SSE on (SDM Vol. 3A 14.1.3 "Initialization of the SSE Extensions"): CR0.EM = 0, CR0.MP = 1,
    /// CR0.NE = 1, CR4.OSFXSR = 1, CR4.OSXMMEXCPT = 1. Clobbers rax. Shared by the BSP and the APs.
    /// </summary>
    public static void EnableSse(Assembler a)
    {
        a.mov(rax, cr0);
        a.and(rax, unchecked((int)~Cpu.Cr0Em));
        a.or(rax, (int)(Cpu.Cr0Mp | Cpu.Cr0Ne));
        a.mov(cr0, rax);
        a.mov(rax, cr4);
        a.or(rax, (int)(Cpu.Cr4OsFxsr | Cpu.Cr4OsXmmExcpt));
        a.mov(cr4, rax);
    }

    /// <summary>cli; hlt; jmp back to hlt (an NMI or SMI wakes hlt; go straight back to sleep).</summary>
    public static void HaltForever(Assembler a)
    {
        var halt = a.CreateLabel();
        a.cli();
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
    }
}
