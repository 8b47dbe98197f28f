namespace Tandem.Arch.X86
{
    /// <summary>
    /// The 8254 PIT, used once to calibrate the LAPIC timer and the TSC: channel 2, gated by
    /// port 0x61, counting down from a known value at 1.193182 MHz.
    /// </summary>
    public static class Pit
    {
        public const uint Frequency = 1193182;

        /// <summary>Busy-waits <paramref name="ticks"/> PIT ticks (at most 65535) on channel 2.</summary>
        public static void Wait(ushort ticks)
        {
            byte gate = Native.InB(0x61);
            Native.OutB(0x61, (byte)((gate & 0xFC) | 0x01));   // gate on, speaker off
            Native.OutB(0x43, 0xB0);                            // channel 2, lo/hi, mode 0
            Native.OutB(0x42, (byte)ticks);
            Native.OutB(0x42, (byte)(ticks >> 8));
            // Restart the count by toggling the gate.
            gate = Native.InB(0x61);
            Native.OutB(0x61, (byte)(gate & 0xFE));
            Native.OutB(0x61, (byte)(gate | 0x01));
            for (int i = 0; i < 100_000_000 && (Native.InB(0x61) & 0x20) == 0; i++)
                Native.Pause();
        }
    }
}
