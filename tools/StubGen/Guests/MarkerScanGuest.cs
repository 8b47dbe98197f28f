using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>markerscan32 writes its marker at this address + i * (4096 + 16), i = 0..15 (16 pages).</summary>
    public const uint MarkerScanBase = 0x60_0000, MarkerScanPages = 16;

    /// <summary>The RAM markerscan32 scans, all of it: the kernel tests' guest RAM (VmxTests.GuestRam).</summary>
    public const uint MarkerScanRam = 16u << 20;

    /// <summary>The marker's first two dwords, "TANDEM-V" (the rest depends on the VM id).</summary>
    private const uint MarkerWord0 = 0x444E_4154, MarkerWord1 = 0x562D_4D45;

    /// <summary>
    /// The 16-byte marker of VM <paramref name="id"/>: "TANDEM-VM-" + ('A' + id % 16) + "-" + the
    /// dword id * 0x9E3779B9 ^ 0x4B4D5A5A (distinct for distinct ids: the multiplier is odd). For the tests.
    /// </summary>
    public static byte[] Marker(uint id)
    {
        var bytes = new byte[16];
        BitConverter.GetBytes(MarkerWord0).CopyTo(bytes, 0);
        BitConverter.GetBytes(MarkerWord1).CopyTo(bytes, 4);
        BitConverter.GetBytes(MarkerWord2(id)).CopyTo(bytes, 8);
        BitConverter.GetBytes(unchecked(id * 0x9E37_79B9u) ^ 0x4B4D_5A5Au).CopyTo(bytes, 12);
        return bytes;
    }

    private static uint MarkerWord2(uint id) => 0x2D00_2D4Du | (('A' + (id & 15)) << 16);

    /// <summary>
    /// 32-bit: two VMs cannot find each other's memory. At entry EBX = its VM id, ECX = the other
    /// VM's id (the test sets it). It builds both markers (<see cref="Marker"/>) at run time, in
    /// registers only, so no copy sits in its image, its stack or anywhere but the pages it writes;
    /// writes its own marker into 16 pages, signals phase 1 (the host runs the other VM to the same
    /// point), scans every 4-byte aligned position of all its RAM (0 to <see cref="MarkerScanRam"/>)
    /// for both markers, signals phase 2 (the other VM scans while this one is alive), then checks
    /// (exit status = the number of the first that failed, 0 when all hold): 1 the two ids differ,
    /// 2 exactly its 16 own markers were found (the scan works), 3 none of the other VM's.
    /// </summary>
    private static byte[] MarkerScan32()
    {
        var strings = new Strings("markerscan32 guest: writing my marker, scanning all my RAM\n", "markerscan32 guest: only my own markers, all 16\n", "MARKERSCAN32 CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var write = a.CreateLabel();
        var scan = a.CreateLabel();
        var notOwn = a.CreateLabel();
        var next = a.CreateLabel();

        a.mov(ebp, ebx);                                    // own id (Print uses esi, eax, edx)
        a.mov(edi, ecx);                                    // the other's id
        Print(a, strings.Address(0), long64: false);
        a.mov(ecx, 1);                                      // 1: the ids differ
        a.cmp(ebp, edi);
        a.je(fail);

        // The own marker's last two dwords: ebx, ecx.
        void Words(AssemblerRegister32 id, AssemblerRegister32 word2, AssemblerRegister32 word3)
        {
            a.mov(word2, id);
            a.and(word2, 15);
            a.add(word2, 'A');
            a.shl(word2, 16);
            a.or(word2, 0x2D00_2D4D);
            a.imul(word3, id, unchecked((int)0x9E37_79B9u));
            a.xor(word3, 0x4B4D_5A5A);
        }
        Words(ebp, ebx, ecx);
        a.mov(ebp, edi);                                    // ebp = the other's id from here
        a.mov(edi, MarkerScanBase);
        a.mov(eax, MarkerScanPages);
        a.Label(ref write);
        a.mov(__dword_ptr[edi], MarkerWord0);
        a.mov(__dword_ptr[edi + 4], MarkerWord1);
        a.mov(__dword_ptr[edi + 8], ebx);
        a.mov(__dword_ptr[edi + 12], ecx);
        a.add(edi, 4096 + 16);
        a.dec(eax);
        a.jnz(write);
        Out(a, Phase, 1);                                   // (clobbers eax, edx)

        // The other's: edx, esi. Counts: own in ebp, the other's in eax.
        Words(ebp, edx, esi);
        a.xor(ebp, ebp);
        a.xor(eax, eax);
        a.xor(edi, edi);
        a.Label(ref scan);
        a.cmp(__dword_ptr[edi], MarkerWord0);
        a.jne(next);
        a.cmp(__dword_ptr[edi + 4], MarkerWord1);
        a.jne(next);
        a.cmp(__dword_ptr[edi + 8], ebx);
        a.jne(notOwn);
        a.cmp(__dword_ptr[edi + 12], ecx);
        a.jne(notOwn);
        a.inc(ebp);
        a.Label(ref notOwn);
        a.cmp(__dword_ptr[edi + 8], edx);
        a.jne(next);
        a.cmp(__dword_ptr[edi + 12], esi);
        a.jne(next);
        a.inc(eax);
        a.Label(ref next);
        a.add(edi, 4);
        a.cmp(edi, MarkerScanRam);
        a.jb(scan);

        a.mov(esi, eax);                                    // the other's count (Out clobbers eax, edx)
        Out(a, Phase, 2);
        a.mov(ecx, 2);                                      // 2: exactly the 16 own markers
        a.cmp(ebp, MarkerScanPages);
        a.jne(fail);
        a.inc(ecx);                                         // 3: none of the other's
        a.test(esi, esi);
        a.jnz(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ecx, long64: false);
        return strings.Image(a, 32);
    }
}
