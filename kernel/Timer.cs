using Tandem.Arch.X86;

namespace Tandem.Kernel
{
    /// <summary>Calibrates the LAPIC timer and the TSC against 10 ms of the PIT, then ticks at 100 Hz.</summary>
    public static class Timer
    {
        public const uint Hz = 100;
        public static ulong LapicTicksPerSecond;
        public static ulong TscPerSecond;

        public static void Calibrate()
        {
            Lapic.StartTimer(Interrupts.TimerVector, 0xFFFFFFFF, periodic: false);
            Lapic.StopTimer();
            Lapic.StartTimer(Interrupts.TimerVector, 0xFFFFFFFF, periodic: false);
            // Masked while calibrating: the LVT is rewritten below.
            ulong tscStart = Native.Rdtsc();
            uint start = Lapic.TimerCount;
            Pit.Wait(11932);                                   // 10 ms
            uint end = Lapic.TimerCount;
            ulong tscEnd = Native.Rdtsc();
            Lapic.StopTimer();
            LapicTicksPerSecond = (ulong)(start - end) * 100;
            TscPerSecond = (tscEnd - tscStart) * 100;
        }

        public static void StartPeriodic()
        {
            uint count = (uint)(LapicTicksPerSecond / Hz);
            if (count == 0)
                count = 1;
            Lapic.StartTimer(Interrupts.TimerVector, count, periodic: true);
        }
    }
}
