namespace Tandem.Arch.X86
{
    /// <summary>
    /// The legacy 8259 pair. The firmware leaves it delivering the PIT on vector 8, which would look
    /// like a #DF once interrupts are enabled, so it is remapped to 0xE0-0xEF and fully masked:
    /// the LAPIC does all interrupt work.
    /// </summary>
    public static class Pic
    {
        public const byte Base = 0xE0;

        public static void RemapAndMask()
        {
            Native.OutB(0x20, 0x11);          // ICW1: initialise, expect ICW4
            Native.OutB(0xA0, 0x11);
            Native.OutB(0x21, Base);          // ICW2: vector offsets
            Native.OutB(0xA1, Base + 8);
            Native.OutB(0x21, 0x04);          // ICW3: slave on IRQ2
            Native.OutB(0xA1, 0x02);
            Native.OutB(0x21, 0x01);          // ICW4: 8086 mode
            Native.OutB(0xA1, 0x01);
            Native.OutB(0x21, 0xFF);          // mask everything
            Native.OutB(0xA1, 0xFF);
        }
    }
}
