using Tandem.Arch.X86;

namespace Tandem.Kernel.Console
{
    /// <summary>The COM1 16550 UART: 115200 baud, 8N1, polled transmit. It is the kernel's log.</summary>
    public static class Serial
    {
        private const ushort Com1 = 0x3F8;
        private const ushort Data = 0, InterruptEnable = 1, FifoControl = 2, LineControl = 3, ModemControl = 4, LineStatus = 5;
        private const byte TransmitEmpty = 0x20;

        public static void Initialize()
        {
            Native.OutB(Com1 + InterruptEnable, 0x00);
            Native.OutB(Com1 + LineControl, 0x80);   // DLAB on: next two bytes are the divisor
            Native.OutB(Com1 + Data, 0x01);          // divisor 1 = 115200 baud
            Native.OutB(Com1 + InterruptEnable, 0x00);
            Native.OutB(Com1 + LineControl, 0x03);   // 8 bits, no parity, one stop bit
            Native.OutB(Com1 + FifoControl, 0xC7);   // FIFO on, cleared, 14-byte threshold
            Native.OutB(Com1 + ModemControl, 0x03);  // DTR + RTS
        }

        /// <summary>A byte typed on the console, or -1 when none is waiting (LSR data ready clear).</summary>
        public static int TryRead() => (Native.InB(Com1 + LineStatus) & 1) != 0 ? Native.InB(Com1 + Data) : -1;

        public static void Write(byte value)
        {
            // Bounded wait: a missing UART must not hang the kernel.
            for (int i = 0; i < 100000 && (Native.InB(Com1 + LineStatus) & TransmitEmpty) == 0; i++)
                Native.Pause();
            Native.OutB(Com1 + Data, value);
        }
    }
}
