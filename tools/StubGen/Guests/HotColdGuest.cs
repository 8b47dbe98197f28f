using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>hotcold32's RAM use: <see cref="HotColdHotPages"/> hot pages from <see cref="HotColdBase"/>, then <see cref="HotColdColdPages"/> cold ones (20 MiB: the VM needs mem=24M).</summary>
    public const uint HotColdBase = 0x20_0000, HotColdHotPages = 1024, HotColdColdPages = 4096;

    /// <summary>Cold pages read per round (a ninth of the hot set: 10 % of a round's page reads).</summary>
    public const uint HotColdChunkPages = HotColdHotPages / 9;

    /// <summary>Rounds before phase 1 (a whole cycle through the cold set), and measured rounds between phases 1 and 2.</summary>
    public const uint HotColdWarmRounds = HotColdColdPages / HotColdChunkPages + 1, HotColdRounds = 32;

    /// <summary>
    /// 32-bit, paging off: the guest of the hot/cold benchmark (kernel/Bench/HotColdBench.cs). Fills
    /// its 4 MiB hot set and 16 MiB cold set once with swapfill32's contents (each page compresses
    /// about 4:1), then loops in rounds: read every dword of the hot set, then every dword of the
    /// next <see cref="HotColdChunkPages"/> cold pages (the cold index wraps). Phase 1 after
    /// <see cref="HotColdWarmRounds"/> rounds, phase 2 after <see cref="HotColdRounds"/> more (the
    /// host stamps its TSC at both), then exits 0 (3 when fw_cfg says the RAM is too small).
    /// </summary>
    private static byte[] HotCold32()
    {
        var strings = new Strings("hotcold guest: 4 MiB hot, 16 MiB cold, filling\n", "hotcold guest: measured rounds done\n",
            "hotcold guest: needs mem=24M\n");
        var a = new Assembler(32);
        var small = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        // fw_cfg RAM size (key 3, u64 little-endian): the low dword must reach the data's end.
        JumpIfRamBelow(a, HotColdBase + (HotColdHotPages + HotColdColdPages) * 4096, small);

        // swapfill32's value of the dword at edi, stored there.
        ForEachDword(a, HotColdBase, (HotColdHotPages + HotColdColdPages) * 1024, () =>
        {
            var tail = a.CreateLabel();
            var done = a.CreateLabel();
            a.mov(eax, edi);
            a.and(eax, 0xFFF);
            a.cmp(eax, 0xC00);
            a.jae(tail);
            a.mov(eax, edi);
            a.shr(eax, 12);
            a.or(eax, 0x5A00_0000);
            a.jmp(done);
            a.Label(ref tail);
            a.imul(eax, edi, unchecked((int)0x9E3779B1));
            a.Label(ref done);
            a.mov(__dword_ptr[edi], eax);
        });

        const uint coldBase = HotColdBase + HotColdHotPages * 4096;
        // Rounds: ebp counts them, esi is the next cold page, eax the sum of what was read.
        void Rounds(uint count)
        {
            var round = a.CreateLabel();
            var hot = a.CreateLabel();
            var chunk = a.CreateLabel();
            var cold = a.CreateLabel();
            var nowrap = a.CreateLabel();
            a.mov(ebp, count);
            a.Label(ref round);
            a.mov(edi, HotColdBase);
            a.mov(ecx, HotColdHotPages * 1024);
            a.Label(ref hot);
            a.add(eax, __dword_ptr[edi]);
            a.add(edi, 4);
            a.dec(ecx);
            a.jnz(hot);
            a.mov(ebx, HotColdChunkPages);
            a.Label(ref chunk);
            a.mov(edi, esi);
            a.shl(edi, 12);
            a.add(edi, coldBase);
            a.mov(ecx, 1024);
            a.Label(ref cold);
            a.add(eax, __dword_ptr[edi]);
            a.add(edi, 4);
            a.dec(ecx);
            a.jnz(cold);
            a.inc(esi);
            a.cmp(esi, HotColdColdPages);
            a.jb(nowrap);
            a.xor(esi, esi);
            a.Label(ref nowrap);
            a.dec(ebx);
            a.jnz(chunk);
            a.dec(ebp);
            a.jnz(round);
        }

        a.xor(esi, esi);
        a.xor(eax, eax);
        Rounds(HotColdWarmRounds);
        Out(a, Phase, 1);
        Rounds(HotColdRounds);
        Out(a, Phase, 2);
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 0);
        a.jmp(halt);
        a.Label(ref small);
        Print(a, strings.Address(2), long64: false);
        Out(a, Exit, 3);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }
}
