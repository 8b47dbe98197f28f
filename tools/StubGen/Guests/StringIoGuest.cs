using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>Where strio32 puts what it reads with INS.</summary>
    public const uint StrioBuffer = 0x7000;

    /// <summary>
    /// 32-bit: string port I/O. 1: <c>rep outsb</c> prints a line on COM1 (the host console shows it)
    /// and leaves ESI past it and ECX 0; 2: <c>rep insb</c> reads fw_cfg's signature (key 0) into
    /// <see cref="StrioBuffer"/>: "QEMU"; 3: <c>insw</c> with DF set reads fw_cfg's ID (key 1, 4
    /// bytes) downward, as two words at buffer+6 and buffer+4, leaves EDI at buffer+2, and the words
    /// agree with an IN EAX of the same (big-endian composition, as QEMU's data port); 4:
    /// <c>rep outsb</c> and <c>outsb</c> with an FS override send "ok\n" to COM1. Exits with
    /// the number of the first check that failed, or 0.
    /// </summary>
    private static byte[] StringIo32()
    {
        const string line = "strio guest: this line went out by rep outsb\n";
        var strings = new Strings("strio guest: INS and OUTS against COM1 and fw_cfg\n", "strio guest: every check passed\n", "STRIO CHECK FAILED\n", line, "ok\n\0");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);                                    // the GDT's 0x10, for FS below
        a.mov(ebp, 0);
        a.cld();
        // 1: rep outsb of the line to COM1
        a.inc(ebp);
        a.mov(esi, strings.Address(3));
        a.mov(ecx, line.Length);
        a.mov(dx, Serial);
        a.rep.outsb();
        a.test(ecx, ecx);
        a.jnz(fail);
        a.cmp(esi, strings.Address(3) + (uint)line.Length);
        a.jne(fail);
        // 2: rep insb of fw_cfg's signature
        a.inc(ebp);
        a.mov(dx, FwCfgSelector);
        a.xor(eax, eax);
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.mov(edi, StrioBuffer);
        a.mov(ecx, 4);
        a.rep.insb();
        a.cmp(__dword_ptr[StrioBuffer], 0x554D_4551);        // "QEMU"
        a.jne(fail);
        a.cmp(edi, StrioBuffer + 4);
        a.jne(fail);
        // 3: insw twice with DF set: fw_cfg's ID (a u32, little-endian) lands as words at +6, +4
        a.inc(ebp);
        a.mov(dx, FwCfgSelector);
        a.mov(eax, 1);
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.mov(edi, StrioBuffer + 6);
        a.std();
        a.insw();
        a.insw();
        a.cld();
        a.cmp(edi, StrioBuffer + 2);
        a.jne(fail);
        // fw_cfg composes a wide read of its data port big-endian (as QEMU does): IN EAX is the
        // first word's value in the high half, the second's in the low half.
        a.xor(ebx, ebx);
        a.mov(bx, __word_ptr[StrioBuffer + 6]);
        a.shl(ebx, 16);
        a.mov(bx, __word_ptr[StrioBuffer + 4]);
        a.mov(dx, FwCfgSelector);
        a.mov(eax, 1);
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.@in(eax, dx);                                        // the ID again, by IN, as a dword
        a.cmp(eax, ebx);
        a.jne(fail);
        // 4: rep outsb through FS (base 0: the flat data selector), then outsb
        a.inc(ebp);
        a.mov(ax, 0x10);
        a.mov(fs, ax);
        a.mov(esi, strings.Address(4));
        a.mov(ecx, 2);
        a.mov(dx, Serial);
        a.db(0x64, 0xF3, 0x6E);                                // fs rep outsb (Iced has no override form for it)
        a.db(0x64, 0x6E);                                      // fs outsb
        a.cmp(esi, strings.Address(4) + 3);
        a.jne(fail);
        a.test(ecx, ecx);
        a.jnz(fail);
        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);
        return strings.Image(a, 32);
    }

    /// <summary>32-bit: prints <c>reset guest: booted</c> and resets its machine through the i8042 (0xFE to port 0x64): with <c>reset=restart</c> the VM starts again.</summary>
    private static byte[] Reset32()
    {
        var strings = new Strings("reset guest: booted, resetting through the i8042\n", "RESET DID NOT HAPPEN\n");
        var a = new Assembler(32);
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        Out(a, 0x64, 0xFE);
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 1);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }

    /// <summary>ksm32's pages: <see cref="KsmPages"/> from <see cref="KsmBase"/>.</summary>
    public const uint KsmBase = 0x20_0000, KsmPages = 256;

    /// <summary>
    /// 32-bit, for page merging across VMs: fills <see cref="KsmPages"/> pages the same way in every
    /// VM (dword k of page p is <c>p * 0x01000193 + k + 1</c>: no two pages alike, no zero page),
    /// signals phase 1 (the host merges), then writes its VM id (ebx at entry) into dword 0 of every
    /// page (a copy-on-write break each) and checks every page: its id at dword 0, the pattern in
    /// the rest. Exits 0, or 1 at the first wrong word.
    /// </summary>
    private static byte[] Ksm32()
    {
        var strings = new Strings("ksm guest: 1 MiB of pages like the other VM's, then a write to each\n", "ksm guest: every page holds my id and the pattern\n", "KSM CHECK FAILED\n");
        var a = new Assembler(32);
        var mismatch = a.CreateLabel();
        a.mov(ebp, ebx);                                      // the VM id: Print uses esi, eax, edx
        Print(a, strings.Address(0), long64: false);
        // eax = the pattern at edi: ((edi - base) >> 12) * 0x01000193 + ((edi & 0xFFF) >> 2) + 1
        void Pattern()
        {
            a.mov(eax, edi);
            a.sub(eax, KsmBase);
            a.shr(eax, 12);
            a.imul(eax, eax, 0x0100_0193);
            a.mov(edx, edi);
            a.and(edx, 0xFFF);
            a.shr(edx, 2);
            a.lea(eax, __[eax + edx + 1]);
        }
        ForEachDword(a, KsmBase, KsmPages * 1024, () =>
        {
            Pattern();
            a.mov(__dword_ptr[edi], eax);
        });
        Out(a, Phase, 1);
        var write = a.CreateLabel();
        a.mov(edi, KsmBase);
        a.Label(ref write);
        a.mov(__dword_ptr[edi], ebp);
        a.add(edi, 4096);
        a.cmp(edi, KsmBase + KsmPages * 4096);
        a.jb(write);
        ForEachDword(a, KsmBase, KsmPages * 1024, () =>
        {
            var pattern = a.CreateLabel();
            var next = a.CreateLabel();
            a.test(edi, 0xFFF);
            a.jnz(pattern);
            a.cmp(__dword_ptr[edi], ebp);
            a.jne(mismatch);
            a.jmp(next);
            a.Label(ref pattern);
            Pattern();
            a.cmp(__dword_ptr[edi], eax);
            a.jne(mismatch);
            a.Label(ref next);
        });
        Verdict(a, mismatch, strings.Address(1), strings.Address(2));
        return strings.Image(a, 32);
    }
}
