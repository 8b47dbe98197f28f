using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>swapfill32 fills <see cref="SwapFillPages"/> pages from <see cref="SwapFillBase"/> (28 MiB: the VM needs mem=32M).</summary>
    public const uint SwapFillBase = 0x20_0000, SwapFillPages = 7168;

    /// <summary>
    /// Reads the RAM size from fw_cfg (key 3, a u64 little-endian, a byte at a time into ebx) and
    /// jumps to <paramref name="small"/> when its low dword is below <paramref name="needed"/>.
    /// Uses eax, ebx, ecx and edx.
    /// </summary>
    private static void JumpIfRamBelow(Assembler a, uint needed, Label small)
    {
        a.mov(dx, FwCfgSelector);
        a.mov(eax, 3);
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.xor(ebx, ebx);
        a.mov(ecx, 4);
        var byteLoop = a.CreateLabel();
        a.Label(ref byteLoop);
        a.ror(ebx, 8);
        a.@in(al, dx);
        a.mov(bl, al);
        a.dec(ecx);
        a.jnz(byteLoop);
        a.ror(ebx, 8);
        a.cmp(ebx, needed);
        a.jb(small);
    }

    /// <summary>
    /// 32-bit, paging off: fills <see cref="SwapFillPages"/> pages with checksummed contents, then
    /// reads everything back twice. In each page the first 3 KiB hold the page number (with
    /// 0x5A in the top byte), the last 1 KiB the address times the golden ratio, so a page
    /// compresses about 4:1 and no two pages are alike. Phase 1 after the fill, phase 2 after
    /// the first read-back (the host prints its reclaim counters there). Exits 0, or 1 at the first
    /// word that does not hold its value (printing the message), or 3 when fw_cfg says the RAM is
    /// smaller than the fill needs.
    /// </summary>
    private static byte[] SwapFill32()
    {
        var strings = new Strings("swapfill guest: 28 MiB of checksummed pages, then read back twice\n",
            "swapfill guest: filled\n", "swapfill guest: read back once, every word right\n",
            "swapfill guest: read back twice, every word right\n", "SWAPFILL MISMATCH\n", "swapfill guest: needs mem=32M\n");
        var a = new Assembler(32);
        var mismatch = a.CreateLabel();
        var small = a.CreateLabel();
        var halt = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        // fw_cfg RAM size (key 3, u64 little-endian): the low dword must reach the fill's end.
        JumpIfRamBelow(a, SwapFillBase + SwapFillPages * 4096, small);

        // eax = the value of the dword at edi
        void Value()
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
        }

        ForEachDword(a, SwapFillBase, SwapFillPages * 1024, () =>
        {
            Value();
            a.mov(__dword_ptr[edi], eax);
        });
        Print(a, strings.Address(1), long64: false);
        Out(a, Phase, 1);
        for (int pass = 0; pass < 2; pass++)
        {
            ForEachDword(a, SwapFillBase, SwapFillPages * 1024, () =>
            {
                Value();
                a.cmp(__dword_ptr[edi], eax);
                a.jne(mismatch);
            });
            Print(a, strings.Address(2 + pass), long64: false);
            if (pass == 0)
                Out(a, Phase, 2);
        }
        Out(a, Exit, 0);
        a.jmp(halt);
        a.Label(ref mismatch);
        Print(a, strings.Address(4), long64: false);
        Out(a, Exit, 1);
        a.jmp(halt);
        a.Label(ref small);
        Print(a, strings.Address(5), long64: false);
        Out(a, Exit, 3);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
        return strings.Image(a, 32);
    }
}
