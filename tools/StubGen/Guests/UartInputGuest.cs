using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

public static partial class TestGuests
{
    /// <summary>What uartin32 waits for on COM1: the host's test types these bytes on its console.</summary>
    public const string UartInText = "tnd";

    /// <summary>uartin32's interrupt count, the last IIR its handler read, its byte count, and the bytes.</summary>
    public const uint UartInInterrupts = 0x7500, UartInIir = 0x7504, UartInCount = 0x7508, UartInBuffer = 0x7510;

    /// <summary>
    /// 32-bit: console input through COM1 as an OS reads it. FIFOs on (trigger level 1), received
    /// data interrupts on (IER bit 0, MCR OUT2), only IRQ 4 unmasked at the PIC (vector 0x24); waits
    /// in <c>sti; hlt</c> until <see cref="UartInText"/>'s length in bytes arrived. The handler
    /// records IIR, then reads RBR while LSR says data ready, and sends the PIC an EOI. Checks:
    /// 1 every byte came (through the handler: nothing else reads RBR), 2 they are
    /// <see cref="UartInText"/> in order, 3 IIR said "received data" with FIFOs on (0xC4),
    /// 4 LSR's data-ready bit is clear after them.
    /// </summary>
    /// <summary>
    /// The start of a COM1 receive guest: flat descriptors, the IRQ 4 gate (vector 0x24) at
    /// <paramref name="handlerAddress"/>, the dwords at <paramref name="first"/> and
    /// <paramref name="second"/> zeroed, only IRQ 4 unmasked at the PIC, FIFOs on and cleared with
    /// <paramref name="fcr"/>'s trigger level, received-data interrupts on (IER bit 0) and OUT2 (the
    /// PC's IRQ gate).
    /// </summary>
    private static void UartReceiveSetup(Assembler a, uint handlerAddress, uint first, uint second, byte fcr)
    {
        FlatDescriptors(a);
        Gate(a, 0x24, handlerAddress);
        a.mov(__dword_ptr[ebx + (int)first], 0);
        a.mov(__dword_ptr[ebx + (int)second], 0);
        PicInit(a, 0xEF, 0xFF);
        Out(a, 0x3FA, fcr);
        Out(a, 0x3F9, 0x01);
        Out(a, 0x3FC, 0x08);
    }

    private static byte[] UartIn32()
    {
        return TwoPass("uartin32", UartIn32Pass);
    }

    private static byte[] UartIn32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("uartin guest: waiting for bytes typed on the host console\n", "uartin guest: received them through IRQ 4\n", "UARTIN CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        var wait = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        UartReceiveSetup(a, handlerAddress, UartInInterrupts, UartInCount, 0x07);   // trigger level 1
        // 1: every byte arrives (the handler is the only reader)
        a.mov(ebp, 1);
        a.Label(ref wait);
        a.sti();
        a.hlt();
        a.cli();
        a.cmp(__dword_ptr[UartInCount], UartInText.Length);
        a.jb(wait);
        a.jne(fail);
        a.cmp(__dword_ptr[UartInInterrupts], 1);
        a.jb(fail);
        // 2: the bytes, in order
        a.inc(ebp);
        for (int i = 0; i < UartInText.Length; i++)
        {
            a.cmp(__byte_ptr[UartInBuffer + (uint)i], (byte)UartInText[i]);
            a.jne(fail);
        }
        // 3: IIR said received data, FIFOs enabled
        a.inc(ebp);
        a.cmp(__dword_ptr[UartInIir], 0xC4);
        a.jne(fail);
        // 4: nothing left
        a.inc(ebp);
        a.mov(dx, SerialStatus);
        a.@in(al, dx);
        a.test(al, 1);
        a.jnz(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        var drain = a.CreateLabel();
        var drained = a.CreateLabel();
        a.Label(ref handler);
        a.push(eax);
        a.push(ecx);
        a.push(edx);
        a.inc(__dword_ptr[UartInInterrupts]);
        a.mov(dx, (ushort)0x3FA);
        a.@in(al, dx);
        a.movzx(eax, al);
        a.mov(__dword_ptr[UartInIir], eax);
        a.Label(ref drain);
        a.mov(dx, SerialStatus);
        a.@in(al, dx);
        a.test(al, 1);
        a.jz(drained);
        a.mov(dx, Serial);
        a.@in(al, dx);
        a.mov(ecx, __dword_ptr[UartInCount]);
        a.and(ecx, 0xFF);                                          // stays inside the buffer whatever comes
        a.mov(__byte_ptr[ecx + UartInBuffer], al);
        a.inc(__dword_ptr[UartInCount]);
        a.jmp(drain);
        a.Label(ref drained);
        a.mov(al, 0x20);
        a.@out(0x20, al);
        a.pop(edx);
        a.pop(ecx);
        a.pop(eax);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }
    /// <summary>Bytes the host pastes for uartpaste32 (a long line: 4 KiB, 256 times the receive FIFO).</summary>
    public const int UartPasteLength = 4096;

    /// <summary>uartpaste32's byte count, the LSRs with OE (overrun) it saw, and the bytes (<see cref="UartPasteLength"/> of them, then 4 KiB of room).</summary>
    public const uint UartPasteCount = 0x7600, UartPasteOverruns = 0x7604, UartPasteBuffer = 0x20_0000;

    /// <summary>
    /// 32-bit: a long paste through COM1, read as uartin32 reads (FIFOs on, trigger level 14, IRQ 4,
    /// the handler drains RBR while LSR says data ready, storing each byte at the next slot from
    /// <see cref="UartPasteBuffer"/> and counting every LSR read with OE set). Waits in
    /// <c>sti; hlt</c> until <see cref="UartPasteLength"/> bytes came. Checks: 1 exactly that many
    /// came (more than that fails too), 2 no LSR read showed an overrun. The host compares the bytes
    /// with what it pasted (kernel/Tests/PlatformTests.cs).
    /// </summary>
    private static byte[] UartPaste32()
    {
        return TwoPass("uartpaste32", UartPaste32Pass);
    }

    private static byte[] UartPaste32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("uartpaste guest: waiting for a 4096-byte paste on COM1\n", "uartpaste guest: received every byte, no overrun\n", "UARTPASTE CHECK FAILED\n");
        var a = new Assembler(32);
        var fail = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        var wait = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        UartReceiveSetup(a, handlerAddress, UartPasteCount, UartPasteOverruns, 0xC7);   // trigger level 14
        // 1: every byte arrives, and no more
        a.mov(ebp, 1);
        a.Label(ref wait);
        a.sti();
        a.hlt();
        a.cli();
        a.cmp(__dword_ptr[UartPasteCount], UartPasteLength);
        a.jb(wait);
        a.jne(fail);
        // 2: the UART never reported an overrun
        a.inc(ebp);
        a.cmp(__dword_ptr[UartPasteOverruns], 0);
        a.jne(fail);

        NumberedVerdict(a, fail, halt, strings.Address(1), strings.Address(2), ebp, long64: false);

        var drain = a.CreateLabel();
        var drained = a.CreateLabel();
        var noOverrun = a.CreateLabel();
        a.Label(ref handler);
        a.push(eax);
        a.push(ecx);
        a.push(edx);
        a.Label(ref drain);
        a.mov(dx, SerialStatus);
        a.@in(al, dx);
        a.test(al, 2);
        a.jz(noOverrun);
        a.inc(__dword_ptr[UartPasteOverruns]);
        a.Label(ref noOverrun);
        a.test(al, 1);
        a.jz(drained);
        a.mov(dx, Serial);
        a.@in(al, dx);
        a.mov(ecx, __dword_ptr[UartPasteCount]);
        a.and(ecx, 0x1FFF);                                        // stays inside the 8 KiB whatever comes
        a.mov(__byte_ptr[ecx + UartPasteBuffer], al);
        a.inc(__dword_ptr[UartPasteCount]);
        a.jmp(drain);
        a.Label(ref drained);
        a.mov(al, 0x20);
        a.@out(0x20, al);
        a.pop(edx);
        a.pop(ecx);
        a.pop(eax);
        a.iretd();

        return strings.Image(a, 32, handler, out handlerRip);
    }
}
