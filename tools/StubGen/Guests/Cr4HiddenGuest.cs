using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>Where cr4hidden32's #GP handler counts its faults.</summary>
    public const uint Cr4GpCounter = 0x7108;

    /// <summary>
    /// 32-bit: the CR4 bits of state the host does not switch stay out of a guest's reach. Installs
    /// a #GP handler (count, drop the error code, step over the 3-byte MOV to CR4, IRET), then
    /// checks (exit status = the number of the first that failed): 1 CPUID.1:ECX shows neither XSAVE
    /// nor OSXSAVE; 2 setting CR4.OSXSAVE faults; 3 CR4 reads back without it; 4 CPUID.7.0:ECX shows
    /// neither PKU nor OSPKE; 5 setting CR4.PKE faults; 6 CR4 reads back without it; 7 setting
    /// CR4.OSFXSR (a bit the guest owns) works and reads back; 8 exactly two faults.
    /// </summary>
    private static byte[] Cr4Hidden32()
    {
        return TwoPass("cr4hidden32", Cr4Hidden32Pass);
    }

    private static byte[] Cr4Hidden32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("cr4hidden32 guest: OSXSAVE and PKE are not mine to set\n", "cr4hidden32 guest: every check passed\n", "CR4HIDDEN32 CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 13, handlerAddress);                         // #GP
        a.mov(__dword_ptr[(uint)Cr4GpCounter], 0);
        a.mov(ebp, 0);                                       // the check number (the handler keeps ebp)
        void ExpectFaults(int count)
        {
            a.cmp(__dword_ptr[(uint)Cr4GpCounter], count);
            a.jne(fail);
        }
        void SetCr4Bit(int bit)
        {
            a.mov(eax, cr4);
            a.or(eax, 1 << bit);
            a.mov(cr4, eax);                                 // 0F 22 E0: 3 bytes, the handler's step
        }
        void Cr4BitClear(int bit)
        {
            a.mov(eax, cr4);
            a.test(eax, 1 << bit);
            a.jnz(fail);
        }
        // 1: no XSAVE (26), no OSXSAVE (27)
        a.inc(ebp);
        a.mov(eax, 1);
        a.xor(ecx, ecx);
        a.cpuid();
        a.test(ecx, (1 << 26) | (1 << 27));
        a.jnz(fail);
        // 2, 3: OSXSAVE (18)
        a.inc(ebp);
        SetCr4Bit(18);
        ExpectFaults(1);
        a.inc(ebp);
        Cr4BitClear(18);
        // 4: no PKU (3), no OSPKE (4)
        a.inc(ebp);
        a.mov(eax, 7);
        a.xor(ecx, ecx);
        a.cpuid();
        a.test(ecx, (1 << 3) | (1 << 4));
        a.jnz(fail);
        // 5, 6: PKE (22)
        a.inc(ebp);
        SetCr4Bit(22);
        ExpectFaults(2);
        a.inc(ebp);
        Cr4BitClear(22);
        // 7: OSFXSR (9) is the guest's
        a.inc(ebp);
        SetCr4Bit(9);
        a.mov(eax, cr4);
        a.test(eax, 1 << 9);
        a.jz(fail);
        // 8: nothing else faulted
        a.inc(ebp);
        ExpectFaults(2);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        // #GP: count, drop the error code, step over the 3-byte MOV to CR4, return.
        a.Label(ref handler);
        a.inc(__dword_ptr[(uint)Cr4GpCounter]);
        a.add(esp, 4);
        a.add(__dword_ptr[esp], 3);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }
}
