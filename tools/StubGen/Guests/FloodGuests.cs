using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>
    /// Where progress32, serialflood32 and exitstorm32 count their rounds (a dword the host reads
    /// from the VM's RAM; it wraps at 2^32, so the host takes differences).
    /// </summary>
    public const uint FloodCounter = 0x7000;

    /// <summary>progress32 executes one CPUID (one exit) every this many increments of its counter.</summary>
    public const uint ProgressIncrementsPerExit = 64;

    /// <summary>
    /// 32-bit: the VM whose progress is measured beside a flood (issue 13 §2). It counts for ever:
    /// <see cref="ProgressIncrementsPerExit"/> increments of the dword at <see cref="FloodCounter"/>,
    /// then one CPUID, so its progress rate depends on both the CPU time it gets and the host's
    /// exit path (a flood that slowed every VM's exits would show too). It never exits by itself.
    /// </summary>
    private static byte[] Progress32()
    {
        var strings = new Strings("progress32 guest: counting at 0x7000 for ever\n");
        var a = new Assembler(32);
        var round = a.CreateLabel();
        var count = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.mov(edi, FloodCounter);
        a.Label(ref round);
        a.mov(esi, ProgressIncrementsPerExit);
        a.Label(ref count);
        a.inc(__dword_ptr[edi]);
        a.dec(esi);
        a.jnz(count);
        a.xor(eax, eax);
        a.cpuid();                                          // clobbers eax, ebx, ecx, edx: the count is in esi, the address in edi
        a.jmp(round);
        return strings.Image(a, 32);
    }

    /// <summary>
    /// 32-bit: a serial flood. It writes bytes to COM1's data port (0x3F8) as fast as it can, for
    /// ever, counting them at <see cref="FloodCounter"/>. It does not poll LSR first: Tandem's UART
    /// sends a byte at once and its THR is always empty again, so a polling driver would only add
    /// one IN exit per byte; the plain loop puts the most bytes through the UART emulation.
    /// </summary>
    private static byte[] SerialFlood32()
    {
        var strings = new Strings("serialflood32 guest: flooding COM1\n");
        var a = new Assembler(32);
        var loop = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.mov(dx, Serial);
        a.mov(edi, FloodCounter);
        a.Label(ref loop);
        a.mov(eax, __dword_ptr[edi]);
        a.and(al, 0x3F);
        a.add(al, 0x30);                                    // '0' to 'o': printable, whatever the console does with them
        a.@out(dx, al);
        a.inc(__dword_ptr[edi]);
        a.jmp(loop);
        return strings.Image(a, 32);
    }

    /// <summary>
    /// 32-bit: an exit storm. CPUID (leaf 0) in a tight loop, for ever, counting the CPUIDs at
    /// <see cref="FloodCounter"/>: one VM exit every four instructions.
    /// </summary>
    private static byte[] ExitStorm32()
    {
        var strings = new Strings("exitstorm32 guest: CPUID for ever\n");
        var a = new Assembler(32);
        var loop = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        a.mov(edi, FloodCounter);
        a.Label(ref loop);
        a.xor(eax, eax);
        a.cpuid();
        a.inc(__dword_ptr[edi]);
        a.jmp(loop);
        return strings.Image(a, 32);
    }
}
