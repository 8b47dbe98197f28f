using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

/// <summary>
/// The guest fuzzer's kit (issue 13 §1, docs/fuzzing.md): the boot module <c>fuzzkit</c>. Iced
/// assembles, once, at build time, a small 32-bit runtime and a catalogue of code fragments, each
/// with the places where a value goes (a port, an MSR, a guest-physical address, a CR0 value...).
/// The kernel's composer (kvm/Fuzz/FuzzProgram.cs) turns a seed into a guest: it picks fragments
/// by weight with a seeded generator and fills each place with a value of its kind, so any seed
/// replays, on the host tests' composer and in the kernel alike.
/// </summary>
/// <remarks>
/// Module layout (little endian): "TFZK", version, runtime offset and length, fragment count,
/// table offset, then the step and resume addresses, the stack top and the scratch RAM start.
/// Table entries are 16 bytes: kind, weight (u16 each), code offset (u32), code length, patch
/// count (u16 each), first patch (u32 index into the patch array). The patch array follows the
/// table: 4 bytes each: offset in the fragment (u16), patch kind (u8), size in bytes (u8).
/// The runtime is a complete flat image ("TGST", 32-bit) whose code ends where the program
/// begins: the composer appends the program right after it.
/// </remarks>
public static class FuzzKit
{
    internal const uint Magic = 0x4B5A_4654;        // "TFZK"
    internal const uint Version = 1;
    internal const int HeaderSize = 40, EntrySize = 16, PatchSize = 4;

    /// <summary>Guest addresses the runtime and the composer agree on (all below the image at 1 MiB).</summary>
    internal const uint StepAddress = 0x8000, ResumeAddress = 0x8004, FaultCount = 0x8008, StackTop = 0x7000;
    internal const uint GdtBase = 0xA000, GdtrAddress = 0xA100, IdtBase = 0x9000, IdtrAddress = 0xA110, TssBase = 0xB000;
    internal const uint IoBuffer = 0x2_0000, DescriptorScratch = 0x2_1000, ScratchRam = 0x40_0000;

    /// <summary>What the composer writes into a patch (kvm/Fuzz/FuzzPatch.cs has the same numbers).</summary>
    internal enum Patch : byte
    {
        Any = 0, Boundary, Port, Msr, Leaf, Small, Gpa, Vector, Count, Cr0, Cr4, Selector, ApicAddress, Icr, Xcr0, DeviceGpa,
    }

    /// <summary>Fragment kinds, for the statistics (kvm/Fuzz/FuzzProgram.cs names them).</summary>
    internal enum Kind : ushort
    {
        PortIo = 0, StringIo, Msr, Cpuid, ControlRegister, CacheAndVmx, Memory, Exception, Descriptor, Interrupt, ModeSwitch, Alu,
    }

    private sealed record Fragment(Kind Kind, ushort Weight, byte[] Code, List<(ushort Offset, Patch Kind, byte Size)> Patches);

    /// <summary>The module's bytes (layout in the remarks above).</summary>
    public static byte[] Build()
    {
        byte[] runtime = TwoPassRuntime();
        List<Fragment> fragments = Fragments();
        var table = new MemoryStream();
        var patches = new MemoryStream();
        var code = new MemoryStream();
        int tableOffset = HeaderSize;
        int patchOffset = tableOffset + fragments.Count * EntrySize;
        int patchTotal = fragments.Sum(f => f.Patches.Count);
        int codeOffset = patchOffset + patchTotal * PatchSize;
        int runtimeOffset = codeOffset;
        code.Write(runtime);
        int patchIndex = 0;
        foreach (Fragment f in fragments)
        {
            var w = new BinaryWriter(table);
            w.Write((ushort)f.Kind);
            w.Write(f.Weight);
            w.Write((uint)(codeOffset + code.Length));
            w.Write((ushort)f.Code.Length);
            w.Write((ushort)f.Patches.Count);
            w.Write((uint)patchIndex);
            code.Write(f.Code);
            var p = new BinaryWriter(patches);
            foreach (var (offset, kind, size) in f.Patches)
            {
                p.Write(offset);
                p.Write((byte)kind);
                p.Write(size);
            }
            patchIndex += f.Patches.Count;
        }
        var image = new MemoryStream();
        var h = new BinaryWriter(image);
        h.Write(Magic);
        h.Write(Version);
        h.Write((uint)runtimeOffset);
        h.Write((uint)runtime.Length);
        h.Write((uint)fragments.Count);
        h.Write((uint)tableOffset);
        h.Write(StepAddress);
        h.Write(ResumeAddress);
        h.Write(StackTop);
        h.Write(ScratchRam);
        image.Write(table.ToArray());
        image.Write(patches.ToArray());
        image.Write(code.ToArray());
        return image.ToArray();
    }

    // --- the runtime ------------------------------------------------------------------------------

    private static byte[] TwoPassRuntime()
    {
        byte[] first = Runtime(0, out ulong handler);
        byte[] final = Runtime((uint)handler, out ulong again);
        if (again != handler || final.Length != first.Length)
            throw new InvalidOperationException("fuzzkit: the handler moved between passes");
        return final;
    }

    /// <summary>
    /// 32-bit, loaded at 1 MiB: its own GDT (flat code 0x08, data 0x10, a TSS at 0x18) and an IDT
    /// whose 256 gates all go to one handler, a stack, then the program. The handler makes any
    /// exception or interrupt harmless: it reloads the data segments and the stack, sends EOI to
    /// the local APIC and both 8259s, counts, and jumps to the next step (the address the step's
    /// prologue put at <see cref="ResumeAddress"/>).
    /// </summary>
    private static byte[] Runtime(uint handlerAddress, out ulong handlerRip)
    {
        var a = new Assembler(32);
        var handler = a.CreateLabel();
        var gates = a.CreateLabel();
        var program = a.CreateLabel();
        a.cli();
        a.xor(ebx, ebx);
        a.mov(__dword_ptr[ebx + (int)GdtBase], 0);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 4], 0);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x08], 0x0000FFFF);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x0C], 0x00CF9A00);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x10], 0x0000FFFF);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x14], 0x00CF9200);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x18], (TssBase << 16) | 0x67);
        a.mov(__dword_ptr[ebx + (int)GdtBase + 0x1C], 0x0000_8900);
        a.mov(__word_ptr[ebx + (int)GdtrAddress], 0x1F);
        a.mov(__dword_ptr[ebx + (int)GdtrAddress + 2], GdtBase);
        a.lgdt(__[ebx + (int)GdtrAddress]);
        a.mov(ax, 0x10);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        a.mov(ss, ax);
        a.mov(esp, StackTop);
        a.mov(edi, IdtBase);
        a.mov(ecx, 256);
        a.Label(ref gates);
        a.mov(eax, handlerAddress);
        a.mov(__word_ptr[edi], ax);
        a.mov(__word_ptr[edi + 2], 0x08);
        a.mov(__word_ptr[edi + 4], 0x8E00);
        a.shr(eax, 16);
        a.mov(__word_ptr[edi + 6], ax);
        a.add(edi, 8);
        a.dec(ecx);
        a.jnz(gates);
        a.mov(__word_ptr[ebx + (int)IdtrAddress], 256 * 8 - 1);
        a.mov(__dword_ptr[ebx + (int)IdtrAddress + 2], IdtBase);
        a.lidt(__[ebx + (int)IdtrAddress]);
        a.mov(__dword_ptr[ebx + (int)FaultCount], 0);
        a.jmp(program);

        a.Label(ref handler);
        a.mov(ax, 0x10);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(esp, StackTop);
        a.xor(ebx, ebx);
        a.inc(__dword_ptr[ebx + (int)FaultCount]);
        a.mov(__dword_ptr[ebx + unchecked((int)0xFEE0_00B0)], 0);   // local APIC EOI
        a.mov(al, 0x20);
        a.@out(0xA0, al);
        a.@out(0x20, al);
        a.jmp(__dword_ptr[ebx + (int)ResumeAddress]);
        a.Label(ref program);
        a.nop();                                            // the program follows this byte
        var stream = new MemoryStream();
        stream.Write("TGST"u8);
        stream.Write(BitConverter.GetBytes(32u));
        stream.Write(BitConverter.GetBytes(16u));           // code right after this header
        stream.Write(BitConverter.GetBytes(0u));
        AssemblerResult result = a.Assemble(new StreamCodeWriter(stream), ImageBase + 16, BlockEncoderOptions.ReturnNewInstructionOffsets);
        handlerRip = result.GetLabelRIP(handler);
        if (result.GetLabelRIP(program) + 1 != ImageBase + (ulong)stream.Length)
            throw new InvalidOperationException("fuzzkit: the runtime's code does not end where the program begins");
        return stream.ToArray();
    }

    /// <summary>Where the flat loader puts the image (kvm/Boot/FlatLoader.cs).</summary>
    internal const uint ImageBase = 0x10_0000;

    // --- the fragments ----------------------------------------------------------------------------

    /// <summary>Builds one fragment: <paramref name="body"/> asks for a placeholder per patch.</summary>
    private static Fragment F(Kind kind, ushort weight, Action<Assembler, Func<Patch, uint>> body)
    {
        var a = new Assembler(32);
        var wanted = new List<(uint Placeholder, Patch Kind)>();
        uint Next(Patch p)
        {
            uint placeholder = 0x7E5A_0000u + (uint)wanted.Count * 0x0101u + 0x11u;
            wanted.Add((placeholder, p));
            return placeholder;
        }
        body(a, Next);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), 0);
        byte[] code = stream.ToArray();
        var patches = new List<(ushort, Patch, byte)>();
        foreach (var (placeholder, p) in wanted)
        {
            byte[] needle = BitConverter.GetBytes(placeholder);
            int at = -1, found = 0;
            for (int i = 0; i + 4 <= code.Length; i++)
            {
                if (code.AsSpan(i, 4).SequenceEqual(needle))
                {
                    at = i;
                    found++;
                }
            }
            if (found != 1)
                throw new InvalidOperationException($"fuzzkit: a {kind} fragment's {p} placeholder occurs {found} times");
            patches.Add(((ushort)at, p, 4));
        }
        return new Fragment(kind, weight, code, patches);
    }

    /// <summary>A fragment of fixed bytes with one 1-byte patch at <paramref name="patchAt"/>.</summary>
    private static Fragment Raw(Kind kind, int weight, byte[] code, int patchAt, Patch patch) =>
        new(kind, (ushort)weight, code, [((ushort)patchAt, patch, 1)]);

    private static List<Fragment> Fragments()
    {
        var list = new List<Fragment>();
        // Weights: a fragment that ends its VM (HLT with nothing to wake it, a task switch, a jump
        // into the void, long mode without page tables) gets 1; every other one Scale times its
        // weight here, so a guest lives for hundreds of steps.
        const int Scale = 16;
        void Add(Kind kind, ushort weight, Action<Assembler, Func<Patch, uint>> body) => list.Add(F(kind, (ushort)(weight * Scale), body));
        void Ender(Kind kind, Action<Assembler, Func<Patch, uint>> body) => list.Add(F(kind, 1, body));

        // Port I/O in every width, and the string forms with and without REP, both directions.
        Add(Kind.PortIo, 8, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(eax, p(Patch.Any)); a.@out(dx, al); });
        Add(Kind.PortIo, 6, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(eax, p(Patch.Any)); a.@out(dx, ax); });
        Add(Kind.PortIo, 6, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(eax, p(Patch.Any)); a.@out(dx, eax); });
        Add(Kind.PortIo, 8, (a, p) => { a.mov(edx, p(Patch.Port)); a.@in(al, dx); });
        Add(Kind.PortIo, 6, (a, p) => { a.mov(edx, p(Patch.Port)); a.@in(ax, dx); });
        Add(Kind.PortIo, 6, (a, p) => { a.mov(edx, p(Patch.Port)); a.@in(eax, dx); });
        Add(Kind.StringIo, 3, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(edi, IoBuffer); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.insb(); });
        Add(Kind.StringIo, 3, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(edi, IoBuffer + 0x100); a.mov(ecx, p(Patch.Count)); a.std(); a.rep.insd(); a.cld(); });
        Add(Kind.StringIo, 3, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(esi, IoBuffer); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.outsb(); });
        Add(Kind.StringIo, 3, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(esi, IoBuffer); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.outsw(); });
        Add(Kind.StringIo, 2, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(edi, IoBuffer); a.insw(); a.mov(esi, IoBuffer); a.outsd(); });
        Add(Kind.StringIo, 1, (a, p) => { a.mov(edx, p(Patch.Port)); a.mov(edi, p(Patch.Gpa)); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.insb(); });

        // MSRs: random and boundary numbers and values; EFER with any bits.
        Add(Kind.Msr, 8, (a, p) => { a.mov(ecx, p(Patch.Msr)); a.rdmsr(); });
        Add(Kind.Msr, 8, (a, p) => { a.mov(ecx, p(Patch.Msr)); a.mov(eax, p(Patch.Boundary)); a.mov(edx, p(Patch.Boundary)); a.wrmsr(); });
        Add(Kind.Msr, 2, (a, p) => { a.mov(ecx, 0xC000_0080); a.mov(eax, p(Patch.Any)); a.xor(edx, edx); a.wrmsr(); });
        Add(Kind.Msr, 2, (a, p) => { a.mov(ecx, p(Patch.Msr)); a.rdmsr(); a.wrmsr(); });

        // CPUID of random leaves and subleaves.
        Add(Kind.Cpuid, 8, (a, p) => { a.mov(eax, p(Patch.Leaf)); a.mov(ecx, p(Patch.Small)); a.cpuid(); });

        // Control and debug registers with bad bit combinations; XSETBV.
        Add(Kind.ControlRegister, 2, (a, p) => { a.mov(eax, p(Patch.Cr0)); a.mov(cr0, eax); });
        Add(Kind.ControlRegister, 3, (a, p) => { a.mov(eax, p(Patch.Cr4)); a.mov(cr4, eax); });
        Add(Kind.ControlRegister, 2, (a, p) => { a.mov(eax, p(Patch.Any)); a.mov(cr3, eax); });
        Add(Kind.ControlRegister, 2, (a, p) => { a.mov(eax, cr0); a.mov(ebx, cr3); a.mov(ecx, cr4); a.mov(edx, cr2); });
        Add(Kind.ControlRegister, 3, (a, p) => { a.mov(eax, p(Patch.Any)); a.mov(dr7, eax); });
        Add(Kind.ControlRegister, 2, (a, p) => { a.mov(eax, p(Patch.Any)); a.mov(dr0, eax); a.mov(dr3, eax); a.mov(ebx, dr6); });
        Add(Kind.ControlRegister, 3, (a, p) => { a.mov(ecx, p(Patch.Small)); a.mov(eax, p(Patch.Xcr0)); a.xor(edx, edx); a.xsetbv(); });
        Add(Kind.ControlRegister, 1, (a, p) => { a.xor(ecx, ecx); a.xgetbv(); });
        Add(Kind.ControlRegister, 1, (a, p) => { a.mov(eax, p(Patch.Any)); a.lmsw(ax); a.clts(); });

        // Caches, hypercalls, and every VMX instruction (the guest has no VMX: each must #UD).
        Add(Kind.CacheAndVmx, 2, (a, p) => a.invd());
        Add(Kind.CacheAndVmx, 2, (a, p) => a.wbinvd());
        Add(Kind.CacheAndVmx, 6, (a, p) => { a.mov(eax, p(Patch.Small)); a.mov(ebx, p(Patch.Any)); a.mov(ecx, p(Patch.Any)); a.mov(edx, p(Patch.Any)); a.vmcall(); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.vmxon(__qword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => a.vmxoff());
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.vmclear(__qword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.vmptrld(__qword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.vmptrst(__qword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(ecx, p(Patch.Any)); a.vmread(eax, ecx); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(ecx, p(Patch.Any)); a.vmwrite(ecx, eax); });
        Add(Kind.CacheAndVmx, 1, (a, p) => a.vmlaunch());
        Add(Kind.CacheAndVmx, 1, (a, p) => a.vmresume());
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.mov(eax, 1); a.invept(eax, __xmmword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(edi, IoBuffer); a.mov(eax, 1); a.invvpid(eax, __xmmword_ptr[edi]); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.xor(eax, eax); a.vmfunc(); });
        Add(Kind.CacheAndVmx, 1, (a, p) => a.getsec());
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.mov(eax, IoBuffer); a.xor(ecx, ecx); a.xor(edx, edx); a.monitor(); });
        Add(Kind.CacheAndVmx, 1, (a, p) => { a.xor(eax, eax); a.xor(ecx, ecx); a.mwait(); });
        Add(Kind.CacheAndVmx, 2, (a, p) => { a.mov(ecx, p(Patch.Small)); a.rdpmc(); });
        Add(Kind.CacheAndVmx, 2, (a, p) => { a.rdtsc(); a.rdtscp(); });
        Add(Kind.CacheAndVmx, 2, (a, p) =>
        {
            var spin = a.CreateLabel();
            a.mov(ecx, p(Patch.Count));
            a.inc(ecx);
            a.Label(ref spin);
            a.pause();
            a.dec(ecx);
            a.jnz(spin);
        });

        // Loads and stores: scratch RAM, device pages, outside RAM, page boundaries; odd widths.
        // The forms Tandem's MMIO emulation decodes aim at device pages most of the time
        // (DeviceGpa); the others mostly at RAM (Gpa), now and then at a device page, where the
        // VM stops with a dump (a refused MMIO instruction).
        Add(Kind.Memory, 4, (a, p) => { a.mov(eax, p(Patch.DeviceGpa)); a.mov(__dword_ptr[eax], p(Patch.Any)); });
        Add(Kind.Memory, 3, (a, p) => { a.mov(eax, p(Patch.DeviceGpa)); a.mov(ebx, p(Patch.Any)); a.mov(__word_ptr[eax], bx); });
        Add(Kind.Memory, 3, (a, p) => { a.mov(eax, p(Patch.DeviceGpa)); a.mov(ebx, p(Patch.Any)); a.mov(__byte_ptr[eax], bl); });
        Add(Kind.Memory, 4, (a, p) => { a.mov(eax, p(Patch.DeviceGpa)); a.mov(ebx, __dword_ptr[eax]); });
        Add(Kind.Memory, 2, (a, p) => { a.mov(eax, p(Patch.DeviceGpa)); a.movzx(ebx, __word_ptr[eax]); a.movsx(ecx, __byte_ptr[eax + 1]); });
        Add(Kind.Memory, 6, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(__dword_ptr[eax], p(Patch.Any)); });
        Add(Kind.Memory, 4, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(ebx, p(Patch.Any)); a.mov(__word_ptr[eax], bx); });
        Add(Kind.Memory, 4, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(ebx, p(Patch.Any)); a.mov(__byte_ptr[eax], bl); });
        Add(Kind.Memory, 6, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(ebx, __dword_ptr[eax]); });
        Add(Kind.Memory, 3, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.movzx(ebx, __word_ptr[eax]); a.movsx(ecx, __byte_ptr[eax + 1]); });
        Add(Kind.Memory, 3, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(ebx, p(Patch.Any)); a.@lock.xadd(__dword_ptr[eax], ebx); });
        Add(Kind.Memory, 3, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.mov(ebx, p(Patch.Any)); a.xchg(__dword_ptr[eax], ebx); });
        Add(Kind.Memory, 2, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.or(__dword_ptr[eax], p(Patch.Any)); a.add(__byte_ptr[eax + 3], 7); });
        Add(Kind.Memory, 2, (a, p) => { a.mov(edi, p(Patch.Gpa)); a.mov(eax, p(Patch.Any)); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.stosd(); });
        Add(Kind.Memory, 2, (a, p) => { a.mov(esi, p(Patch.Gpa)); a.mov(edi, ScratchRam); a.mov(ecx, p(Patch.Count)); a.cld(); a.rep.movsb(); });
        Add(Kind.Memory, 1, (a, p) => { a.mov(esi, p(Patch.Gpa)); a.mov(edi, p(Patch.Gpa)); a.mov(ecx, p(Patch.Count)); a.std(); a.rep.movsw(); a.cld(); });
        Add(Kind.Memory, 1, (a, p) => { a.mov(edi, p(Patch.Gpa)); a.cmpxchg8b(__qword_ptr[edi]); });
        Add(Kind.Memory, 1, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.movq(xmm0, __qword_ptr[eax]); });
        Add(Kind.Memory, 1, (a, p) => { a.mov(eax, p(Patch.Gpa)); a.push(__dword_ptr[eax]); a.pop(ebx); });

        // Exceptions at every vector, faulting segment loads, and a task switch.
        Add(Kind.Exception, 1, (a, p) => a.ud2());
        Add(Kind.Exception, 1, (a, p) => { a.xor(ecx, ecx); a.div(ecx); });
        Add(Kind.Exception, 1, (a, p) => a.int3());
        Add(Kind.Exception, 1, (a, p) => { a.mov(al, 0x7F); a.add(al, 1); a.into(); });
        Add(Kind.Exception, 1, (a, p) => { a.mov(eax, 0x7FFF_FFFF); a.mov(edi, IoBuffer); a.bound(eax, __qword_ptr[edi]); });
        Add(Kind.Exception, 2, (a, p) => { a.mov(eax, p(Patch.Selector)); a.mov(ds, ax); });
        Add(Kind.Exception, 2, (a, p) => { a.mov(eax, p(Patch.Selector)); a.mov(es, ax); a.mov(fs, ax); a.mov(gs, ax); });
        Ender(Kind.Exception, (a, p) => { a.mov(eax, p(Patch.Selector)); a.mov(ss, ax); });
        Add(Kind.Exception, 1, (a, p) => { a.mov(eax, p(Patch.Selector)); a.lldt(ax); });
        Add(Kind.Exception, 1, (a, p) => { a.mov(eax, p(Patch.Selector)); a.ltr(ax); });
        Ender(Kind.Exception, (a, p) => { a.mov(eax, p(Patch.Selector)); a.push(eax); a.push(0); a.retf(); });
        Ender(Kind.Exception, (a, p) => { a.mov(eax, 0xFFFF_FFF0); a.jmp(eax); });
        list.Add(Raw(Kind.Exception, 6 * Scale, [0xCD, 0x00], 1, Patch.Vector));                 // int n
        list.Add(new Fragment(Kind.Exception, 1, [0xEA, 0, 0, 0, 0, 0x18, 0], []));        // jmp far 0x18:0 (the TSS: a task switch; ends the VM)

        // Descriptor tables: read back and reload (harmless), or reload from random bytes (rare).
        Add(Kind.Descriptor, 2, (a, p) => { a.mov(edi, DescriptorScratch); a.sidt(__[edi]); a.lidt(__[edi]); a.sgdt(__[edi + 16]); a.lgdt(__[edi + 16]); });
        Add(Kind.Descriptor, 1, (a, p) => { a.str(eax); a.sldt(ebx); a.smsw(ecx); });
        Ender(Kind.Descriptor, (a, p) => { a.mov(edi, DescriptorScratch + 32); a.mov(__dword_ptr[edi], p(Patch.Any)); a.mov(__dword_ptr[edi + 2], p(Patch.Any)); a.lidt(__[edi]); });

        // Interrupts: local APIC registers, self-IPIs, INIT/SIPI to itself, the I/O APIC, and
        // windows with interrupts on; HLT with interrupts on and off.
        Add(Kind.Interrupt, 4, (a, p) => { a.mov(eax, p(Patch.ApicAddress)); a.mov(__dword_ptr[eax], p(Patch.Any)); });
        Add(Kind.Interrupt, 4, (a, p) => { a.mov(eax, p(Patch.ApicAddress)); a.mov(ebx, __dword_ptr[eax]); });
        Add(Kind.Interrupt, 3, (a, p) => { a.xor(ebx, ebx); a.mov(__dword_ptr[ebx + unchecked((int)0xFEE0_0310)], 0); a.mov(__dword_ptr[ebx + unchecked((int)0xFEE0_0300)], p(Patch.Icr)); });
        Add(Kind.Interrupt, 2, (a, p) => { a.xor(ebx, ebx); a.mov(__dword_ptr[ebx + unchecked((int)0xFEC0_0000)], p(Patch.Small)); a.mov(__dword_ptr[ebx + unchecked((int)0xFEC0_0010)], p(Patch.Any)); });
        Add(Kind.Interrupt, 3, (a, p) =>
        {
            var spin = a.CreateLabel();
            a.mov(ecx, p(Patch.Count));
            a.inc(ecx);
            a.sti();
            a.Label(ref spin);
            a.pause();
            a.dec(ecx);
            a.jnz(spin);
            a.cli();
        });
        Ender(Kind.Interrupt, (a, p) => { a.sti(); a.hlt(); a.cli(); });
        Ender(Kind.Interrupt, (a, p) => { a.cli(); a.hlt(); });

        // Mode switches: leave protected mode, or ask for long mode without page tables (rare).
        Ender(Kind.ModeSwitch, (a, p) => { a.mov(eax, cr0); a.and(eax, ~1); a.mov(cr0, eax); });
        Ender(Kind.ModeSwitch, (a, p) => { a.mov(ecx, 0xC000_0080); a.rdmsr(); a.or(eax, 0x100); a.wrmsr(); a.mov(eax, cr4); a.or(eax, 0x20); a.mov(cr4, eax); a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax); });

        // Random valid instruction streams: register-only arithmetic (never ESP), fixed seed.
        var random = new Random(0x7A4D);
        for (int i = 0; i < 16; i++)
            list.Add(F(Kind.Alu, 2, (a, p) => RandomAlu(a, random)));
        return list;
    }

    private static readonly AssemblerRegister32[] AluRegisters = [eax, ebx, ecx, edx, esi, edi, ebp];

    private static void RandomAlu(Assembler a, Random random)
    {
        int count = 4 + random.Next(9);
        for (int i = 0; i < count; i++)
        {
            AssemblerRegister32 d = AluRegisters[random.Next(AluRegisters.Length)];
            AssemblerRegister32 s = AluRegisters[random.Next(AluRegisters.Length)];
            int imm = random.Next();
            switch (random.Next(16))
            {
                case 0: a.add(d, s); break;
                case 1: a.sub(d, imm); break;
                case 2: a.xor(d, s); break;
                case 3: a.imul(d, s, imm); break;
                case 4: a.shl(d, (byte)(imm & 31)); break;
                case 5: a.rol(d, (byte)(imm & 31)); break;
                case 6: a.bswap(d); break;
                case 7: a.lea(d, __[s + d * 4 + imm]); break;
                case 8: a.cmovne(d, s); break;
                case 9: a.adc(d, s); break;
                case 10: a.sbb(d, imm); break;
                case 11: a.bt(d, s); break;
                case 12: a.neg(d); break;
                case 13: a.not(d); break;
                case 14: a.popcnt(d, s); break;
                default: a.mov(d, imm); break;
            }
        }
    }
}
