using System;
using Tandem.Kvm.Devices;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Devices;

public class PitTests
{
    private readonly ITestOutputHelper _out;

    public PitTests(ITestOutputHelper output) => _out = output;

    private static (Pit8254 Pit, PortBus Bus, ManualClock Clock, RecordingIrqSink Irq) Make()
    {
        ManualClock clock = new ManualClock { NowNs = 5_000_000_000 };
        RecordingIrqSink irq = new RecordingIrqSink();
        Pit8254 pit = new Pit8254(irq, clock);
        PortBus bus = new PortBus(4);
        Assert.True(pit.Attach(bus));
        return (pit, bus, clock, irq);
    }

    private static void Program(PortBus bus, int channel, int mode, ushort count)
    {
        bus.Write(0x43, 1, (uint)((channel << 6) | 0x30 | (mode << 1)));
        bus.Write((ushort)(0x40 + channel), 1, (uint)(count & 0xFF));
        bus.Write((ushort)(0x40 + channel), 1, (uint)(count >> 8));
    }

    private static ushort Latch(PortBus bus, int channel)
    {
        bus.Write(0x43, 1, (uint)(channel << 6));
        uint lo = bus.Read((ushort)(0x40 + channel), 1);
        uint hi = bus.Read((ushort)(0x40 + channel), 1);
        return (ushort)(lo | (hi << 8));
    }

    [Fact]
    public void RateGeneratorOnChannel0RaisesIrq0OncePerPeriod()
    {
        (Pit8254 pit, PortBus bus, ManualClock clock, RecordingIrqSink irq) = Make();
        ulong start = clock.NowNs;
        Program(bus, 0, 2, 11932);                  // about 100 Hz
        ulong period = Pit8254.NsFor(11932);
        Assert.Equal(start + period, pit.NextIrqNs);
        pit.Poll();
        Assert.Equal(0, irq.RisingEdges[0]);
        clock.NowNs = start + period - 1;
        pit.Poll();
        Assert.Equal(0, irq.RisingEdges[0]);
        clock.NowNs = start + period;
        pit.Poll();
        Assert.Equal(1, irq.RisingEdges[0]);
        Assert.False(irq.Level[0]);                 // an edge: raised, then lowered
        Assert.Equal(start + Pit8254.NsFor(2 * 11932), pit.NextIrqNs);
        for (int i = 2; i <= 100; i++)
        {
            clock.NowNs = start + Pit8254.NsFor((ulong)i * 11932);
            pit.Poll();
            pit.Poll();
        }
        Assert.Equal(100, irq.RisingEdges[0]);
    }

    [Fact]
    public void AFreshPitHasNothingArmedUntilChannel0IsLoaded()
    {
        (Pit8254 pit, PortBus bus, ManualClock _, RecordingIrqSink _) = Make();
        Assert.False(pit.Armed);
        Assert.Equal(ulong.MaxValue, pit.NextIrqNs);
        bus.Write(0x43, 1, 0x34);
        Assert.False(pit.Armed);                    // control word alone: no count yet
        bus.Write(0x40, 1, 0x10);
        bus.Write(0x40, 1, 0x00);
        Assert.True(pit.Armed);
    }

    [Fact]
    public void MissedPeriodsCoalesceIntoOneEdge()
    {
        (Pit8254 pit, PortBus bus, ManualClock clock, RecordingIrqSink irq) = Make();
        ulong start = clock.NowNs;
        Program(bus, 0, 2, 1000);
        clock.NowNs = start + Pit8254.NsFor(10_500);
        pit.Poll();
        pit.Poll();
        Assert.Equal(1, irq.RisingEdges[0]);
        Assert.Equal(start + Pit8254.NsFor(11_000), pit.NextIrqNs);
    }

    [Fact]
    public void Mode0OnChannel0InterruptsOnceAtTerminalCount()
    {
        (Pit8254 pit, PortBus bus, ManualClock clock, RecordingIrqSink irq) = Make();
        ulong start = clock.NowNs;
        Program(bus, 0, 0, 500);
        clock.NowNs = start + Pit8254.NsFor(500);
        pit.Poll();
        clock.NowNs = start + Pit8254.NsFor(5000);
        pit.Poll();
        Assert.Equal(1, irq.RisingEdges[0]);
        Assert.Equal(ulong.MaxValue, pit.NextIrqNs);
    }

    [Fact]
    public void Channel2CalibrationAsLinuxDoesItSeesOut2RiseAfterTheCount()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        // Gate high, speaker off; channel 2 in mode 0, lo/hi; count 0xFFFF.
        bus.Write(0x61, 1, (bus.Read(0x61, 1) & ~2u) | 1);
        ulong start = clock.NowNs;
        Program(bus, 2, 0, 0xFFFF);
        Assert.Equal(0u, bus.Read(0x61, 1) & 0x20);
        clock.NowNs = start + Pit8254.NsFor(0xFFFE);
        Assert.Equal(0u, bus.Read(0x61, 1) & 0x20);
        clock.NowNs = start + Pit8254.NsFor(0xFFFF);
        Assert.Equal(0x20u, bus.Read(0x61, 1) & 0x20);
        Assert.Equal(1u, bus.Read(0x61, 1) & 1);
    }

    [Fact]
    public void Mode0PausesWhileTheGateIsLow()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        bus.Write(0x61, 1, 1);
        Program(bus, 2, 0, 10000);
        clock.Advance(Pit8254.NsFor(4000));
        Assert.Equal(6000, Latch(bus, 2));
        bus.Write(0x61, 1, 0);                      // gate low
        clock.Advance(Pit8254.NsFor(50000));
        Assert.Equal(6000, Latch(bus, 2));
        bus.Write(0x61, 1, 1);
        clock.Advance(Pit8254.NsFor(1000));
        Assert.Equal(5000, Latch(bus, 2));
    }

    [Fact]
    public void ALatchHoldsTheValueWhileTimePasses()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        Program(bus, 0, 2, 30000);
        clock.Advance(Pit8254.NsFor(1234));
        bus.Write(0x43, 1, 0x00);                   // latch channel 0
        clock.Advance(Pit8254.NsFor(10000));
        uint lo = bus.Read(0x40, 1);
        clock.Advance(Pit8254.NsFor(10000));
        uint hi = bus.Read(0x40, 1);
        Assert.Equal(30000 - 1234, (int)(lo | (hi << 8)));
        // After the latch was read, reads are live again.
        Assert.Equal((30000 - 21234) & 0xFF, (int)bus.Read(0x40, 1));
    }

    [Fact]
    public void ReadBackLatchesStatusAndCount()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        bus.Write(0x43, 1, 0x80 | 0x30 | (3 << 1));   // channel 2, lo/hi, mode 3
        bus.Write(0x43, 1, 0xC0 | 0x20 | (1 << 3));   // read-back: status only, channel 2
        Assert.Equal(0x40u | 0x30u | (3u << 1) | 0x80u, bus.Read(0x42, 1));  // null count, OUT high in mode 3
        bus.Write(0x42, 1, 100);
        bus.Write(0x42, 1, 0);
        bus.Write(0x43, 1, 0xC0 | (1 << 3));           // read-back: status and count
        Assert.Equal(0x30u | (3u << 1) | 0x80u, bus.Read(0x42, 1));
        clock.Advance(Pit8254.NsFor(10));
        Assert.Equal(100u, bus.Read(0x42, 1) | (bus.Read(0x42, 1) << 8));
    }

    [Fact]
    public void LowOnlyAndHighOnlyAccessAndCountZeroIs65536()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        bus.Write(0x43, 1, 0x40 | 0x10 | (2 << 1));   // channel 1, low byte only, mode 2
        bus.Write(0x41, 1, 200);
        clock.Advance(Pit8254.NsFor(50));
        Assert.Equal(150u, bus.Read(0x41, 1));
        bus.Write(0x43, 1, 0x40 | 0x20 | (2 << 1));   // high byte only
        bus.Write(0x41, 1, 2);                         // count 0x200
        clock.Advance(Pit8254.NsFor(0x100));
        Assert.Equal(1u, bus.Read(0x41, 1));
        Program(bus, 1, 2, 0);
        clock.Advance(Pit8254.NsFor(1));
        Assert.Equal(0xFFFF, Latch(bus, 1));
    }

    [Fact]
    public void SquareWaveIsHighForTheFirstHalfOfEachPeriod()
    {
        (Pit8254 _, PortBus bus, ManualClock clock, RecordingIrqSink _) = Make();
        bus.Write(0x61, 1, 1);
        ulong start = clock.NowNs;
        Program(bus, 2, 3, 1000);
        clock.NowNs = start + Pit8254.NsFor(499);
        Assert.Equal(0x20u, bus.Read(0x61, 1) & 0x20);
        clock.NowNs = start + Pit8254.NsFor(500);
        Assert.Equal(0u, bus.Read(0x61, 1) & 0x20);
        clock.NowNs = start + Pit8254.NsFor(1000);
        Assert.Equal(0x20u, bus.Read(0x61, 1) & 0x20);
    }

    [Fact]
    public void TickConversionsRoundTripWithoutOverflow()
    {
        int seed = TestSeed.Pick(_out.WriteLine, nameof(TickConversionsRoundTripWithoutOverflow));
        Random r = new Random(seed);
        for (int i = 0; i < 100_000; i++)
        {
            ulong t = (ulong)r.NextInt64(0, 1L << 44);
            ulong ns = Pit8254.NsFor(t);
            Assert.Equal(t, Pit8254.TicksIn(ns));
            if (t > 0)
                Assert.Equal(t - 1, Pit8254.TicksIn(ns - 1));     // ns is the first nanosecond of tick t
        }
        Assert.Equal(Pit8254.Frequency * 3600 * 24 * 365, Pit8254.TicksIn(1_000_000_000UL * 3600 * 24 * 365));
    }
}
