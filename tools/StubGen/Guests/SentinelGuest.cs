using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>The RAM sentinel32 fills and checks: [base, base + size).</summary>
    public const uint SentinelBase = 0x40_0000, SentinelBytes = 2u << 20;

    /// <summary>
    /// 32-bit: the fuzz campaign's bystander (issue 13 §1). It fills 2 MiB with words derived from
    /// their address and its VM id (EBX at entry), then checks every word, round after round, for
    /// ever: after each good round it writes the round number to the phase port (the host reads
    /// the VM's last phase to see it progress); a wrong word ends it with exit status 1. Another
    /// VM's fuzzing must never change its memory nor stop its progress.
    /// </summary>
    private static byte[] Sentinel32()
    {
        var strings = new Strings("sentinel32 guest: 2 MiB filled, checking it round after round\n", "SENTINEL32: A WORD CHANGED\n");
        var a = new Assembler(32);
        var fill = a.CreateLabel();
        var round = a.CreateLabel();
        var check = a.CreateLabel();
        var bad = a.CreateLabel();
        a.imul(ebp, ebx, unchecked((int)0x9E37_79B9u));       // the VM's salt (Print keeps ebp)
        a.mov(edi, SentinelBase);
        a.Label(ref fill);
        a.mov(eax, edi);
        a.xor(eax, ebp);
        a.mov(__dword_ptr[edi], eax);
        a.add(edi, 4);
        a.cmp(edi, SentinelBase + SentinelBytes);
        a.jb(fill);
        Print(a, strings.Address(0), long64: false);
        a.xor(ebx, ebx);                                        // rounds
        a.Label(ref round);
        a.mov(edi, SentinelBase);
        a.Label(ref check);
        a.mov(eax, edi);
        a.xor(eax, ebp);
        a.cmp(__dword_ptr[edi], eax);
        a.jne(bad);
        a.add(edi, 4);
        a.cmp(edi, SentinelBase + SentinelBytes);
        a.jb(check);
        a.inc(ebx);
        a.mov(eax, ebx);
        a.mov(dx, Phase);
        a.@out(dx, eax);
        a.jmp(round);
        a.Label(ref bad);
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 1);
        a.hlt();
        return strings.Image(a, 32);
    }
}
