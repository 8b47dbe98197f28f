using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>hostpages32 writes this 16-byte pattern (four dwords, the n-th <c>HostPagesPattern + n</c>).</summary>
    public const uint HostPagesPattern = 0x7A5E_D000;

    /// <summary>Where hostpages32 lives (its code from 1 MiB, its stack in the last page of its 16 MiB): an address there is skipped.</summary>
    public const uint HostPagesCodeStart = 0x10_0000, HostPagesCodeEnd = 0x11_0000, HostPagesStackPage = (16u << 20) - 0x1000;

    /// <summary>
    /// 32-bit, paging off: a guest aiming at host pages. At entry ECX, EDX, ESI and EDI hold four
    /// host-physical addresses the test gives it (its VMCS, its EPT root, its register page, the
    /// frame behind its own guest-physical 0). A guest has no way to name a host-physical address:
    /// it uses each as a guest-physical one, which is all that paging (its own or none) could give
    /// it. For each address outside its code and stack pages, it writes the pattern at the start
    /// of that page and at the address itself, then reads both back: its own RAM below 16 MiB
    /// gives the pattern back, above it all ones (exit status = 1 + the address's index on a
    /// wrong value). Then it signals phase 1 (the host looks at its pages), and exits 0.
    /// </summary>
    private static byte[] HostPages32()
    {
        var strings = new Strings("hostpages32 guest: writing to the host's addresses of my VMCS, EPT and registers\n",
            "hostpages32 guest: my own RAM or nothing answered\n", "HOSTPAGES32 CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var each = a.CreateLabel();
        var skip = a.CreateLabel();
        var check = a.CreateLabel();
        var compare = a.CreateLabel();
        const uint table = 0x10_8000;                       // the four addresses, inside the code range (skipped)

        a.mov(__dword_ptr[table], ecx);
        a.mov(__dword_ptr[table + 4], edx);
        a.mov(__dword_ptr[table + 8], esi);
        a.mov(__dword_ptr[table + 12], edi);
        Print(a, strings.Address(0), long64: false);
        a.xor(ecx, ecx);                                    // the index, 0 to 3; the check is 1 + it
        a.Label(ref each);
        a.mov(edi, __dword_ptr[ecx * 4 + (int)table]);
        a.cmp(edi, HostPagesCodeStart);
        a.jb(check);
        a.cmp(edi, HostPagesCodeEnd);
        a.jb(skip);
        a.Label(ref check);
        a.mov(eax, edi);
        a.and(eax, 0xFFFF_F000u);
        a.cmp(eax, HostPagesStackPage);
        a.je(skip);
        a.and(edi, 0xFFFF_FFF0u);                           // the address, 16-byte aligned so both stay in its page
        for (int pass = 0; pass < 2; pass++)
        {
            AssemblerRegister32 at = pass == 0 ? eax : edi;  // the page's start, then the address
            for (int k = 0; k < 4; k++)
                a.mov(__dword_ptr[at + 4 * k], (int)(HostPagesPattern + (uint)k));
        }
        // Read back: the pattern below 16 MiB (its own RAM), all ones above (nothing there).
        a.mov(ebx, HostPagesPattern);
        a.cmp(eax, 16u << 20);
        a.jb(compare);
        a.mov(ebx, -1);
        a.Label(ref compare);
        for (int pass = 0; pass < 2; pass++)
        {
            AssemblerRegister32 at = pass == 0 ? eax : edi;
            for (int k = 0; k < 4; k++)
            {
                a.mov(edx, __dword_ptr[at + 4 * k]);
                a.cmp(ebx, -1);
                var plain = a.CreateLabel();
                var done = a.CreateLabel();
                a.je(plain);
                a.sub(edx, k);                                  // the pattern's k-th dword is pattern + k
                a.Label(ref plain);
                a.cmp(edx, ebx);
                a.je(done);
                a.inc(ecx);
                a.jmp(fail);
                a.Label(ref done);
            }
        }
        a.nop();                                            // (one label per instruction)
        a.Label(ref skip);
        a.inc(ecx);
        a.cmp(ecx, 4);
        a.jb(each);
        Out(a, Phase, 1);
        a.xor(ecx, ecx);
        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ecx, long64: false);
        return strings.Image(a, 32);
    }
}
