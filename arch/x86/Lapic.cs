namespace Tandem.Arch.X86
{
    /// <summary>
    /// The local APIC in xAPIC mode (Intel SDM Vol. 3A, chapter 12; register map table 12-1),
    /// reached through its MMIO page, which the kernel maps uncached.
    /// </summary>
    public static unsafe class Lapic
    {
        public const ulong DefaultBase = 0xFEE00000;
        private const uint Id = 0x20, Eoi = 0xB0, Spurious = 0xF0, IcrLow = 0x300, IcrHigh = 0x310,
            LvtTimer = 0x320, TimerInitial = 0x380, TimerCurrent = 0x390, TimerDivide = 0x3E0, ErrorStatus = 0x280;
        public const byte SpuriousVector = 0xFF;

        private static ulong s_base = DefaultBase;

        private static uint Read(uint register) => *(uint*)(s_base + register);

        private static void Write(uint register, uint value) => *(uint*)(s_base + register) = value;

        /// <summary>Enables the APIC (IA32_APIC_BASE bit 11, then the spurious-vector register).</summary>
        public static void Enable()
        {
            ulong apicBase = Native.ReadMsr(0x1B);
            Native.WriteMsr(0x1B, apicBase | (1UL << 11));
            s_base = apicBase & 0xFFFFF000;
            Write(Spurious, 0x100 | SpuriousVector);
            Write(ErrorStatus, 0);
        }

        public static uint CurrentId => Read(Id) >> 24;

        public static void EndOfInterrupt() => Write(Eoi, 0);

        private static void WaitForDelivery()
        {
            for (int i = 0; i < 1_000_000 && (Read(IcrLow) & (1u << 12)) != 0; i++)
                Native.Pause();
        }

        /// <summary>Sends a fixed IPI with <paramref name="vector"/> to one APIC.</summary>
        public static void SendIpi(uint apicId, byte vector)
        {
            // ICR high then low: an interrupt handler sending its own IPI in between would send ours
            // to its destination.
            ulong flags = Native.ReadRflags();
            Native.Cli();
            WaitForDelivery();
            Write(IcrHigh, apicId << 24);
            Write(IcrLow, vector);
            WaitForDelivery();
            if ((flags & 0x200) != 0)
                Native.Sti();
        }

        /// <summary>This CPU's task-priority register.</summary>
        public static uint TaskPriority => Read(0x80);

        /// <summary>Sends an NMI to one APIC (the watchdog's dump request).</summary>
        public static void SendNmi(uint apicId)
        {
            ulong flags = Native.ReadRflags();
            Native.Cli();
            WaitForDelivery();
            Write(IcrHigh, apicId << 24);
            Write(IcrLow, 4u << 8);
            WaitForDelivery();
            if ((flags & 0x200) != 0)
                Native.Sti();
        }

        /// <summary>Sends an NMI to every CPU but this one (shorthand "all excluding self").</summary>
        public static void SendNmiToOthers()
        {
            WaitForDelivery();
            Write(IcrLow, (3u << 18) | (4u << 8));
            WaitForDelivery();
        }

        public static void SendInit(uint apicId)
        {
            WaitForDelivery();
            Write(IcrHigh, apicId << 24);
            Write(IcrLow, 0x4500);             // INIT, level assert
            WaitForDelivery();
        }

        public static void SendStartup(uint apicId, byte page)
        {
            WaitForDelivery();
            Write(IcrHigh, apicId << 24);
            Write(IcrLow, 0x4600u | page);     // STARTUP, vector = page number
            WaitForDelivery();
        }

        /// <summary>Starts the timer, periodic or one-shot, divide by 16.</summary>
        public static void StartTimer(byte vector, uint initialCount, bool periodic)
        {
            Write(TimerDivide, 0x3);
            Write(LvtTimer, vector | (periodic ? 1u << 17 : 0));
            Write(TimerInitial, initialCount);
        }

        /// <summary>Programs a one-shot interrupt <paramref name="count"/> timer ticks (divide by 16) from now.</summary>
        public static void ArmOneShot(byte vector, uint count)
        {
            Write(TimerDivide, 0x3);
            Write(LvtTimer, vector);
            Write(TimerInitial, count == 0 ? 1 : count);
        }

        public static void StopTimer()
        {
            Write(LvtTimer, 1u << 16);         // masked
            Write(TimerInitial, 0);
        }

        public static uint TimerCount => Read(TimerCurrent);
    }
}
