using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>Where debugregs32's #UD handler counts its faults.</summary>
    public const uint DrUdCounter = 0x710C;

    /// <summary>
    /// 32-bit: debug registers are the guest's own. EBX = its VM id at entry. Checks (exit status =
    /// the number of the first that failed): 1 DR0-DR3 read 0 at the start (nothing left by another
    /// VM or the host); 2 DR0-DR3 read back what it wrote (id &lt;&lt; 24 | 0x1000 * n | n); 3 DR7
    /// written 0 reads 0x400, and DR6 written 0 reads 0xFFFF0FF0; 4 DR4 (CR4.DE clear) reads as DR6;
    /// then it signals phase 1 (the host runs another VM that writes its own values); 5 DR0-DR3
    /// still hold its values; 6 with CR4.DE set, MOV from DR4 raises #UD (the handler counts and
    /// steps over the 3-byte instruction); 7 exactly one #UD.
    /// </summary>
    private static byte[] DebugRegs32()
    {
        return TwoPass("debugregs32", DebugRegs32Pass);
    }

    private static byte[] DebugRegs32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("debugregs32 guest: my debug registers are mine\n", "debugregs32 guest: every check passed\n", "DEBUGREGS32 CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        a.mov(esi, ebx);                                     // the id (FlatDescriptors clears ebx)
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, 6, handlerAddress);                          // #UD
        a.mov(__dword_ptr[(uint)DrUdCounter], 0);
        a.mov(ebp, 0);                                       // the check number (the handler keeps ebp)
        AssemblerRegisterDR[] regs = [dr0, dr1, dr2, dr3];
        void Own(int n)
        {
            a.mov(edx, esi);
            a.shl(edx, 24);
            a.or(edx, 0x1000 * n + n);
        }
        void AllOwn()
        {
            for (int n = 0; n < 4; n++)
            {
                Own(n);
                a.mov(eax, regs[n]);
                a.cmp(eax, edx);
                a.jne(fail);
            }
        }
        // 1: all zero at the start
        a.inc(ebp);
        for (int n = 0; n < 4; n++)
        {
            a.mov(eax, regs[n]);
            a.test(eax, eax);
            a.jnz(fail);
        }
        // 2: own values back
        a.inc(ebp);
        for (int n = 0; n < 4; n++)
        {
            Own(n);
            a.mov(regs[n], edx);
        }
        AllOwn();
        // 3: DR7 and DR6 with their fixed bits
        a.inc(ebp);
        a.xor(eax, eax);
        a.mov(dr7, eax);
        a.mov(dr6, eax);
        a.mov(eax, dr7);
        a.cmp(eax, 0x400);
        a.jne(fail);
        a.mov(eax, dr6);
        a.cmp(eax, unchecked((int)0xFFFF_0FF0u));
        a.jne(fail);
        // 4: DR4 is DR6 while CR4.DE is clear
        a.inc(ebp);
        a.mov(eax, dr4);
        a.cmp(eax, unchecked((int)0xFFFF_0FF0u));
        a.jne(fail);
        Out(a, Phase, 1);                                    // the other VM runs now
        // 5: still its own after the other VM wrote its values
        a.mov(ebp, 5);
        AllOwn();
        // 6: DR4 with CR4.DE set is #UD
        a.inc(ebp);
        a.mov(eax, cr4);
        a.or(eax, 1 << 3);
        a.mov(cr4, eax);
        a.mov(eax, dr4);                                     // 0F 21 E0: 3 bytes, the handler's step
        a.mov(eax, cr4);
        a.and(eax, ~(1 << 3));
        a.mov(cr4, eax);
        a.cmp(__dword_ptr[(uint)DrUdCounter], 1);
        a.jne(fail);
        // 7: and nothing else faulted
        a.inc(ebp);
        a.cmp(__dword_ptr[(uint)DrUdCounter], 1);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        // #UD: count, step over the 3-byte MOV from DR4, return (no error code).
        a.Label(ref handler);
        a.inc(__dword_ptr[(uint)DrUdCounter]);
        a.add(__dword_ptr[esp], 3);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }
}
