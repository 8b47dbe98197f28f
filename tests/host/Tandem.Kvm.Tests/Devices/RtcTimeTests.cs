using System;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>
/// The host-RTC reader against the guest RTC model: whatever time <see cref="Cmos"/> shows, in
/// whichever encoding status B picks, <see cref="RtcTime"/> turns back into the same second.
/// </summary>
public class RtcTimeTests
{
    private static (ulong Seconds, string? Problem, bool Ok) ReadBack(ulong wall, byte statusB)
    {
        var clock = new ManualClock { WallSecondsAtZero = wall, NowNs = 0 };
        var cmos = new Cmos(clock, new RecordingIrqSink(), 64UL << 20, 0);
        PortBus bus = PortBusWith.New(cmos, Cmos.IndexPort, 2);
        byte Get(int index)
        {
            bus.Write(Cmos.IndexPort, 1, (uint)index);
            return (byte)bus.Read(Cmos.DataPort, 1);
        }
        bus.Write(Cmos.IndexPort, 1, Cmos.RegB);
        bus.Write(Cmos.DataPort, 1, statusB);
        bool ok = RtcTime.ToUnixSeconds(Get(0), Get(2), Get(4), Get(7), Get(8), Get(9), Get(0x32), Get(Cmos.RegB), out ulong seconds, out string? problem);
        return (seconds, problem, ok);
    }

    [Theory]
    [InlineData(0x02)]          // BCD, 24-hour (the PC default)
    [InlineData(0x06)]          // binary, 24-hour
    [InlineData(0x00)]          // BCD, 12-hour
    [InlineData(0x04)]          // binary, 12-hour
    public void EveryEncodingReadsBackTheModelsTime(byte statusB)
    {
        var random = new Random(20261202);             // fixed: every run checks the same times
        ulong first = (ulong)new DateTimeOffset(1970, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();
        ulong last = (ulong)new DateTimeOffset(2099, 12, 31, 23, 59, 59, TimeSpan.Zero).ToUnixTimeSeconds();
        ulong[] fixedTimes =
        [
            first, last,
            (ulong)new DateTimeOffset(2026, 12, 2, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds(),   // midnight: 12 AM
            (ulong)new DateTimeOffset(2026, 12, 2, 12, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds(),  // noon: 12 PM
            (ulong)new DateTimeOffset(2000, 2, 29, 23, 59, 59, TimeSpan.Zero).ToUnixTimeSeconds(),
            1767225600,                                                                            // Bochs' time0
        ];
        foreach (ulong wall in fixedTimes)
            Assert.Equal((wall, (string?)null, true), ReadBack(wall, statusB));
        for (int i = 0; i < 2000; i++)
        {
            ulong wall = first + (ulong)random.NextInt64(0, (long)(last - first));
            Assert.Equal((wall, (string?)null, true), ReadBack(wall, statusB));
        }
    }

    [Theory]
    [InlineData(0x60, 0x00, 0x00, 0x01, 0x01, 0x26, 0x20, "seconds")]
    [InlineData(0x00, 0x5A, 0x00, 0x01, 0x01, 0x26, 0x20, "minutes")]
    [InlineData(0x00, 0x00, 0x24, 0x01, 0x01, 0x26, 0x20, "hours")]
    [InlineData(0x00, 0x00, 0x00, 0x00, 0x01, 0x26, 0x20, "day")]
    [InlineData(0x00, 0x00, 0x00, 0x01, 0x13, 0x26, 0x20, "month")]
    [InlineData(0x00, 0x00, 0x00, 0x01, 0x01, 0xFF, 0x20, "year")]
    [InlineData(0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x0F, "century")]
    [InlineData(0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x19, "year (before 1970)")]
    public void NonsenseIsRefusedWithTheField(byte s, byte m, byte h, byte d, byte mo, byte y, byte c, string field)
    {
        Assert.False(RtcTime.ToUnixSeconds(s, m, h, d, mo, y, c, 0x02, out _, out string? problem));
        Assert.Equal(field, problem);
    }

    [Fact]
    public void NoCenturyByteMeansThe2000s()
    {
        Assert.True(RtcTime.ToUnixSeconds(0x30, 0x45, 0x13, 0x02, 0x12, 0x26, 0, 0x02, out ulong seconds, out _));
        Assert.Equal((ulong)new DateTimeOffset(2026, 12, 2, 13, 45, 30, TimeSpan.Zero).ToUnixTimeSeconds(), seconds);
    }
}
