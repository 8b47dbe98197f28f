using System;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class CmosTests
{
    private const ulong Second = 1_000_000_000;
    private const ulong MiB = 1UL << 20, GiB = 1UL << 30;

    // Wednesday 2026-12-02 13:45:30 UTC.
    private static readonly ulong Wall = (ulong)new DateTimeOffset(2026, 12, 2, 13, 45, 30, TimeSpan.Zero).ToUnixTimeSeconds();

    private readonly ManualClock _clock = new ManualClock { WallSecondsAtZero = Wall, NowNs = 0 };
    private readonly RecordingIrqSink _irq = new RecordingIrqSink();
    private readonly Cmos _cmos;
    private readonly PortBus _bus;

    public CmosTests()
    {
        _cmos = new Cmos(_clock, _irq, 512 * MiB, 0);
        _bus = PortBusWith.New(_cmos, Cmos.IndexPort, 2);
    }

    private byte Get(int index)
    {
        _bus.Write(Cmos.IndexPort, 1, (uint)index);
        return (byte)_bus.Read(Cmos.DataPort, 1);
    }

    private void Set(int index, byte value)
    {
        _bus.Write(Cmos.IndexPort, 1, (uint)index);
        _bus.Write(Cmos.DataPort, 1, value);
    }

    private (int h, int m, int s, int wd, int d, int mo, int y, int c) Time() =>
        (Get(4), Get(2), Get(0), Get(6), Get(7), Get(8), Get(9), Get(0x32));

    [Fact]
    public void TimeIsBcd24HourByDefault()
    {
        Assert.Equal((0x13, 0x45, 0x30, 0x04, 0x02, 0x12, 0x26, 0x20), Time()); // weekday 4 = Wednesday
        _clock.Advance(31 * Second);
        Assert.Equal((0x13, 0x46, 0x01), (Get(4), Get(2), Get(0)));
    }

    [Fact]
    public void BinaryMode()
    {
        Set(Cmos.RegB, Cmos.B24Hour | Cmos.BBinary);
        Assert.Equal((13, 45, 30, 4, 2, 12, 26, 20), Time());
    }

    [Theory]
    [InlineData(0, 0x12, 12)] // midnight is 12 AM
    [InlineData(1, 0x01, 1)]
    [InlineData(11, 0x11, 11)]
    [InlineData(12, 0x92, 0x8C)] // noon is 12 PM
    [InlineData(13, 0x81, 0x81)]
    [InlineData(23, 0x91, 0x8B)]
    public void TwelveHourModeInBcdAndBinary(int hour, int bcd, int binary)
    {
        ulong dayStart = Wall - (Wall % 86_400);
        _clock.WallSecondsAtZero = dayStart + (ulong)hour * 3600;
        Set(Cmos.RegB, 0);
        Assert.Equal(bcd, Get(Cmos.RegHours));
        Set(Cmos.RegB, Cmos.BBinary);
        Assert.Equal(binary, Get(Cmos.RegHours));
        Set(Cmos.RegB, Cmos.B24Hour | Cmos.BBinary);
        Assert.Equal(hour, Get(Cmos.RegHours));
    }

    [Fact]
    public void IndexBit7IsTheNmiMaskAndNotPartOfTheIndex()
    {
        _bus.Write(Cmos.IndexPort, 1, 0x80 | Cmos.RegD);
        Assert.True(_cmos.NmiMasked);
        Assert.Equal(Cmos.RegD, _cmos.Index);
        Assert.Equal(Cmos.DValid, _bus.Read(Cmos.DataPort, 1));
        Assert.Equal(0x8Du, _bus.Read(Cmos.IndexPort, 1));
        _bus.Write(Cmos.IndexPort, 1, 0x80 | 0x40);
        _bus.Write(Cmos.DataPort, 1, 0x77);
        _bus.Write(Cmos.IndexPort, 1, 0x40);
        Assert.False(_cmos.NmiMasked);
        Assert.Equal(0x77u, _bus.Read(Cmos.DataPort, 1));
    }

    [Fact]
    public void UipIsSetOnlyInTheLast244MicrosecondsOfEachSecond()
    {
        Assert.Equal(0, Get(Cmos.RegA) & Cmos.AUip);
        Assert.Equal(Cmos.ADefault, Get(Cmos.RegA));
        _clock.NowNs = Second - Cmos.UipWindowNs - 1;
        Assert.Equal(0, Get(Cmos.RegA) & Cmos.AUip);
        _clock.NowNs = Second - Cmos.UipWindowNs;
        Assert.Equal(Cmos.AUip, Get(Cmos.RegA) & Cmos.AUip);
        _clock.NowNs = Second - 1;
        Assert.Equal(Cmos.AUip, Get(Cmos.RegA) & Cmos.AUip);
        Assert.Equal(0x30, Get(Cmos.RegSeconds)); // still the old second
        _clock.NowNs = Second;
        Assert.Equal(0, Get(Cmos.RegA) & Cmos.AUip);
        Assert.Equal(0x31, Get(Cmos.RegSeconds));
        _clock.NowNs = 5 * Second + 999_900_000;
        Assert.Equal(Cmos.AUip, Get(Cmos.RegA) & Cmos.AUip);
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BSet);
        Assert.Equal(0, Get(Cmos.RegA) & Cmos.AUip); // no updates while SET
    }

    [Fact]
    public void StatusAUipBitIsReadOnlyAndTheRestIsStored()
    {
        Set(Cmos.RegA, 0xA3);
        Assert.Equal(0x23, Get(Cmos.RegA));
    }

    [Fact]
    public void SetFreezesTimeAndWritesBecomeAnOffset()
    {
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BSet);
        _clock.Advance(10 * Second);
        Assert.Equal(0x30, Get(Cmos.RegSeconds)); // frozen
        // 2001-09-09 01:46:40 (Unix time 1,000,000,000), a Sunday.
        Set(Cmos.RegHours, 0x01);
        Set(Cmos.RegMinutes, 0x46);
        Set(Cmos.RegSeconds, 0x40);
        Set(Cmos.RegDay, 0x09);
        Set(Cmos.RegMonth, 0x09);
        Set(Cmos.RegYear, 0x01);
        Set(Cmos.RegCentury, 0x20);
        Assert.Equal(0x46, Get(Cmos.RegMinutes)); // the written values while frozen
        Set(Cmos.RegB, Cmos.BDefault);
        Assert.Equal(1_000_000_000L, _cmos.GuestSeconds);
        Assert.Equal(1_000_000_000L - (long)Wall - 10, _cmos.OffsetSeconds);
        Assert.Equal((0x01, 0x46, 0x40, 0x01, 0x09, 0x09, 0x01, 0x20), Time());
        _clock.Advance(3 * Second);
        Assert.Equal(0x43, Get(Cmos.RegSeconds)); // running again
    }

    [Fact]
    public void WritingATimeRegisterWithoutSetMovesTheClock()
    {
        Set(Cmos.RegYear, 0x27);
        Assert.Equal(0x27, Get(Cmos.RegYear));
        Assert.Equal(0x30, Get(Cmos.RegSeconds));
        Assert.Equal(365L * 86_400, _cmos.OffsetSeconds);
    }

    [Fact]
    public void TwelveHourWritesAreDecoded()
    {
        Set(Cmos.RegB, Cmos.BSet);
        Set(Cmos.RegHours, 0x92); // 12 PM
        Set(Cmos.RegB, 0);
        Set(Cmos.RegB, Cmos.B24Hour);
        Assert.Equal(0x12, Get(Cmos.RegHours));
        Set(Cmos.RegB, Cmos.BSet);
        Set(Cmos.RegHours, 0x12); // 12 AM
        Set(Cmos.RegB, 0);
        Set(Cmos.RegB, Cmos.B24Hour);
        Assert.Equal(0x00, Get(Cmos.RegHours));
    }

    [Fact]
    public void SettingSetClearsUie()
    {
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BUie | Cmos.BSet);
        Assert.Equal(Cmos.BDefault | Cmos.BSet, Get(Cmos.RegB));
    }

    [Fact]
    public void UpdateEndedFlagIrqAndStatusCClearsOnRead()
    {
        Set(Cmos.RegA, 0x20); // no periodic flag
        Assert.Equal(0, Get(Cmos.RegC));
        _clock.Advance(Second);
        Assert.Equal(Cmos.CUf, Get(Cmos.RegC)); // flag without IRQF: not enabled
        Assert.Equal(0, Get(Cmos.RegC)); // the read cleared it
        Assert.False(_irq.Level[Cmos.Irq]);

        Set(Cmos.RegB, Cmos.BDefault | Cmos.BUie);
        Assert.Equal(2 * Second, _cmos.NextEventNs);
        _clock.NowNs = 2 * Second - 1;
        _cmos.Poll();
        Assert.False(_irq.Level[Cmos.Irq]);
        _clock.NowNs = 2 * Second;
        _cmos.Poll();
        Assert.True(_irq.Level[Cmos.Irq]);
        Assert.True(_cmos.IrqLevel);
        _clock.Advance(Second);
        _cmos.Poll();
        Assert.Equal(1, _irq.RisingEdges[Cmos.Irq]); // held, not re-pulsed, until C is read
        Assert.Equal(Cmos.CIrqf | Cmos.CUf, Get(Cmos.RegC));
        Assert.False(_irq.Level[Cmos.Irq]);
        Assert.Equal(0, Get(Cmos.RegC));
        _clock.Advance(Second);
        _cmos.Poll();
        Assert.Equal(2, _irq.RisingEdges[Cmos.Irq]);
    }

    [Fact]
    public void PeriodicFlagIsSetEvenWhenNotEnabled()
    {
        _clock.Advance(Second / 1000); // the default rate 6 is 1024 Hz
        Assert.Equal(Cmos.CPf, Get(Cmos.RegC));
        Assert.False(_irq.Level[Cmos.Irq]);
    }

    [Fact]
    public void EnablingAnAlreadySetFlagRaisesTheLine()
    {
        _clock.Advance(Second);
        _cmos.Poll();
        Assert.False(_irq.Level[Cmos.Irq]);
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BUie);
        Assert.True(_irq.Level[Cmos.Irq]);
    }

    [Fact]
    public void NoUpdateEndedWhileSet()
    {
        Set(Cmos.RegA, 0x20); // no periodic flag
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BSet);
        _clock.Advance(5 * Second);
        Assert.Equal(0, Get(Cmos.RegC));
        Set(Cmos.RegB, Cmos.BDefault);
        Assert.Equal(0, Get(Cmos.RegC)); // no flags for the frozen seconds
    }

    [Fact]
    public void PeriodicFlagAtTheRateSelected()
    {
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BPie);
        Set(Cmos.RegA, 0x26); // rate 6: 1024 Hz, 32 ticks of 32.768 kHz
        ulong next = _cmos.NextEventNs;
        Assert.Equal(976_563UL, next); // ceil(1e9 / 1024)
        _clock.NowNs = next - 1;
        _cmos.Poll();
        Assert.False(_irq.Level[Cmos.Irq]);
        _clock.NowNs = next;
        _cmos.Poll();
        Assert.True(_irq.Level[Cmos.Irq]);
        Assert.Equal(Cmos.CIrqf | Cmos.CPf, Get(Cmos.RegC));
        Set(Cmos.RegA, 0x20); // rate 0: off
        _clock.Advance(Second);
        Assert.Equal(Cmos.CUf, Get(Cmos.RegC)); // the update only: no periodic flag, UF not enabled
        Assert.Equal(ulong.MaxValue, _cmos.NextEventNs);
    }

    [Fact]
    public void AlarmFlagWithDontCareFields()
    {
        Set(Cmos.RegA, 0x20); // no periodic flag
        Set(Cmos.RegSecondsAlarm, 0x35);
        Set(Cmos.RegMinutesAlarm, 0xC0); // any minute
        Set(Cmos.RegHoursAlarm, 0xFF); // any hour
        Set(Cmos.RegB, Cmos.BDefault | Cmos.BAie);
        _clock.NowNs = 4 * Second;
        Assert.Equal(Cmos.CUf, Get(Cmos.RegC)); // :34, no alarm yet
        _clock.NowNs = 5 * Second;
        Assert.Equal(Cmos.CIrqf | Cmos.CAf | Cmos.CUf, Get(Cmos.RegC));
        _clock.NowNs = 70 * Second; // passed :35 of the next minute while nobody looked
        Assert.Equal(Cmos.CIrqf | Cmos.CAf | Cmos.CUf, Get(Cmos.RegC));
        Set(Cmos.RegMinutesAlarm, 0x50);
        _clock.NowNs = 3000 * Second; // 14:35:30: passed 13:50:35
        Assert.Equal(Cmos.CIrqf | Cmos.CAf | Cmos.CUf, Get(Cmos.RegC));
        Set(Cmos.RegHoursAlarm, 0x03);
        _clock.NowNs = 4000 * Second; // no 03:50:35 in between
        Assert.Equal(Cmos.CUf, Get(Cmos.RegC));
    }

    [Fact]
    public void StatusDIsValidAndReadOnly()
    {
        Set(Cmos.RegD, 0);
        Assert.Equal(Cmos.DValid, Get(Cmos.RegD));
        Set(Cmos.RegC, 0xFF);
        Assert.Equal(0, Get(Cmos.RegC));
    }

    [Theory]
    [InlineData(16UL * MiB, 0UL, 15360, 0, 0UL)]
    [InlineData(32UL * MiB, 0UL, 31744, 256, 0UL)]
    [InlineData(512UL * MiB, 0UL, 0xFFFF, 7936, 0UL)]
    [InlineData(3UL * GiB, 1UL * GiB, 0xFFFF, 0xBF00, 0x4000UL)]
    [InlineData(4UL * GiB, 64UL * GiB, 0xFFFF, 0xFF00, 0x10_0000UL)]
    [InlineData(5UL * GiB, 0UL, 0xFFFF, 0xFFFF, 0UL)] // capped
    [InlineData(1UL * MiB, 0UL, 0, 0, 0UL)]
    public void MemorySizeBytes(ulong below, ulong above, int extKiB, int above16M, ulong above4G)
    {
        Cmos c = new Cmos(_clock, _irq, below, above);
        PortBus bus = PortBusWith.New(c, Cmos.IndexPort, 2);
        int Byte(int i)
        {
            bus.Write(Cmos.IndexPort, 1, (uint)i);
            return (int)bus.Read(Cmos.DataPort, 1);
        }
        Assert.Equal(640, Byte(0x15) | Byte(0x16) << 8);
        Assert.Equal(extKiB, Byte(0x17) | Byte(0x18) << 8);
        Assert.Equal(extKiB, Byte(0x30) | Byte(0x31) << 8);
        Assert.Equal(above16M, Byte(0x34) | Byte(0x35) << 8);
        Assert.Equal(above4G, (ulong)(Byte(0x5B) | Byte(0x5C) << 8 | Byte(0x5D) << 16));
        int sum = 0;
        for (int i = 0x10; i <= 0x2D; i++)
            sum += Byte(i);
        Assert.Equal(sum, Byte(0x2E) << 8 | Byte(0x2F));
    }

    [Fact]
    public void PlainRamIsStorage()
    {
        for (int i = 0x0E; i < 0x80; i++)
        {
            if (i == Cmos.RegCentury)
                continue;
            Set(i, (byte)(i ^ 0x5A));
        }
        for (int i = 0x0E; i < 0x80; i++)
        {
            if (i != Cmos.RegCentury)
                Assert.Equal((byte)(i ^ 0x5A), Get(i));
        }
    }
}
