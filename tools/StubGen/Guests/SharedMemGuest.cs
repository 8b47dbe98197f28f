using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>sharedmem32's data pages after its control page (pairs of identical pages: the merge scanner merges them).</summary>
    public const uint SharedMemDataPages = 16;

    /// <summary>sharedmem32's own variables (its private RAM): the mismatches it counted, the last round it finished, its yields.</summary>
    public const uint SharedMemMismatches = 0x7400, SharedMemRound = 0x7404, SharedMemYields = 0x7408;

    private const uint SharedMemBase = 0x7410, SharedMemRole = 0x7414, SharedMemRounds = 0x7418;

    /// <summary>
    /// 32-bit, paging off: one side of memory shared between two VMs (the host maps the same pages
    /// at ECX in both: VM A's own RAM, VM B's foreign memslot over it). At entry ECX = the shared
    /// range's guest-physical base, EDX = the role (0: writes the odd rounds and reads the even
    /// ones, 1: the other way round), ESI = the number of rounds. The range is a control page
    /// (dword 0 the sequence: 2r-1 while round r is written, 2r when it is complete; dword 1 the
    /// last round its reader verified; dword 2 the host's step count, which paces the rounds: round
    /// r is written only once the host has made r steps of its work on the pages) and <see cref="SharedMemDataPages"/> data pages. Round r's
    /// writer waits until round r-1 was verified, sets the sequence odd, writes every dword
    /// (<c>r * 0x9E3779B1 + (offset >> 13) * 0x01000193 + (offset &amp; 0xFFF) + 1</c>, offset from
    /// the first data page: pages 2j and 2j+1 hold the same), then sets it even. Its reader waits
    /// for the even sequence, compares every dword, counting the wrong ones at
    /// <see cref="SharedMemMismatches"/>, and acknowledges. A waiting side yields (hypercall 1), so
    /// the other VM runs on one CPU too. Exits 0 when no dword it read was wrong, else 1.
    /// An inspector can check a data page by the sequence as a seqlock: equal and even before and
    /// after the copy means the page holds round sequence / 2.
    /// </summary>
    private static byte[] SharedMem32()
    {
        var strings = new Strings("sharedmem32 guest: rounds of checksummed pages through memory shared with another VM\n",
            "sharedmem32 guest: every round read back right\n", "SHAREDMEM32 MISMATCH\n");
        var a = new Assembler(32);
        var round = a.CreateLabel();
        var read = a.CreateLabel();
        var next = a.CreateLabel();
        var mismatch = a.CreateLabel();
        const uint DataDwords = SharedMemDataPages * 1024;

        a.mov(__dword_ptr[SharedMemBase], ecx);
        a.mov(__dword_ptr[SharedMemRole], edx);
        a.mov(__dword_ptr[SharedMemRounds], esi);
        a.mov(__dword_ptr[SharedMemMismatches], 0);
        a.mov(__dword_ptr[SharedMemRound], 0);
        a.mov(__dword_ptr[SharedMemYields], 0);
        Print(a, strings.Address(0), long64: false);        // uses esi, eax, edx
        a.mov(esi, __dword_ptr[SharedMemBase]);
        a.mov(ebx, 1);                                      // the round

        // Waits (yielding) until the dword at [esi + offset] equals edx (or, atLeast, is at least edx).
        void WaitFor(int offset, bool atLeast = false)
        {
            var wait = a.CreateLabel();
            var done = a.CreateLabel();
            a.Label(ref wait);
            a.cmp(__dword_ptr[esi + offset], edx);
            if (atLeast)
                a.jae(done);
            else
                a.je(done);
            a.inc(__dword_ptr[SharedMemYields]);
            a.mov(eax, 1);                                  // hypercall 1: yield
            a.vmcall();
            a.jmp(wait);
            a.Label(ref done);
        }

        // edi = esi + 4096 (the first data page), ecx = the dwords; body with eax = the value at edi.
        void ForEachValue(System.Action body)
        {
            var loop = a.CreateLabel();
            a.imul(ebp, ebx, unchecked((int)0x9E3779B1));
            a.lea(edi, __[esi + 4096]);
            a.mov(ecx, DataDwords);
            a.Label(ref loop);
            a.mov(eax, edi);
            a.sub(eax, esi);
            a.sub(eax, 4096);
            a.mov(edx, eax);
            a.shr(eax, 13);
            a.imul(eax, eax, 0x0100_0193);
            a.and(edx, 0xFFF);
            a.add(eax, edx);
            a.lea(eax, __[eax + ebp + 1]);
            body();
            a.add(edi, 4);
            a.dec(ecx);
            a.jnz(loop);
        }

        a.Label(ref round);
        a.mov(eax, ebx);
        a.and(eax, 1);
        a.xor(eax, __dword_ptr[SharedMemRole]);
        a.jz(read);                                         // role 0 writes the odd rounds
        // Writer: the host's step count at least r, round r-1 verified, then sequence 2r-1, the
        // pages, sequence 2r.
        a.mov(edx, ebx);
        WaitFor(8, atLeast: true);
        a.lea(edx, __[ebx - 1]);
        WaitFor(4);
        a.lea(eax, __[ebx + ebx - 1]);
        a.mov(__dword_ptr[esi], eax);
        ForEachValue(() => a.mov(__dword_ptr[edi], eax));
        a.lea(eax, __[ebx + ebx]);
        a.mov(__dword_ptr[esi], eax);
        a.jmp(next);
        // Reader: sequence 2r, every dword compared, then the acknowledgement.
        a.Label(ref read);
        a.lea(edx, __[ebx + ebx]);
        WaitFor(0);
        ForEachValue(() =>
        {
            var right = a.CreateLabel();
            a.cmp(__dword_ptr[edi], eax);
            a.je(right);
            a.inc(__dword_ptr[SharedMemMismatches]);
            a.Label(ref right);
        });
        a.mov(__dword_ptr[esi + 4], ebx);
        a.Label(ref next);
        a.mov(__dword_ptr[SharedMemRound], ebx);
        a.inc(ebx);
        a.cmp(ebx, __dword_ptr[SharedMemRounds]);
        a.jbe(round);

        a.cmp(__dword_ptr[SharedMemMismatches], 0);
        a.jne(mismatch);
        Verdict(a, mismatch, strings.Address(1), strings.Address(2));
        return strings.Image(a, 32);
    }
}
