using Tandem.Kvm.Devices;
using Tandem.Kvm.Tests.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Acpi;

public class AcpiPmTests
{
    private readonly ManualClock _clock = new ManualClock();
    private readonly RecordingIrqSink _irq = new RecordingIrqSink();
    private readonly AcpiPm _pm;
    private readonly PortBus _bus = new PortBus(4);

    private const ushort Sts = AcpiPm.EventBlockPort;
    private const ushort En = AcpiPm.EventBlockPort + 2;
    private const ushort Cnt = AcpiPm.ControlBlockPort;
    private const ushort Tmr = AcpiPm.TimerPort;

    public AcpiPmTests()
    {
        _pm = new AcpiPm(_clock, _irq, 9);
        Assert.True(_bus.Register(AcpiPm.BasePort, AcpiPm.PortCount, _pm));
    }

    private static uint SleepWrite(int type, bool enable) => (uint)(type << AcpiPm.SleepTypeShift) | (enable ? AcpiPm.SleepEnable : 0u);

    [Fact]
    public void PowerOnStateIsAcpiModeWithNothingPending()
    {
        Assert.Equal(1u, _bus.Read(Cnt, 2)); // SCI_EN
        Assert.Equal(0u, _bus.Read(Sts, 2));
        Assert.Equal(0u, _bus.Read(En, 2));
        Assert.False(_pm.PowerOffRequested);
        Assert.False(_pm.SleepRequested);
        Assert.Equal(0, _irq.Calls[9]);
    }

    [Fact]
    public void SciEnStaysSetWhateverTheGuestWrites()
    {
        _bus.Write(Cnt, 2, 0);
        Assert.Equal(1u, _bus.Read(Cnt, 2) & 1);
        _bus.Write(Cnt, 1, 0);
        Assert.Equal(1u, _bus.Read(Cnt, 1) & 1);
    }

    [Fact]
    public void S5WithSlpEnPowersOff()
    {
        _bus.Write(Cnt, 2, SleepWrite(AcpiPm.S5SleepType, true) | 1);
        Assert.True(_pm.PowerOffRequested);
        Assert.False(_pm.SleepRequested);
    }

    [Fact]
    public void LinuxSequenceTypeFirstThenTypeWithSlpEnPowersOff()
    {
        // acpi_hw_legacy_sleep: read PM1_CNT, clear SLP_TYP and SLP_EN, write the type, then write
        // again with SLP_EN set.
        uint cnt = _bus.Read(Cnt, 2) & ~(uint)(AcpiPm.SleepEnable | (7 << AcpiPm.SleepTypeShift));
        cnt |= SleepWrite(AcpiPm.S5SleepType, false);
        _bus.Write(Cnt, 2, cnt);
        Assert.False(_pm.PowerOffRequested);
        Assert.Equal((uint)AcpiPm.S5SleepType, (_bus.Read(Cnt, 2) >> AcpiPm.SleepTypeShift) & 7);
        _bus.Write(Cnt, 2, cnt | AcpiPm.SleepEnable);
        Assert.True(_pm.PowerOffRequested);
        Assert.Equal(0u, _bus.Read(Cnt, 2) & AcpiPm.SleepEnable); // write-only
    }

    [Fact]
    public void AByteWriteToTheHighHalfAlsoPowersOff()
    {
        _bus.Write(Cnt + 1, 1, SleepWrite(AcpiPm.S5SleepType, true) >> 8);
        Assert.True(_pm.PowerOffRequested);
    }

    [Fact]
    public void AWideWriteFromTheEventBlockReachesTheControlBlock()
    {
        // A 4-byte write at 0x602 covers PM1_EN and PM1_CNT.
        _bus.Write(En, 4, (SleepWrite(AcpiPm.S5SleepType, true) << 16) | AcpiPm.PowerButton);
        Assert.True(_pm.PowerOffRequested);
        Assert.Equal(AcpiPm.PowerButton, _pm.Enable);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(7)]
    public void OtherSleepTypesAskToSleepAndNeverPowerOff(int type)
    {
        _bus.Write(Cnt, 2, SleepWrite(type, true));
        Assert.False(_pm.PowerOffRequested);
        Assert.True(_pm.SleepRequested);
        Assert.Equal(type, _pm.SleepType);
        _pm.CompleteSleep();
        Assert.False(_pm.SleepRequested);
        Assert.Equal(AcpiPm.Wake, (ushort)_bus.Read(Sts, 2)); // the guest's wait for WAK_STS ends
    }

    [Theory]
    [InlineData(5, false)]
    [InlineData(0, false)]
    public void WithoutSlpEnNothingHappens(int type, bool enable)
    {
        _bus.Write(Cnt, 2, SleepWrite(type, enable));
        _bus.Write(Cnt, 1, 0xFF); // the low byte holds no SLP_EN
        Assert.False(_pm.PowerOffRequested);
        Assert.False(_pm.SleepRequested);
    }

    [Fact]
    public void StatusBitsAreWriteOneToClear()
    {
        _pm.PressPowerButton();
        _pm.CompleteSleep();
        Assert.Equal((uint)(AcpiPm.PowerButton | AcpiPm.Wake), _bus.Read(Sts, 2));
        _bus.Write(Sts, 2, 0); // writing 0 changes nothing
        Assert.Equal((uint)(AcpiPm.PowerButton | AcpiPm.Wake), _bus.Read(Sts, 2));
        _bus.Write(Sts, 2, AcpiPm.Wake);
        Assert.Equal((uint)AcpiPm.PowerButton, _bus.Read(Sts, 2));
        _bus.Write(Sts + 1, 1, AcpiPm.PowerButton >> 8);
        Assert.Equal(0u, _bus.Read(Sts, 2));
    }

    [Fact]
    public void AnEnabledPowerButtonRaisesTheSciUntilCleared()
    {
        _pm.PressPowerButton();
        Assert.False(_irq.Level[9]); // not enabled yet
        _bus.Write(En, 2, AcpiPm.PowerButton | AcpiPm.Global);
        Assert.True(_irq.Level[9]);
        Assert.True(_pm.SciLevel);
        Assert.Equal((uint)(AcpiPm.PowerButton | AcpiPm.Global), _bus.Read(En, 2));
        _bus.Write(Sts, 2, AcpiPm.PowerButton);
        Assert.False(_irq.Level[9]);
        Assert.Equal(1, _irq.RisingEdges[9]);
        Assert.Equal(2, _irq.Calls[9]); // only level changes reach the sink
    }

    [Fact]
    public void EnableKeepsOnlyItsDefinedBits()
    {
        _bus.Write(En, 2, 0xFFFF);
        Assert.Equal((uint)(AcpiPm.Timer | AcpiPm.Global | AcpiPm.PowerButton | AcpiPm.SleepButton | AcpiPm.Rtc | AcpiPm.PciExpWake), _bus.Read(En, 2));
    }

    [Fact]
    public void ThePmTimerCountsAt3579545HzIn32Bits()
    {
        Assert.Equal(0u, _bus.Read(Tmr, 4));
        _clock.Advance(1_000_000_000);
        Assert.Equal(3_579_545u, _bus.Read(Tmr, 4));
        _clock.NowNs = 1_000_000; // 1 ms
        Assert.Equal(3579u, _bus.Read(Tmr, 4));
        _clock.NowNs = 1200UL * 1_000_000_000; // 1200 s: past 2^32 ticks, wraps
        uint wrapped = unchecked((uint)(1200UL * 3_579_545));
        Assert.Equal(wrapped, _bus.Read(Tmr, 4));
        Assert.Equal(wrapped >> 16, _bus.Read(Tmr + 2, 2));
        _bus.Write(Tmr, 4, 0); // read-only
        Assert.Equal(wrapped, _bus.Read(Tmr, 4));
    }

    [Fact]
    public void TheUnusedPortsReadAllOnes()
    {
        Assert.Equal(0xFFFFu, _bus.Read(AcpiPm.BasePort + 6, 2));
        _bus.Write(AcpiPm.BasePort + 6, 2, 0);
        Assert.Equal(0xFFFFu, _bus.Read(AcpiPm.BasePort + 6, 2));
    }

    [Fact]
    public void ResetForgetsEverything()
    {
        _bus.Write(En, 2, AcpiPm.PowerButton);
        _pm.PressPowerButton();
        _bus.Write(Cnt, 2, SleepWrite(AcpiPm.S5SleepType, true));
        Assert.True(_irq.Level[9]);
        _pm.Reset();
        Assert.False(_pm.PowerOffRequested);
        Assert.False(_irq.Level[9]);
        Assert.Equal(1u, _bus.Read(Cnt, 2));
        Assert.Equal(0u, _bus.Read(Sts, 4));
    }

    [Fact]
    public void WithoutAnSciSinkNothingIsRaised()
    {
        AcpiPm pm = new AcpiPm(_clock, null, 9);
        pm.Write(En, 2, AcpiPm.PowerButton);
        pm.PressPowerButton();
        Assert.True(pm.SciLevel);
    }

    [Fact]
    public void TheBlockFitsBesideEveryOtherPlatformPort()
    {
        PortBus bus = new PortBus(32);
        AcpiPm pm = new AcpiPm(_clock, _irq, 9);
        Assert.True(bus.Register(AcpiPm.BasePort, AcpiPm.PortCount, pm));
        ushort[][] taken =
        {
            new ushort[] { 0x20, 2 }, new ushort[] { 0x40, 4 }, new ushort[] { 0x60, 1 }, new ushort[] { 0x61, 1 },
            new ushort[] { 0x64, 1 }, new ushort[] { 0x70, 2 }, new ushort[] { 0x92, 1 }, new ushort[] { 0xA0, 2 },
            new ushort[] { 0xF4, 1 }, new ushort[] { 0x3F8, 8 }, new ushort[] { 0x4D0, 2 }, new ushort[] { 0x502, 1 },
            new ushort[] { 0x510, 2 }, new ushort[] { 0xCF8, 8 },
        };
        foreach (ushort[] r in taken)
            Assert.True(bus.Register(r[0], r[1], new DebugExit()), $"0x{r[0]:X} overlaps the ACPI block");
    }
}
