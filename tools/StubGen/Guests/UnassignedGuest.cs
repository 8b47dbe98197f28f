using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>The RAM unassigned32 assumes (the kernel tests' guest RAM, VmxTests.GuestRam): everything from here to 4 GiB is outside it.</summary>
    public const uint UnassignedRamEnd = 16u << 20;

    /// <summary>The stride of unassigned32's samples from the end of RAM to 4 GiB.</summary>
    public const uint UnassignedStride = 4u << 20;

    /// <summary>The device pages of every VM (the MMIO test page, the I/O APIC, the local APIC): unassigned32 leaves 0xFEB00000-0xFEFFFFFF alone.</summary>
    public const uint UnassignedDevicesStart = 0xFEB0_0000, UnassignedDevicesEnd = 0xFF00_0000;

    /// <summary>
    /// 32-bit, paging off: a guest reaching for memory it does not have. Checks (exit status = the
    /// number of the first that failed, 0 when all hold):
    /// 1, 2: a dword written across the end of RAM keeps its two RAM bytes and drops the other
    /// two, and reads back as 0xFFFF3344;
    /// 3, 4, 5: at every <see cref="UnassignedStride"/> from the end of RAM to 4 GiB (the device
    /// window excepted), a dword written and read back reads all ones, so does a byte one page and
    /// one byte further on, and a dword across a page boundary (1 MiB - 2 further on);
    /// 6: the last dword below 4 GiB, written and read, reads all ones;
    /// 7: a marker written into RAM at the start is still there (the writes went nowhere in RAM).
    /// Data accesses only: an instruction fetch outside RAM would stop the VM.
    /// </summary>
    private static byte[] Unassigned32()
    {
        var strings = new Strings("unassigned32 guest: reading and writing outside my RAM up to 4 GiB\n",
            "unassigned32 guest: all ones read, every write dropped\n", "UNASSIGNED32 CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var sample = a.CreateLabel();
        var access = a.CreateLabel();
        var next = a.CreateLabel();
        const uint ramMarker = 0x0060_0000, markerValue = 0xC0FF_EE11;

        Print(a, strings.Address(0), long64: false);
        a.mov(__dword_ptr[ramMarker], markerValue);

        a.mov(ecx, 1);                                      // 1: the RAM half of a dword across the end of RAM
        a.mov(__dword_ptr[UnassignedRamEnd - 4], 0);
        a.mov(eax, 0x1122_3344);
        a.mov(__dword_ptr[UnassignedRamEnd - 2], eax);
        a.mov(edx, __dword_ptr[UnassignedRamEnd - 2]);
        a.cmp(edx, unchecked((int)0xFFFF_3344u));
        a.jne(fail);
        a.inc(ecx);                                         // 2: RAM holds exactly the two bytes
        a.mov(edx, __dword_ptr[UnassignedRamEnd - 4]);
        a.cmp(edx, 0x3344_0000);
        a.jne(fail);

        a.mov(edi, UnassignedRamEnd);
        a.Label(ref sample);
        a.cmp(edi, UnassignedDevicesStart);
        a.jb(access);
        a.cmp(edi, UnassignedDevicesEnd);
        a.jb(next);
        a.Label(ref access);
        a.mov(ecx, 3);                                      // 3: a dword
        a.mov(eax, edi);
        a.xor(eax, unchecked((int)0xA5A5_A5A5u));
        a.mov(__dword_ptr[edi], eax);
        a.mov(edx, __dword_ptr[edi]);
        a.cmp(edx, -1);
        a.jne(fail);
        a.inc(ecx);                                         // 4: a byte, one page and a byte on
        a.mov(__byte_ptr[edi + 0x1001], al);
        a.movzx(edx, __byte_ptr[edi + 0x1001]);
        a.cmp(edx, 0xFF);
        a.jne(fail);
        a.inc(ecx);                                         // 5: a dword across a page boundary
        a.mov(__dword_ptr[edi + 0xF_FFFE], eax);
        a.mov(edx, __dword_ptr[edi + 0xF_FFFE]);
        a.cmp(edx, -1);
        a.jne(fail);
        a.Label(ref next);
        a.add(edi, UnassignedStride);
        a.jnc(sample);                                      // carry: past 4 GiB

        a.mov(ecx, 6);                                      // 6: the last dword below 4 GiB
        a.mov(__dword_ptr[0xFFFF_FFFCu], eax);
        a.mov(edx, __dword_ptr[0xFFFF_FFFCu]);
        a.cmp(edx, -1);
        a.jne(fail);
        a.inc(ecx);                                         // 7: RAM unchanged
        a.cmp(__dword_ptr[ramMarker], markerValue);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ecx, long64: false);
        return strings.Image(a, 32);
    }
}
