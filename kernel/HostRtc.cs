using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kvm.Devices;

namespace Tandem.Kernel
{
    /// <summary>
    /// The host's real-time clock (the MC146818 at ports 0x70/0x71), read once at boot so that
    /// every VM's RTC starts at the host's date and time rather than at 1970.
    /// </summary>
    public static class HostRtc
    {
        /// <summary>Seconds since 1970-01-01 UTC when the TSC read 0 (0 when the clock could not be read).</summary>
        public static ulong WallSecondsAtTscZero;

        /// <summary>
        /// Reads the clock: waits for no update in progress (status A bit 7), reads every time
        /// register, and reads again until two readings agree (an update between them would mix two
        /// seconds). A clock that reads nonsense is reported and not used: the VMs' RTCs then start at
        /// 1970, and the line says why.
        /// </summary>
        public static void Read(ulong tscPerSecond)
        {
            byte s = 0, m = 0, h = 0, d = 0, mo = 0, y = 0, c = 0, b = 0;
            bool stable = false;
            for (int attempt = 0; attempt < 16 && !stable; attempt++)
            {
                WaitNoUpdate();
                s = Get(0); m = Get(2); h = Get(4); d = Get(7); mo = Get(8); y = Get(9); c = Get(0x32); b = Get(0x0B);
                WaitNoUpdate();
                stable = s == Get(0) && m == Get(2) && h == Get(4) && d == Get(7) && mo == Get(8) && y == Get(9) && c == Get(0x32);
            }
            ulong tsc = Native.Rdtsc();
            if (!stable)
            {
                Log.Line("rtc: the host clock changed between every two readings; VM clocks start at 1970");
                return;
            }
            if (!RtcTime.ToUnixSeconds(s, m, h, d, mo, y, c, b, out ulong seconds, out string? problem))
            {
                Log.Info($"rtc: the host clock reads nonsense ({problem}); VM clocks start at 1970");
                return;
            }
            WallSecondsAtTscZero = seconds - (tscPerSecond == 0 ? 0 : tsc / tscPerSecond);
            CivilTime.FromDays((long)(seconds / 86400), out long year, out int month, out int day);
            Log.Info($"rtc: host time {(ulong)year}-{(ulong)month:d2}-{(ulong)day:d2} {seconds % 86400 / 3600:d2}:{seconds % 3600 / 60:d2}:{seconds % 60:d2} UTC");
        }

        private static void WaitNoUpdate()
        {
            // UIP lasts at most 244 µs plus the update itself (about 2 ms); bound the wait anyway.
            for (int i = 0; i < 1_000_000 && (Get(0x0A) & 0x80) != 0; i++)
            {
            }
        }

        private static byte Get(byte index)
        {
            // Bit 7 of the index port is the NMI mask on PCs: keep NMIs enabled.
            Native.OutB(0x70, index);
            return Native.InB(0x71);
        }
    }
}
