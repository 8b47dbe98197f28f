namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Reading an MC146818 real-time clock (the host's own, at boot): its time registers, in the
    /// encoding status register B gives them, turned into seconds since 1970-01-01 UTC. The inverse
    /// of what <see cref="Cmos"/> shows a guest, and tested against it.
    /// </summary>
    public static class RtcTime
    {
        /// <summary>Status B bit 2: the time registers are binary (else BCD).</summary>
        public const byte BBinary = 0x04;
        /// <summary>Status B bit 1: 24-hour mode (else 12-hour, with bit 7 of the hour meaning PM).</summary>
        public const byte B24Hour = 0x02;

        /// <summary>
        /// Seconds since 1970-01-01 for the registers read (0 seconds, 2 minutes, 4 hours, 7 day,
        /// 8 month, 9 year, 0x32 century; <paramref name="century"/> 0 when the machine has no
        /// century byte: then the year is taken as 20YY). False, with <paramref name="problem"/>
        /// naming the field, when a value is out of range or not valid BCD: a clock that reads
        /// nonsense must not be believed.
        /// </summary>
        public static bool ToUnixSeconds(byte seconds, byte minutes, byte hours, byte day, byte month, byte year, byte century, byte statusB,
            out ulong unixSeconds, out string? problem)
        {
            unixSeconds = 0;
            bool binary = (statusB & BBinary) != 0;
            bool pm = (statusB & B24Hour) == 0 && (hours & 0x80) != 0;
            byte hourField = (statusB & B24Hour) == 0 ? (byte)(hours & 0x7F) : hours;
            if (!Decode(seconds, binary, 0, 59, out int s)) { problem = "seconds"; return false; }
            if (!Decode(minutes, binary, 0, 59, out int m)) { problem = "minutes"; return false; }
            if (!Decode(day, binary, 1, 31, out int d)) { problem = "day"; return false; }
            if (!Decode(month, binary, 1, 12, out int mo)) { problem = "month"; return false; }
            if (!Decode(year, binary, 0, 99, out int y)) { problem = "year"; return false; }
            int c = 20;
            if (century != 0 && !Decode(century, binary, 19, 99, out c)) { problem = "century"; return false; }
            int h;
            if ((statusB & B24Hour) != 0)
            {
                if (!Decode(hourField, binary, 0, 23, out h)) { problem = "hours"; return false; }
            }
            else
            {
                // 12-hour: 12 AM is midnight, 12 PM noon.
                if (!Decode(hourField, binary, 1, 12, out h)) { problem = "hours"; return false; }
                h = h % 12 + (pm ? 12 : 0);
            }
            long fullYear = (long)c * 100 + y;
            if (fullYear < 1970) { problem = "year (before 1970)"; return false; }
            long days = CivilTime.ToDays(fullYear, mo, d);
            unixSeconds = (ulong)(days * CivilTime.SecondsPerDay + h * 3600L + m * 60L + s);
            problem = null;
            return true;
        }

        private static bool Decode(byte raw, bool binary, int min, int max, out int value)
        {
            if (binary)
                value = raw;
            else
            {
                int hi = raw >> 4, lo = raw & 0xF;
                value = hi * 10 + lo;
                if (hi > 9 || lo > 9)
                    return false;
            }
            return value >= min && value <= max;
        }
    }
}
