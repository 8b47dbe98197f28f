namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Proleptic Gregorian calendar arithmetic over days since 1970-01-01, for the RTC. The
    /// calendar repeats every 400 years (146,097 days), so the arithmetic counts in years that
    /// begin on 1 March: the leap day is then the last day of its year and every month before it
    /// has a fixed length pattern (31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 29/28 from March).
    /// </summary>
    public static class CivilTime
    {
        /// <summary>Days in a 400-year cycle.</summary>
        public const long DaysPer400Years = 146_097;
        /// <summary>Seconds in a day.</summary>
        public const long SecondsPerDay = 86_400;

        // Days from 0000-03-01 (the start of a March-based 400-year cycle) to 1970-01-01.
        private const long EpochShift = 719_468;

        /// <summary>The date <paramref name="days"/> days after 1970-01-01 (negative: before).</summary>
        public static void FromDays(long days, out long year, out int month, out int day)
        {
            long z = days + EpochShift;
            long cycle = FloorDiv(z, DaysPer400Years);
            long dayOfCycle = z - cycle * DaysPer400Years; // 0 .. 146096
            // Years into the cycle: take out one day per 4 years, put back one per century and take
            // one out again for the 400th year, so that every year is 365 days long.
            long yearOfCycle = (dayOfCycle - dayOfCycle / 1460 + dayOfCycle / 36_524 - dayOfCycle / (DaysPer400Years - 1)) / 365;
            long dayOfYear = dayOfCycle - (365 * yearOfCycle + yearOfCycle / 4 - yearOfCycle / 100); // 0 .. 365, from 1 March
            long monthFromMarch = (5 * dayOfYear + 2) / 153; // 0 = March .. 11 = February
            day = (int)(dayOfYear - (153 * monthFromMarch + 2) / 5 + 1);
            month = (int)(monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9);
            year = yearOfCycle + cycle * 400 + (month <= 2 ? 1 : 0);
        }

        /// <summary>Days from 1970-01-01 to <paramref name="year"/>-<paramref name="month"/>-<paramref name="day"/> (month 1-12; day may run past the month's end).</summary>
        public static long ToDays(long year, int month, int day)
        {
            long y = month <= 2 ? year - 1 : year;
            long cycle = FloorDiv(y, 400);
            long yearOfCycle = y - cycle * 400;
            long monthFromMarch = month > 2 ? month - 3 : month + 9;
            long dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1;
            long dayOfCycle = 365 * yearOfCycle + yearOfCycle / 4 - yearOfCycle / 100 + dayOfYear;
            return cycle * DaysPer400Years + dayOfCycle - EpochShift;
        }

        /// <summary>Day of the week of <paramref name="days"/> after 1970-01-01 (a Thursday): 0 = Sunday .. 6 = Saturday.</summary>
        public static int Weekday(long days)
        {
            long w = (days + 4) % 7;
            return (int)(w < 0 ? w + 7 : w);
        }

        /// <summary><paramref name="a"/> / <paramref name="b"/> rounded toward minus infinity (b &gt; 0).</summary>
        public static long FloorDiv(long a, long b)
        {
            long q = a / b;
            return a % b < 0 ? q - 1 : q;
        }
    }
}
