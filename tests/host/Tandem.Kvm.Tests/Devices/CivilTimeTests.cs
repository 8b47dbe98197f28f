using System;
using Tandem.Kvm.Devices;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Devices;

public class CivilTimeTests
{
    private readonly ITestOutputHelper _out;
    public CivilTimeTests(ITestOutputHelper output) { _out = output; }

    private static void Check(long seconds)
    {
        DateTimeOffset expected = DateTimeOffset.FromUnixTimeSeconds(seconds);
        long days = CivilTime.FloorDiv(seconds, CivilTime.SecondsPerDay);
        CivilTime.FromDays(days, out long year, out int month, out int day);
        Assert.Equal((expected.Year, expected.Month, expected.Day), ((int)year, month, day));
        Assert.Equal((int)expected.DayOfWeek, CivilTime.Weekday(days));
        Assert.Equal(days, CivilTime.ToDays(year, month, day));
    }

    [Fact]
    public void AgreesWithDateTimeOffsetOverRandomTimestamps()
    {
        int seed = TestSeed.Pick(_out.WriteLine, nameof(CivilTimeTests) + "." + nameof(AgreesWithDateTimeOffsetOverRandomTimestamps));
        Random r = new Random(seed);
        long min = DateTimeOffset.MinValue.ToUnixTimeSeconds(); // 0001-01-01
        long max = DateTimeOffset.MaxValue.ToUnixTimeSeconds(); // 9999-12-31
        for (int i = 0; i < 100_000; i++)
            Check(r.NextInt64(0, 1L << 32)); // what an RTC sees: 1970 .. 2106
        for (int i = 0; i < 100_000; i++)
            Check(r.NextInt64(min, max + 1)); // the whole proleptic Gregorian range .NET knows
    }

    [Fact]
    public void AgreesOnEveryDayAroundTheEdges()
    {
        // Every day of 1899-2101: century rules (1900 not leap, 2000 leap, 2100 not), the epoch.
        long from = new DateTimeOffset(1899, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();
        long to = new DateTimeOffset(2101, 12, 31, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();
        for (long s = from; s <= to; s += CivilTime.SecondsPerDay)
            Check(s);
        Check(DateTimeOffset.MinValue.ToUnixTimeSeconds());
        Check(DateTimeOffset.MaxValue.ToUnixTimeSeconds());
    }

    [Fact]
    public void KnownDates()
    {
        CivilTime.FromDays(0, out long y, out int m, out int d);
        Assert.Equal((1970L, 1, 1), (y, m, d));
        Assert.Equal(4, CivilTime.Weekday(0)); // Thursday
        Assert.Equal(11_016, CivilTime.ToDays(2000, 2, 29));
        Assert.Equal(CivilTime.ToDays(2001, 3, 1), CivilTime.ToDays(2001, 2, 29)); // runs past the month's end
        Assert.Equal(-1, CivilTime.FloorDiv(-1, 7));
        Assert.Equal(-1, CivilTime.FloorDiv(-7, 7));
    }
}
