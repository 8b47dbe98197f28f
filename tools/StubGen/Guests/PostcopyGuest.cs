using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>postcopy32's data: <see cref="PostcopyPages"/> pages from <see cref="PostcopyBase"/>, rewritten <see cref="PostcopyRounds"/> times.</summary>
    public const uint PostcopyBase = 0x20_0000, PostcopyPages = 512, PostcopyRounds = 6;

    /// <summary>
    /// 32-bit, paging off, for the postcopy move (the host moves it to another VM while it runs).
    /// Round 0 fills the data with v(a, 0), where v(a, r) = a * 0x9E3779B1 + r * 0x01000193 for
    /// the dword at address a; phase 1 then. Each round r = 1 to <see cref="PostcopyRounds"/>
    /// checks every dword holds v(a, r - 1) and writes v(a, r), so wherever the move catches it,
    /// half of the data is one round ahead and the registers say where the boundary is. State
    /// elsewhere moves too, and is checked: each round ends by checking that the UART's scratch
    /// register (a device) holds 0x80 + the last round's number (never its power-on 0), then
    /// writes its own; xmm0 (the
    /// x87/SSE area) counts the dwords rewritten and must end at rounds × dwords. Exits 0, or 1
    /// at the first wrong dword, 2 for a wrong scratch register, 3 for a wrong count.
    /// </summary>
    private static byte[] Postcopy32()
    {
        var strings = new Strings("postcopy guest: filling, then rewriting every dword 6 times\n",
            "postcopy guest: every dword right after 6 rounds, device and SSE state too\n",
            "POSTCOPY DATA MISMATCH\n", "POSTCOPY DEVICE STATE WRONG\n", "POSTCOPY SSE STATE WRONG\n");
        var a = new Assembler(32);
        var round = a.CreateLabel();
        var mismatch = a.CreateLabel();
        var device = a.CreateLabel();
        var sse = a.CreateLabel();
        var halt = a.CreateLabel();
        const ushort scratch = Serial + 7;
        const int golden = unchecked((int)0x9E3779B1);
        const int step = 0x01000193;
        Print(a, strings.Address(0), long64: false);
        // SSE on: CR4.OSFXSR and OSXMMEXCPT, CR0.EM clear and MP set.
        a.mov(eax, cr4);
        a.or(eax, 0x600);
        a.mov(cr4, eax);
        a.mov(eax, cr0);
        a.and(eax, ~4);
        a.or(eax, 2);
        a.mov(cr0, eax);
        a.pxor(xmm0, xmm0);
        a.mov(eax, 1);
        a.movd(xmm1, eax);
        ForEachDword(a, PostcopyBase, PostcopyPages * 1024, () =>
        {
            a.imul(eax, edi, golden);
            a.mov(__dword_ptr[edi], eax);
        });
        a.mov(dx, scratch);
        a.mov(eax, 0x80);                                   // round 0 (bit 7: not the power-on value)
        a.@out(dx, al);
        Out(a, Phase, 1);
        a.mov(ebp, 1);                                      // the round
        a.Label(ref round);
        a.lea(ebx, __[ebp - 1]);
        a.imul(esi, ebx, step);                             // esi = (r - 1) * step
        a.imul(ebx, ebp, step);                             // ebx = r * step
        ForEachDword(a, PostcopyBase, PostcopyPages * 1024, () =>
        {
            a.imul(eax, edi, golden);
            a.mov(edx, eax);
            a.add(eax, esi);
            a.cmp(__dword_ptr[edi], eax);
            a.jne(mismatch);
            a.add(edx, ebx);
            a.mov(__dword_ptr[edi], edx);
            a.paddd(xmm0, xmm1);
        });
        a.mov(dx, scratch);
        a.@in(al, dx);
        a.movzx(eax, al);
        a.lea(ecx, __[ebp - 1 + 0x80]);
        a.cmp(eax, ecx);
        a.jne(device);
        a.lea(eax, __[ebp + 0x80]);
        a.@out(dx, al);
        a.inc(ebp);
        a.cmp(ebp, PostcopyRounds);
        a.jbe(round);
        a.movd(eax, xmm0);
        a.cmp(eax, PostcopyRounds * PostcopyPages * 1024);
        a.jne(sse);
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 0);
        a.jmp(halt);
        a.Label(ref mismatch);
        Print(a, strings.Address(2), long64: false);
        Out(a, Exit, 1);
        a.jmp(halt);
        a.Label(ref device);
        Print(a, strings.Address(3), long64: false);
        Out(a, Exit, 2);
        a.jmp(halt);
        a.Label(ref sse);
        Print(a, strings.Address(4), long64: false);
        Out(a, Exit, 3);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }
}
