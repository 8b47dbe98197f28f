using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

/// <summary>
/// The small test guests, generated with Iced as flat images with Tandem's guest header
/// ("TGST", mode, entry offset; see kvm/Vmx/GuestImage.cs). They load at guest-physical 1 MiB.
/// Devices they use: COM1 data port 0x3F8 (relayed to the host console), the phase port 0x502
/// (the host's tests act at each phase), the exit port 0xF4 (ends the VM with the byte written).
/// </summary>
public static partial class TestGuests
{
    private const ulong LoadAddress = 0x10_0000;
    private const uint HeaderSize = 16;
    private const ushort Serial = 0x3F8, SerialStatus = 0x3FD, Phase = 0x502, Exit = 0xF4;

    /// <summary>Data area the checksum guest fills: 64 pages from 2 MiB.</summary>
    public const uint ChecksumBase = 0x20_0000, ChecksumPages = 64;

    /// <summary>Hot and cold sets of the aging guest.</summary>
    public const uint HotBase = 0x30_0000, HotPages = 16, ColdBase = 0x40_0000, ColdPages = 32;

    /// <summary>Each isolation guest writes its VM id (from ebx at entry) across 16 pages from 5 MiB.</summary>
    public const uint IsolationBase = 0x50_0000, IsolationPages = 16;

    /// <summary>Every test guest as (module name, image).</summary>
    public static IReadOnlyList<(string Name, byte[] Image)> All() =>
    [
        ("hello32", Hello32()),
        ("aging64", Aging64()),
        ("isolate32", Isolate32()),
        ("cpuidloop64", CpuidLoop64()),
        ("crash32", Crash32()),
        ("spin32", Spin32()),
        ("timer32", Timer32()),
        ("halt32", Halt32()),
        ("devices32", Devices32()),
        ("mmio64", Mmio64()),
        ("cr8_64", Cr8Guest64()),
        ("cpuidmax64", CpuidMax64()),
        ("tsc64", Tsc64()),
        ("msr32", Msr32()),
        ("vmxinsn32", VmxInsn32()),
        ("fuzzkit", FuzzKit.Build()),
        ("sentinel32", Sentinel32()),
        ("apic32", Apic32()),
        ("uart32", Uart32()),
        ("s5_32", S5Guest()),
        ("smp32", Smp32()),
        ("nmiinit32", NmiInit32()),
        ("strio32", StringIo32()),
        ("reset32", Reset32()),
        ("ksm32", Ksm32()),
        ("swapfill32", SwapFill32()),
        ("hotcold32", HotCold32()),
        ("smpspin32", SmpSpin32()),
        ("ipibench32", IpiBench32()),
        ("yieldbench32", YieldBench32()),
        ("tick32", Tick32()),
        ("mmiobad32", MmioRefused32()),
        ("mmio64b", Mmio64b()),
        ("longmode32", LongMode32()),
        ("msr64", Msr64()),
        ("uartin32", UartIn32()),
        ("uartpaste32", UartPaste32()),
        ("ring3vmcall64", Ring3Vmcall64()),
        ("markerscan32", MarkerScan32()),
        ("unassigned32", Unassigned32()),
        ("hostpages32", HostPages32()),
        ("cr4hidden32", Cr4Hidden32()),
        ("debugregs32", DebugRegs32()),
        ("progress32", Progress32()),
        ("serialflood32", SerialFlood32()),
        ("exitstorm32", ExitStorm32()),
        ("postcopy32", Postcopy32()),
        ("sharedmem32", SharedMem32()),
    ];

    /// <summary>
    /// 32-bit: ACPI power-off as an OS does it. Finds the RSDP by the legacy scan of 0xE0000-0xFFFFF
    /// in 16-byte steps (check 1: "RSD PTR " found), then writes SLP_TYP = 5 with SLP_EN to the PM1a
    /// control register at 0x604 (the FADT's PM1a_CNT_BLK). The host ends the VM with status 0 there;
    /// if it did not, the guest exits with 2.
    /// </summary>
    private static byte[] S5Guest()
    {
        var strings = new Strings("s5 guest: scanning for the RSDP, then S5\n", "S5 CHECK FAILED\n");
        var a = new Assembler(32);
        var scan = a.CreateLabel();
        var found = a.CreateLabel();
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        var advance = a.CreateLabel();
        a.mov(ebp, 1);
        a.mov(esi, 0xE0000u);
        a.Label(ref scan);
        a.cmp(__dword_ptr[esi], 0x20445352);                 // "RSD "
        a.jne(advance);
        a.cmp(__dword_ptr[esi + 4], 0x20525450);             // "PTR "
        a.je(found);
        a.Label(ref advance);
        a.add(esi, 16);
        a.cmp(esi, 0x100000);
        a.jb(scan);
        a.jmp(fail);
        a.Label(ref found);
        a.mov(ebp, 2);
        a.mov(dx, (ushort)0x604);
        a.mov(ax, (ushort)((5 << 10) | (1 << 13)));
        a.@out(dx, ax);
        a.Label(ref fail);
        Print(a, strings.Address(1), long64: false);
        a.mov(eax, ebp);
        a.mov(dx, Exit);
        a.@out(dx, al);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }

    /// <summary>Where the UART guest keeps its interrupt count, the IIR it saw and the byte it received.</summary>
    public const uint UartCounter = 0x7300, UartIir = 0x7304, UartByte = 0x7308;

    /// <summary>
    /// 32-bit: COM1 receive with an interrupt. The host puts a 'T' in the VM's COM1 before it runs
    /// (as typed console input). The guest installs a gate for vector 0x24 (IRQ 4 on a PIC based at
    /// 0x20), unmasks only IRQ 4, enables received-data interrupts (IER bit 0, MCR OUT2), and waits
    /// in <c>sti; hlt</c>; the handler records IIR, reads RBR and sends the PIC an EOI. Checks: 1 the
    /// interrupt came, 2 IIR said "received data" (0xC4 or 0x04: FIFOs off here, so 0x04), 3 the
    /// byte is 'T', 4 LSR's data-ready bit is clear after the read.
    /// </summary>
    private static byte[] Uart32()
    {
        return TwoPass("uart32", Uart32Pass);
    }

    private static byte[] Uart32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("uart guest: waiting for a byte from the host console\n", "uart guest: received it through IRQ 4\n", "UART CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        var wait = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 0x24, handlerAddress);
        a.mov(__dword_ptr[ebx + (int)UartCounter], 0);
        PicInit(a, 0xEF, 0xFF);                                    // only IRQ 4
        foreach ((ushort port, byte value) in new (ushort, byte)[]
        {
            (0x3FA, 0x00),                                         // FIFOs off
            (0x3F9, 0x01),                                         // IER: received data
            (0x3FC, 0x08),                                         // MCR: OUT2 (the PC's IRQ gate)
        })
        {
            Out(a, port, value);
        }
        a.mov(ebp, 1);
        a.Label(ref wait);
        a.sti();
        a.hlt();
        a.cmp(__dword_ptr[UartCounter], 1);
        a.jb(wait);
        a.cli();
        a.inc(ebp);
        a.mov(eax, __dword_ptr[UartIir]);
        a.and(eax, 0x0F);
        a.cmp(eax, 0x04);
        a.jne(fail);
        a.inc(ebp);
        a.cmp(__dword_ptr[UartByte], 'T');
        a.jne(fail);
        a.inc(ebp);
        a.mov(dx, SerialStatus);
        a.@in(al, dx);
        a.test(al, 1);
        a.jnz(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        a.Label(ref handler);
        a.push(eax);
        a.push(edx);
        a.inc(__dword_ptr[UartCounter]);
        a.mov(dx, (ushort)0x3FA);
        a.@in(al, dx);
        a.movzx(eax, al);
        a.mov(__dword_ptr[UartIir], eax);
        a.mov(dx, (ushort)0x3F8);
        a.@in(al, dx);
        a.movzx(eax, al);
        a.mov(__dword_ptr[UartByte], eax);
        a.mov(al, 0x20);
        a.@out(0x20, al);
        a.pop(edx);
        a.pop(eax);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }

    /// <summary>Where the APIC guest counts its interrupts: local APIC timer, then IOAPIC-routed PIT.</summary>
    public const uint ApicTimerCounter = 0x7200, IoApicCounter = 0x7204;

    /// <summary>
    /// 32-bit: the local APIC and the IOAPIC through MMIO. Installs gates for vector 0x40 (APIC
    /// timer) and 0x41 (the PIT through the IOAPIC), each counting and writing the xAPIC EOI
    /// register. Software-enables the APIC (SPIV), runs its timer periodically (divide by 1, 1 ms
    /// at the 1 GHz APIC clock) until 10 interrupts woke its <c>sti; hlt</c> loop (check 1), stops
    /// it; masks both 8259As, routes IOAPIC pin 2 (ISA IRQ 0) to vector 0x41 edge/fixed/APIC 0,
    /// runs the PIT at 1 kHz until 5 interrupts came that way (check 2), and checks the IOAPIC's
    /// version register (check 3). Exits with the first failed check's number, or 0.
    /// </summary>
    private static byte[] Apic32()
    {
        byte[] image = Apic32Pass(0, 0, out ulong h1, out ulong h2);
        byte[] final = Apic32Pass((uint)h1, (uint)h2, out ulong again1, out ulong again2);
        if (again1 != h1 || again2 != h2 || final.Length != image.Length)
            throw new InvalidOperationException("apic32: a handler moved between passes");
        return final;
    }

    private static byte[] Apic32Pass(uint timerHandler, uint ioapicHandler, out ulong timerRip, out ulong ioapicRip)
    {
        var strings = new Strings("apic guest: local APIC timer, then the PIT through the IOAPIC\n", "apic guest: every check passed\n", "APIC CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var h1 = a.CreateLabel();
        var h2 = a.CreateLabel();
        var wait1 = a.CreateLabel();
        var wait2 = a.CreateLabel();
        const uint Lapic = 0xFEE0_0000, IoApicBase = 0xFEC0_0000;
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 0x40, timerHandler);
        Gate(a, 0x41, ioapicHandler);
        a.mov(__dword_ptr[ebx + (int)ApicTimerCounter], 0);
        a.mov(__dword_ptr[ebx + (int)IoApicCounter], 0);
        a.mov(ebp, 0);                                       // check number
        a.mov(esi, Lapic);
        a.mov(__dword_ptr[esi + 0xF0], 0x1FF);               // SPIV: enabled, spurious vector 0xFF
        a.mov(__dword_ptr[esi + 0x3E0], 0x0B);               // divide by 1
        a.mov(__dword_ptr[esi + 0x320], 0x20040);            // LVT timer: periodic, vector 0x40
        a.mov(__dword_ptr[esi + 0x380], 1_000_000);          // initial count: 1 ms at 1 GHz
        // 1: ten APIC timer interrupts wake the halted vCPU
        a.inc(ebp);
        a.Label(ref wait1);
        a.sti();
        a.hlt();
        a.cmp(__dword_ptr[ApicTimerCounter], 10);
        a.jb(wait1);
        a.cli();
        a.mov(__dword_ptr[esi + 0x320], 0x10040);            // mask the timer
        a.mov(__dword_ptr[esi + 0x380], 0);                  // and stop it
        // 2: the PIT's IRQ 0 through IOAPIC pin 2, both 8259As masked
        a.inc(ebp);
        PicInit(a, 0xFF, 0xFF);
        a.mov(edi, IoApicBase);
        a.mov(__dword_ptr[edi], 0x10 + 2 * 2);               // redirection entry 2, low half
        a.mov(__dword_ptr[edi + 0x10], 0x41);                // vector 0x41, fixed, physical, edge, high, unmasked
        a.mov(__dword_ptr[edi], 0x10 + 2 * 2 + 1);           // high half: destination APIC 0
        a.mov(__dword_ptr[edi + 0x10], 0);
        foreach ((ushort port, byte value) in new (ushort, byte)[] { (0x43, 0x34), (0x40, 1193 & 0xFF), (0x40, 1193 >> 8) })
            Out(a, port, value);
        a.Label(ref wait2);
        a.sti();
        a.hlt();
        a.cmp(__dword_ptr[IoApicCounter], 5);
        a.jb(wait2);
        a.cli();
        // 3: the IOAPIC's version register (24 entries, version 0x11)
        a.inc(ebp);
        a.mov(__dword_ptr[edi], 1);
        a.mov(eax, __dword_ptr[edi + 0x10]);
        a.cmp(eax, 0x0017_0011);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        void Handler(uint counter)
        {
            a.inc(__dword_ptr[counter]);
            a.mov(__dword_ptr[Lapic + 0xB0], 0);              // EOI
            a.iretd();
        }
        a.Label(ref h1);                                     // Label is a struct: bind the variables themselves
        Handler(ApicTimerCounter);
        a.Label(ref h2);
        Handler(IoApicCounter);
        return strings.Image2(a, 32, h1, h2, out timerRip, out ioapicRip);
    }

    /// <summary>Where the MSR guest's #GP handler counts its faults.</summary>
    public const uint GpCounter = 0x7100;

    /// <summary>
    /// 32-bit: MSRs as a guest sees them. Installs GDT descriptors and a #GP handler (vector 13:
    /// count, pop the error code, step over the 2-byte RDMSR/WRMSR, IRET), then checks: 1 an
    /// unknown MSR's RDMSR faults, 2 so does its WRMSR, 3 EFER reads without a fault, 4 STAR reads
    /// back what was written, 5 FS_BASE too, 6 a non-canonical FS_BASE faults, 7 a PAT entry of
    /// type 2 faults, 8 and 9 a write to IA32_TSC moves RDTSC and RDMSR of it, 10 RDPMC faults (also
    /// 2 bytes), 11 the fault count is exactly 5. Exits with the first failed check's number.
    /// </summary>
    private static byte[] Msr32()
    {
        return TwoPass("msr32", Msr32Pass);
    }

    private static byte[] Msr32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("msr guest: unknown MSRs fault, known ones hold their values\n", "msr guest: every check passed\n", "MSR CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 13, handlerAddress);                         // #GP
        a.mov(__dword_ptr[ebx + (int)GpCounter], 0);
        a.mov(ebp, 0);                                       // check number (the handler keeps ebp)
        void ExpectFaults(int count)
        {
            a.cmp(__dword_ptr[(uint)GpCounter], count);
            a.jne(fail);
        }
        // 1, 2: an unknown MSR faults on read and write
        a.inc(ebp);
        a.mov(ecx, 0x1234_5678u);
        a.rdmsr();
        ExpectFaults(1);
        a.inc(ebp);
        a.wrmsr();
        ExpectFaults(2);
        // 3: EFER reads
        a.inc(ebp);
        a.mov(ecx, 0xC000_0080u);
        a.rdmsr();
        ExpectFaults(2);
        // 4: STAR holds what was written
        a.inc(ebp);
        a.mov(ecx, 0xC000_0081u);
        a.mov(eax, 0x1122_3344u);
        a.mov(edx, 0x0023_0010u);
        a.wrmsr();
        a.xor(eax, eax);
        a.xor(edx, edx);
        a.rdmsr();
        a.cmp(eax, 0x1122_3344u);
        a.jne(fail);
        a.cmp(edx, 0x0023_0010u);
        a.jne(fail);
        // 5: FS_BASE holds what was written
        a.inc(ebp);
        a.mov(ecx, 0xC000_0100u);
        a.mov(eax, 0x0040_0000u);
        a.xor(edx, edx);
        a.wrmsr();
        a.xor(eax, eax);
        a.rdmsr();
        a.cmp(eax, 0x0040_0000u);
        a.jne(fail);
        // 6: a non-canonical FS_BASE faults
        a.inc(ebp);
        a.mov(edx, 0x0080_0000u);
        a.wrmsr();
        ExpectFaults(3);
        // 7: a PAT with a reserved memory type faults
        a.inc(ebp);
        a.mov(ecx, 0x277u);
        a.mov(eax, 0x0000_0002u);
        a.xor(edx, edx);
        a.wrmsr();
        ExpectFaults(4);
        // 8: IA32_TSC takes a write: RDTSC goes on from the value written (TSC offsetting)
        a.inc(ebp);
        a.mov(ecx, 0x10u);
        a.xor(eax, eax);
        a.mov(edx, 0x0000_1000u);
        a.wrmsr();
        a.rdtsc();
        a.cmp(edx, 0x0000_1000u);
        a.jne(fail);
        // 9: and RDMSR of IA32_TSC agrees
        a.inc(ebp);
        a.mov(ecx, 0x10u);
        a.rdmsr();
        a.cmp(edx, 0x0000_1000u);
        a.jne(fail);
        // 10: RDPMC faults (the host intercepts it: no host counter reaches a guest)
        a.inc(ebp);
        a.xor(ecx, ecx);
        a.rdpmc();
        ExpectFaults(5);
        // 11: and nothing else faulted
        a.inc(ebp);
        ExpectFaults(5);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        // #GP: count, drop the error code, step over the 2-byte instruction, return.
        a.Label(ref handler);
        a.inc(__dword_ptr[(uint)GpCounter]);
        a.add(esp, 4);
        a.add(__dword_ptr[esp], 2);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }

    /// <summary>Where vmxinsn32 counts the #UDs it took.</summary>
    public const uint UdCounter = 0x7104;

    /// <summary>
    /// 32-bit: the instructions a guest without VMX must see fault, not end its VM: VMXON, VMXOFF,
    /// VMREAD, VMWRITE, VMPTRST, INVEPT, MONITOR and MWAIT each raise #UD (checks 1-8; the handler
    /// counts, then steps over the instruction by the length the guest put in esi), and nothing else
    /// faulted (check 9).
    /// </summary>
    private static byte[] VmxInsn32()
    {
        return TwoPass("vmxinsn32", VmxInsn32Pass);
    }

    private static byte[] VmxInsn32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("vmx instruction guest: VMX instructions, MONITOR and MWAIT raise #UD\n", "vmx instruction guest: every check passed\n", "VMX INSTRUCTION CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 6, handlerAddress);                          // #UD
        a.mov(__dword_ptr[ebx + (int)UdCounter], 0);
        a.mov(ebp, 0);                                       // check number (the handler keeps ebp)
        a.mov(edi, 0x7200u);                                 // a memory operand for the instructions that take one
        int count = 0;
        void Expect(int length, System.Action instruction)
        {
            a.inc(ebp);
            a.mov(esi, length);
            instruction();
            count++;
            a.cmp(__dword_ptr[UdCounter], count);
            a.jne(fail);
        }
        Expect(4, () => a.vmxon(__qword_ptr[edi]));          // f3 0f c7 37
        Expect(3, () => a.vmxoff());                         // 0f 01 c4
        Expect(3, () => a.vmread(eax, ecx));                 // 0f 78 c8
        Expect(3, () => a.vmwrite(ecx, eax));                // 0f 79 c8
        Expect(3, () => a.vmptrst(__qword_ptr[edi]));        // 0f c7 3f
        Expect(5, () => a.invept(eax, __xmmword_ptr[edi]));  // 66 0f 38 80 07
        Expect(3, () => a.monitor());                        // 0f 01 c8
        Expect(3, () => a.mwait());                          // 0f 01 c9
        a.inc(ebp);
        a.cmp(__dword_ptr[UdCounter], count);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        // #UD (no error code): count, step over the instruction by esi bytes, return.
        a.Label(ref handler);
        a.inc(__dword_ptr[UdCounter]);
        a.add(__dword_ptr[esp], esi);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }

    /// <summary>Guest-physical base of Tandem's MMIO test page (kvm/Devices/ScratchMmio.cs).</summary>
    public const uint ScratchBase = 0xFEB0_0000;

    /// <summary>
    /// 64-bit: MMIO through the decoder and emulator, one form after another against Tandem's MMIO
    /// test page (it reads back what was written): mov stores and loads of every width, immediate
    /// stores, movzx/movsx, and/or/xor/add with memory, test and cmp (their flags checked by a
    /// conditional jump), xchg, the moffs forms, and rep stos/movs between RAM and the page. Exits
    /// with the number of the first check that failed, or 0.
    /// </summary>
    private static byte[] Mmio64()
    {
        var strings = new Strings("mmio guest: every decoded form against the MMIO test page\n", "mmio guest: every form checked\n", "MMIO CHECK FAILED\n");
        var a = new Assembler(64);
        var fail = a.CreateLabel();
        Print(a, strings.Address(0), long64: true);
        // The identity map of the 64-bit test guests covers the first GiB only: map the page's GiB
        // (PDPT[3] -> a fourth page directory at 0x4000 of 2 MiB pages for 3-4 GiB).
        a.mov(edi, 0x4000u);
        a.mov(ecx, 512u);
        a.mov(eax, 0xC000_0083u);                           // 0xC0000000 | present | writable | 2 MiB
        var fill = a.CreateLabel();
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
        a.mov(ebx, 0);                                      // check number
        a.mov(rsi, (ulong)ScratchBase);
        void Check(Action cond)
        {
            a.inc(ebx);
            cond();
        }
        // 1: 32-bit store, 32-bit load
        a.mov(__dword_ptr[rsi], 0x12345678);
        a.mov(eax, __dword_ptr[rsi]);
        Check(() => { a.cmp(eax, 0x12345678); a.jne(fail); });
        // 2: 64-bit register store and load
        a.mov(rdx, 0x1122334455667788UL);
        a.mov(__qword_ptr[rsi + 8], rdx);
        a.mov(rcx, __qword_ptr[rsi + 8]);
        Check(() => { a.cmp(rcx, rdx); a.jne(fail); });
        // 3: 8-bit store from a high-byte register, movzx back
        a.mov(eax, 0xAB00);
        a.mov(__byte_ptr[rsi + 16], ah);
        a.movzx(ecx, __byte_ptr[rsi + 16]);
        Check(() => { a.cmp(ecx, 0xAB); a.jne(fail); });
        // 4: movsx of a 16-bit value
        a.mov(__word_ptr[rsi + 24], 0x8001);
        a.movsx(rcx, __word_ptr[rsi + 24]);
        Check(() => { a.cmp(rcx, -32767); a.jne(fail); });
        // 5: or, and, xor, add with memory
        a.mov(__dword_ptr[rsi + 32], 0xF0);
        a.or(__dword_ptr[rsi + 32], 0x0F);
        a.and(__dword_ptr[rsi + 32], 0x3C);
        a.xor(__dword_ptr[rsi + 32], 0x01);
        a.add(__dword_ptr[rsi + 32], 0x100);
        a.mov(eax, __dword_ptr[rsi + 32]);
        Check(() => { a.cmp(eax, 0x13D); a.jne(fail); });
        // 6: cmp with memory sets ZF; 7: test with memory clears ZF
        Check(() => { a.cmp(__dword_ptr[rsi + 32], 0x13D); a.jne(fail); });
        Check(() => { a.test(__dword_ptr[rsi + 32], 0x100); a.jz(fail); });
        // 8: xchg with memory
        a.mov(eax, 0x55);
        a.xchg(__dword_ptr[rsi + 32], eax);
        Check(() => { a.cmp(eax, 0x13D); a.jne(fail); });
        Check(() => { a.cmp(__dword_ptr[rsi + 32], 0x55); a.jne(fail); });
        // 10: moffs load (mov eax, [abs64])
        a.mov(eax, __dword_ptr[(ulong)ScratchBase]);
        Check(() => { a.cmp(eax, 0x12345678); a.jne(fail); });
        // 11: rep stosd into the page, read back
        a.lea(rdi, __[rsi + 0x200]);
        a.mov(ecx, 8);
        a.mov(eax, 0xA5A5A5A5);
        a.cld();
        a.rep.stosd();
        a.mov(eax, __dword_ptr[rsi + 0x200 + 7 * 4]);
        Check(() => { a.cmp(eax, 0xA5A5A5A5); a.jne(fail); });
        // 12: rep movsb from the page to RAM (0x8000)
        a.lea(rsi, __[rsi + 0x200]);
        a.mov(edi, 0x8000u);
        a.mov(ecx, 32);
        a.rep.movsb();
        a.mov(edi, 0x8000u + 28);
        a.mov(eax, __dword_ptr[rdi]);
        Check(() => { a.cmp(eax, 0xA5A5A5A5); a.jne(fail); });

        var halt = a.CreateLabel();
        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebx, long64: true);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// 32-bit: reads the platform's devices as firmware and Linux do and exits with the number of
    /// the first check that failed (0 when all hold): 1-4 fw_cfg's signature "QEMU" (selector
    /// 0x510, data 0x511), 5 its CPU count (1), 6 the PCI host bridge's ID 8086:1237 at 00:00.0
    /// (0xCF8/0xCFC), 7 all ones from the absent device 00:01.0, 8 CMOS status register D (0x80,
    /// valid RAM), 9 COM1's line status (transmitter empty), 10 the PIT's read-back of a counter
    /// just loaded, 11-15 CPUID: the hypervisor bit without VMX or MONITOR, APIC ID 0 in a package
    /// of one, Tandem's leaf 0x40000000, and the TSC frequency leaf 0x15 offered and filled.
    /// </summary>
    private static byte[] Devices32()
    {
        var strings = new Strings("devices guest: fw_cfg, PCI, CMOS, COM1, PIT\n", "devices guest: every device answered\n", "DEVICE CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.xor(ebx, ebx);                                    // bl: the number of the check running
        void Expect8(byte value)
        {
            a.inc(ebx);
            a.cmp(al, value);
            a.jne(fail);
        }
        a.mov(dx, (ushort)0x510);
        a.xor(eax, eax);
        a.@out(dx, ax);                                     // select the signature
        a.mov(dx, (ushort)0x511);
        foreach (char c in "QEMU")
        {
            a.@in(al, dx);
            Expect8((byte)c);
        }
        a.mov(dx, (ushort)0x510);
        a.mov(eax, 0x05);
        a.@out(dx, ax);                                     // CPU count, 16-bit little-endian
        a.mov(dx, (ushort)0x511);
        a.@in(al, dx);
        Expect8(1);
        a.mov(dx, (ushort)0xCF8);
        a.mov(eax, 0x8000_0000u);
        a.@out(dx, eax);                                    // 00:00.0, register 0
        a.mov(dx, (ushort)0xCFC);
        a.@in(eax, dx);
        a.inc(ebx);
        a.cmp(eax, 0x1237_8086);
        a.jne(fail);
        a.mov(dx, (ushort)0xCF8);
        a.mov(eax, 0x8000_0800u);
        a.@out(dx, eax);                                    // 00:01.0: nothing there
        a.mov(dx, (ushort)0xCFC);
        a.@in(eax, dx);
        a.inc(ebx);
        a.cmp(eax, -1);
        a.jne(fail);
        a.mov(al, 0x0D);
        a.@out(0x70, al);
        a.@in(al, 0x71);
        Expect8(0x80);
        a.mov(dx, SerialStatus);
        a.@in(al, dx);
        a.and(al, 0x60);
        Expect8(0x60);
        a.mov(al, 0xB0);                                    // channel 2, lo/hi, mode 0
        a.@out(0x43, al);
        a.mov(al, 0x34);
        a.@out(0x42, al);
        a.mov(al, 0x12);
        a.@out(0x42, al);                                   // count 0x1234
        a.mov(al, 0xC0 | 0x20 | 0x08);                      // read-back: status of channel 2
        a.@out(0x43, al);
        a.@in(al, 0x42);
        a.and(al, 0x3F);                                    // access lo/hi, mode 0, binary
        Expect8(0x30);
        // 11: CPUID 1: the hypervisor bit set, VMX and MONITOR clear; 12: APIC ID 0, one logical
        // processor; 13: Tandem's leaf 0x40000000; 14: leaf 0 offers the TSC leaf 0x15, 15: which
        // names a frequency.
        a.mov(eax, 1);
        a.cpuid();
        a.mov(eax, ecx);
        a.and(eax, unchecked((int)((1u << 31) | (1u << 5) | (1u << 3))));
        a.inc(ebx);
        a.cmp(eax, unchecked((int)(1u << 31)));
        a.jne(fail);
        a.mov(eax, 1);
        a.push(ebx);
        a.cpuid();
        a.mov(eax, ebx);
        a.pop(ebx);
        a.and(eax, unchecked((int)0xFFFF_0000u));
        a.inc(ebx);
        a.cmp(eax, 0x0001_0000);
        a.jne(fail);
        a.mov(eax, 0x4000_0000);
        a.push(ebx);
        a.cpuid();
        a.mov(eax, ebx);
        a.pop(ebx);
        a.inc(ebx);
        a.cmp(eax, 0x646E6154);                             // "Tand"
        a.jne(fail);
        a.xor(eax, eax);
        a.push(ebx);
        a.cpuid();
        a.pop(ebx);
        a.inc(ebx);
        a.cmp(eax, 0x15);
        a.jb(fail);
        a.mov(eax, 0x15);
        a.push(ebx);
        a.cpuid();
        a.pop(ebx);
        a.inc(ebx);
        a.test(ecx, ecx);
        a.jz(fail);

        var halt = a.CreateLabel();
        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebx, long64: false);
        return strings.Image(a, 32);
    }

    /// <summary>A guest that can never be woken: <c>cli; hlt</c> (the host stops it with the reason).</summary>
    private static byte[] Halt32()
    {
        var strings = new Strings("halting with interrupts off\n");
        var a = new Assembler(32);
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.cli();
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }

    /// <summary>Interrupts the timer guest counts before it exits, and where it counts them.</summary>
    public const uint TimerTicks = 20, TimerCounter = 0x7000;

    /// <summary>
    /// 32-bit: the platform's interrupt path end to end. Installs its GDT's code and data
    /// descriptors (GDTR is base 0, and the VMCS loads selectors 0x08 and 0x10) and an interrupt
    /// gate for vector 0x20 (IDTR is base 0 too), initialises the PIC pair as Linux does (master
    /// vectors 0x20, slave 0x28, only IRQ 0 unmasked), programs PIT channel 0 as a 1 kHz rate
    /// generator, and then loops on <c>sti; hlt</c> until its IRQ 0 handler (count, EOI, IRET) has
    /// run <see cref="TimerTicks"/> times. Then it prints and exits 0. Its stack is demand-faulted
    /// on the first interrupt, so the first delivery exits for an EPT violation and is re-injected.
    /// A timer that never fires leaves it halted, and the host stops it with the reason.
    /// </summary>
    private static byte[] Timer32()
    {
        return TwoPass("timer32", Timer32Pass);
    }

    private static byte[] Timer32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("timer guest: PIC, PIT at 1 kHz, sti; hlt\n", "timer guest: 20 interrupts counted\n");
        var a = new Assembler(32);
        var wait = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();

        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 0x20, handlerAddress);
        a.mov(__dword_ptr[ebx + (int)TimerCounter], 0);
        PicInit(a, 0xFE, 0xFF);                                    // only IRQ 0
        foreach ((ushort port, byte value) in new (ushort, byte)[]
        {
            (0x43, 0x34), (0x40, 1193 & 0xFF), (0x40, 1193 >> 8),      // PIT channel 0, mode 2, 1 kHz
        })
        {
            Out(a, port, value);
        }
        a.Label(ref wait);
        a.sti();
        a.hlt();
        a.cmp(__dword_ptr[ebx + (int)TimerCounter], TimerTicks);
        a.jb(wait);
        a.cli();
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);

        a.Label(ref handler);
        a.push(eax);
        a.inc(__dword_ptr[TimerCounter]);
        a.mov(al, 0x20);
        a.@out(0x20, al);                                    // non-specific EOI
        a.pop(eax);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }

    /// <summary>A hostile guest: executes UD2 with no IDT, which escalates to a triple fault.</summary>
    private static byte[] Crash32()
    {
        var strings = new Strings("about to crash\n");
        var a = new Assembler(32);
        Print(a, strings.Address(0), long64: false);
        a.ud2();
        return strings.Image(a, 32);
    }

    /// <summary>A hostile guest: spins forever without a single exit of its own.</summary>
    private static byte[] Spin32()
    {
        var a = new Assembler(32);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
        return new Strings().Image(a, 32);
    }

    /// <summary>Iterations of the CPUID benchmark guest.</summary>
    public const uint CpuidIterations = 1000;

    /// <summary>Where tsc64 stores the TSC it read first.</summary>
    public const uint TscSlot = 0x7300;

    /// <summary>64-bit: reads the TSC before anything else, stores it at <see cref="TscSlot"/> and exits 0.</summary>
    private static byte[] Tsc64()
    {
        var strings = new Strings("tsc guest\n");
        var a = new Assembler(64);
        var halt = a.CreateLabel();
        a.rdtsc();
        a.mov(__dword_ptr[TscSlot], eax);
        a.mov(__dword_ptr[TscSlot + 4], edx);
        Print(a, strings.Address(0), long64: true);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// 64-bit: CPUID of leaves 0x17, 0x20 and 0x3FFF_FFFF (above the maximum basic leaf that leaf 0
    /// reports) must answer exactly like that maximum leaf (checks 1-3, exit status = the failed
    /// check), and leaf 0 must report 0x16 (check 4).
    /// </summary>
    private static byte[] CpuidMax64()
    {
        var strings = new Strings("cpuid guest: leaves above the maximum answer like the maximum\n");
        var a = new Assembler(64);
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: true);
        a.xor(eax, eax);
        a.cpuid();
        a.mov(r12d, eax);                                   // the maximum basic leaf
        a.mov(eax, r12d);
        a.xor(ecx, ecx);
        a.cpuid();
        a.mov(r8d, eax);
        a.mov(r9d, ebx);
        a.mov(r10d, ecx);
        a.mov(r11d, edx);
        uint[] above = [0x17, 0x20, 0x3FFF_FFFF];
        for (int i = 0; i < above.Length; i++)
        {
            var next = a.CreateLabel();
            var bad = a.CreateLabel();
            a.mov(eax, above[i]);
            a.xor(ecx, ecx);
            a.cpuid();
            a.cmp(eax, r8d);
            a.jne(bad);
            a.cmp(ebx, r9d);
            a.jne(bad);
            a.cmp(ecx, r10d);
            a.jne(bad);
            a.cmp(edx, r11d);
            a.je(next);
            a.Label(ref bad);
            Out(a, Exit, (byte)(i + 1));
            a.Label(ref next);
        }
        var ok = a.CreateLabel();
        a.cmp(r12d, 0x16);
        a.je(ok);
        Out(a, Exit, 4);
        a.Label(ref ok);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// 64-bit: writes 9 and then 6 to CR8 and reads each back (check 1 and 2: the value read is the
    /// value written), through RCX and RSP as the general register (the host decodes both), then
    /// leaves 9 there and exits 0. The host checks that its own APIC's task priority did not move
    /// and that the VM's virtual APIC holds 0x90.
    /// </summary>
    private static byte[] Cr8Guest64()
    {
        var strings = new Strings("cr8 guest: MOV to and from CR8\n");
        var a = new Assembler(64);
        var fail1 = a.CreateLabel();
        var fail2 = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: true);
        a.mov(rcx, 6);
        a.mov(cr8, rcx);
        a.xor(edx, edx);
        a.mov(rdx, cr8);
        a.cmp(rdx, 6);
        a.jne(fail1);
        a.mov(rbx, rsp);                                    // the stack pointer as the operand: the host reads RSP from the VMCS
        a.mov(rsp, 9);
        a.mov(cr8, rsp);
        a.xor(esp, esp);
        a.mov(rsp, cr8);
        a.mov(rdx, rsp);
        a.mov(rsp, rbx);
        a.cmp(rdx, 9);
        a.jne(fail2);
        Out(a, Exit, 0);
        a.Label(ref fail1);
        Out(a, Exit, 1);
        a.Label(ref fail2);
        Out(a, Exit, 2);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// 64-bit: phase 1, then <see cref="CpuidIterations"/> CPUIDs in a four-instruction loop, then
    /// phase 2 and exit 0. The host reads the TSC at both phases (under Bochs it counts instructions).
    /// </summary>
    private static byte[] CpuidLoop64()
    {
        var strings = new Strings("cpuid benchmark guest\n");
        var a = new Assembler(64);
        var loop = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: true);
        Out(a, Phase, 1);
        a.mov(edi, CpuidIterations);
        a.Label(ref loop);
        a.mov(eax, 0);
        a.cpuid();                                          // clobbers eax, ebx, ecx, edx: keep the count in edi
        a.dec(edi);
        a.jnz(loop);
        Out(a, Phase, 2);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 64);
    }

    /// <summary>
    /// The image: header, then the guest's strings (so their addresses are known before the code is
    /// assembled: 32-bit code cannot address a label rip-relatively), then the code, which is the entry.
    /// </summary>
    private sealed class Strings
    {
        private readonly MemoryStream _data = new();
        private readonly string[] _texts;

        public Strings(params string[] texts)
        {
            _texts = texts;
            foreach (string t in texts)
            {
                _data.Write(System.Text.Encoding.ASCII.GetBytes(t));
                _data.WriteByte(0);
            }
            while (_data.Length % 16 != 0)
                _data.WriteByte(0);
        }

        public uint CodeOffset => HeaderSize + (uint)_data.Length;

        public uint Address(int index)
        {
            uint offset = HeaderSize;
            for (int i = 0; i < index; i++)
                offset += (uint)_texts[i].Length + 1;
            return (uint)LoadAddress + offset;
        }

        public byte[] Image(Assembler a, int mode) => Image(a, mode, default, out _);

        /// <summary>The image, and the guest addresses of two labels.</summary>
        public byte[] Image2(Assembler a, int mode, Label first, Label second, out ulong firstRip, out ulong secondRip)
        {
            var stream = new MemoryStream();
            stream.Write("TGST"u8);
            stream.Write(BitConverter.GetBytes((uint)mode));
            stream.Write(BitConverter.GetBytes(CodeOffset));
            stream.Write(BitConverter.GetBytes(0u));
            stream.Write(_data.ToArray());
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), LoadAddress + CodeOffset, BlockEncoderOptions.ReturnNewInstructionOffsets);
            firstRip = result.GetLabelRIP(first);
            secondRip = result.GetLabelRIP(second);
            return stream.ToArray();
        }

        /// <summary>The image, and the guest addresses of <paramref name="labels"/>, in their order.</summary>
        public byte[] ImageN(Assembler a, int mode, Label[] labels, out ulong[] rips)
        {
            var stream = new MemoryStream();
            stream.Write("TGST"u8);
            stream.Write(BitConverter.GetBytes((uint)mode));
            stream.Write(BitConverter.GetBytes(CodeOffset));
            stream.Write(BitConverter.GetBytes(0u));
            stream.Write(_data.ToArray());
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), LoadAddress + CodeOffset, BlockEncoderOptions.ReturnNewInstructionOffsets);
            rips = labels.Select(l => result.GetLabelRIP(l)).ToArray();
            return stream.ToArray();
        }

        /// <summary>The image, and the guest address of <paramref name="label"/> (when given).</summary>
        public byte[] Image(Assembler a, int mode, Label label, out ulong labelRip)
        {
            var stream = new MemoryStream();
            stream.Write("TGST"u8);
            stream.Write(BitConverter.GetBytes((uint)mode));
            stream.Write(BitConverter.GetBytes(CodeOffset));
            stream.Write(BitConverter.GetBytes(0u));
            stream.Write(_data.ToArray());
            AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), LoadAddress + CodeOffset, BlockEncoderOptions.ReturnNewInstructionOffsets);
            labelRip = label.IsEmpty ? 0 : result.GetLabelRIP(label);
            return stream.ToArray();
        }
    }

    /// <summary>Prints the NUL-terminated string at guest address <paramref name="text"/> on COM1.</summary>
    private static void Print(Assembler a, uint text, bool long64)
    {
        var loop = a.CreateLabel();
        var done = a.CreateLabel();
        a.mov(esi, text);                                   // zero-extends to rsi in 64-bit code
        a.mov(dx, Serial);
        a.Label(ref loop);
        if (long64)
            a.mov(al, __byte_ptr[rsi]);
        else
            a.mov(al, __byte_ptr[esi]);
        a.test(al, al);
        a.jz(done);
        a.@out(dx, al);
        if (long64)
            a.inc(rsi);
        else
            a.inc(esi);
        a.jmp(loop);
        a.Label(ref done);
    }

    /// <summary>32-bit: runs <paramref name="body"/> with edi = each dword's address over the range (ecx counts down).</summary>
    private static void ForEachDword(Assembler a, uint start, uint dwords, Action body)
    {
        var loop = a.CreateLabel();
        a.mov(edi, start);
        a.mov(ecx, dwords);
        a.Label(ref loop);
        body();
        a.add(edi, 4);
        a.dec(ecx);
        a.jnz(loop);
    }

    /// <summary>An assembly pass that places a handler at an address it learns only by assembling.</summary>
    private delegate byte[] HandlerPass(uint handlerAddress, out ulong handlerRip);

    /// <summary>
    /// Two passes: the gate needs the handler's address, known once the code is assembled; the
    /// second pass writes it (same instruction lengths, so the handler stays put, which is checked).
    /// </summary>
    private static byte[] TwoPass(string name, HandlerPass pass)
    {
        byte[] image = pass(0, out ulong handler);
        byte[] final = pass((uint)handler, out ulong again);
        if (again != handler || final.Length != image.Length)
            throw new InvalidOperationException(name + ": the handler moved between passes");
        return final;
    }

    /// <summary>
    /// The flat 32-bit code (0x08) and data (0x10) descriptors, written into the GDT the VMCS puts
    /// at base 0 (limit 0xFFFF), so IRET and gates can reload CS. Leaves ebx = 0 for <see cref="Gate"/>.
    /// </summary>
    private static void FlatDescriptors(Assembler a)
    {
        a.xor(ebx, ebx);
        a.mov(__dword_ptr[ebx + 0x08], 0x0000FFFF);
        a.mov(__dword_ptr[ebx + 0x0C], 0x00CF9A00);
        a.mov(__dword_ptr[ebx + 0x10], 0x0000FFFF);
        a.mov(__dword_ptr[ebx + 0x14], 0x00CF9200);
    }

    /// <summary>A 32-bit interrupt gate for <paramref name="vector"/> (IDTR base 0; ebx = 0 from <see cref="FlatDescriptors"/>).</summary>
    private static void Gate(Assembler a, int vector, uint handler)
    {
        a.mov(eax, handler);
        a.mov(__word_ptr[ebx + vector * 8], ax);
        a.mov(__word_ptr[ebx + vector * 8 + 2], 0x08);
        a.mov(__word_ptr[ebx + vector * 8 + 4], 0x8E00);
        a.shr(eax, 16);
        a.mov(__word_ptr[ebx + vector * 8 + 6], ax);
    }

    /// <summary>The 8259A pair initialised as Linux does (master vectors 0x20, slave 0x28, cascade on IRQ 2), then the masks.</summary>
    private static void PicInit(Assembler a, byte masterMask, byte slaveMask)
    {
        foreach ((ushort port, byte value) in new (ushort, byte)[]
        {
            (0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01),
            (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01),
            (0x21, masterMask), (0xA1, slaveMask),
        })
        {
            Out(a, port, value);
        }
    }

    /// <summary>
    /// The end of a checking guest that numbers its checks in <paramref name="check"/>: print
    /// <paramref name="ok"/> and exit 0, or at <paramref name="fail"/> print <paramref name="bad"/>
    /// and exit with the number of the check that failed.
    /// </summary>
    private static void NumberedVerdict(Assembler a, Label fail, Label halt, uint ok, uint bad, AssemblerRegister32 check, bool long64)
    {
        Print(a, ok, long64);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        a.Label(ref fail);
        Print(a, bad, long64);
        a.mov(eax, check);
        a.mov(dx, Exit);
        a.@out(dx, al);
        a.jmp(halt);
    }

    /// <summary>The end of a checking guest: print <paramref name="ok"/> and exit 0, or at <paramref name="mismatch"/> print <paramref name="bad"/> and exit 1.</summary>
    private static void Verdict(Assembler a, Label mismatch, uint ok, uint bad)
    {
        var halt = a.CreateLabel();
        Print(a, ok, long64: false);
        Out(a, Exit, 0);
        a.jmp(halt);
        a.Label(ref mismatch);
        Print(a, bad, long64: false);
        Out(a, Exit, 1);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
    }

    private static void Out(Assembler a, ushort port, byte value)
    {
        a.mov(dx, port);
        a.mov(al, value);
        a.@out(dx, al);
    }


    /// <summary>
    /// 32-bit protected mode: prints a greeting, executes CPUID and a port read, fills 64
    /// pages with an address-derived pattern, signals phase 1 (the host invalidates some of those
    /// pages), verifies every word and exits 0, or 1 on a mismatch.
    /// </summary>
    private static byte[] Hello32()
    {
        var strings = new Strings("hello from a 32-bit guest\n", "checksums verified\n", "CHECKSUM MISMATCH\n");
        uint greeting = strings.Address(0), ok = strings.Address(1), bad = strings.Address(2);
        var a = new Assembler(32);
        var mismatch = a.CreateLabel();

        Print(a, greeting, long64: false);
        a.xor(eax, eax);
        a.cpuid();                                          // CPUID exit
        a.mov(dx, SerialStatus);
        a.@in(al, dx);                                      // port read exit

        ForEachDword(a, ChecksumBase, ChecksumPages * 1024, () =>
        {
            a.imul(eax, edi, unchecked((int)0x9E3779B1));   // pattern = address * golden ratio
            a.mov(__dword_ptr[edi], eax);
        });

        Out(a, Phase, 1);                                   // host invalidates pages now

        ForEachDword(a, ChecksumBase, ChecksumPages * 1024, () =>
        {
            a.imul(eax, edi, unchecked((int)0x9E3779B1));
            a.cmp(__dword_ptr[edi], eax);
            a.jne(mismatch);
        });
        Verdict(a, mismatch, ok, bad);

        return strings.Image(a, 32);
    }

    /// <summary>
    /// 64-bit long mode: touches a cold set once (phase 1: the host clears young), touches a hot
    /// set (phase 2: the host tests young: hot young, cold old; then clears young again), touches
    /// the hot set again (phase 3: hot young again), then VMCALL, RDMSR, and exits 0.
    /// </summary>
    private static byte[] Aging64()
    {
        var strings = new Strings("hello from a 64-bit guest: aging hot and cold sets\n", "aging guest done\n");
        uint greeting = strings.Address(0), done = strings.Address(1);
        var a = new Assembler(64);
        var halt = a.CreateLabel();

        Print(a, greeting, long64: true);
        Touch(a, ColdBase, ColdPages, write: true);
        Out(a, Phase, 1);
        Touch(a, HotBase, HotPages, write: false);
        Out(a, Phase, 2);
        Touch(a, HotBase, HotPages, write: false);
        Out(a, Phase, 3);
        a.xor(eax, eax);
        a.vmcall();                                         // VMCALL exit (hypercall 0, ping)
        a.mov(ecx, 0x1A0u);
        a.rdmsr();                                          // RDMSR exit
        Print(a, done, long64: true);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);

        return strings.Image(a, 64);
    }

    /// <summary>One access per page over <paramref name="pages"/> pages from <paramref name="start"/>.</summary>
    private static void Touch(Assembler a, uint start, uint pages, bool write)
    {
        var loop = a.CreateLabel();
        a.mov(edi, start);
        a.mov(ecx, pages);
        a.Label(ref loop);
        if (write)
            a.mov(__dword_ptr[rdi], ecx);
        else
            a.mov(eax, __dword_ptr[rdi]);
        a.add(edi, 4096);
        a.dec(ecx);
        a.jnz(loop);
    }

    /// <summary>
    /// 32-bit: fills 16 pages with its VM id (ebx at entry), signals phase 1 (the host runs another
    /// VM that does the same with its own id), then checks that every word still holds its own id.
    /// </summary>
    private static byte[] Isolate32()
    {
        var strings = new Strings("isolation guest writing its id\n", "my memory holds only my id\n", "ISOLATION BROKEN: foreign data in my memory\n");
        uint greeting = strings.Address(0), ok = strings.Address(1), bad = strings.Address(2);
        var a = new Assembler(32);
        var mismatch = a.CreateLabel();

        a.mov(ebp, ebx);                                    // keep the id: Print uses esi/eax/edx only
        Print(a, greeting, long64: false);
        ForEachDword(a, IsolationBase, IsolationPages * 1024, () => a.mov(__dword_ptr[edi], ebp));
        Out(a, Phase, 1);
        ForEachDword(a, IsolationBase, IsolationPages * 1024, () =>
        {
            a.cmp(__dword_ptr[edi], ebp);
            a.jne(mismatch);
        });
        Verdict(a, mismatch, ok, bad);

        return strings.Image(a, 32);
    }
}
