using System.Collections.Generic;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>Records the IOAPIC's interrupt messages; accepts them unless told otherwise.</summary>
public sealed class RecordingApicBus : IApicBus
{
    public readonly List<(uint Destination, bool Logical, int Mode, int Vector, bool Level)> Messages = new();
    public bool Accepting = true;

    public bool Deliver(uint destination, bool logical, int deliveryMode, int vector, bool level)
    {
        Messages.Add((destination, logical, deliveryMode, vector, level));
        return Accepting;
    }
}

public class IoApicTests
{
    private const uint Masked = 1u << 16;
    private const uint Level = 1u << 15;
    private const uint RemoteIrr = 1u << 14;
    private const uint ActiveLow = 1u << 13;
    private const uint Logical = 1u << 11;

    private static (IoApic IoApic, RecordingApicBus Bus) Make()
    {
        RecordingApicBus bus = new RecordingApicBus();
        return (new IoApic(bus), bus);
    }

    private static uint R(IMmioDevice io, uint reg)
    {
        io.Write(0x00, 4, reg);
        return (uint)io.Read(0x10, 4);
    }

    private static void W(IMmioDevice io, uint reg, uint value)
    {
        io.Write(0x00, 4, reg);
        io.Write(0x10, 4, value);
    }

    /// <summary>Programs entry <paramref name="pin"/> the way Linux does: the high half (destination) first, then the low half.</summary>
    private static void Route(IMmioDevice io, int pin, uint low, byte destination)
    {
        W(io, (uint)(0x11 + 2 * pin), (uint)destination << 24);
        W(io, (uint)(0x10 + 2 * pin), low);
    }

    [Fact]
    public void IdVersionAndArbitrationRegisters()
    {
        (IoApic io, _) = Make();
        Assert.Equal(0x0017_0011u, R(io, 0x01));
        W(io, 0x01, 0);
        Assert.Equal(0x0017_0011u, R(io, 0x01));
        Assert.Equal(0u, R(io, 0x00));
        W(io, 0x00, 0xFFFF_FFFF);
        Assert.Equal(0x0F00_0000u, R(io, 0x00));
        Assert.Equal(0x0F00_0000u, R(io, 0x02));
        W(io, 0x02, 0);
        Assert.Equal(0x0F00_0000u, R(io, 0x02));
        io.Write(0x00, 1, 0x01);                                     // a byte write to IOREGSEL
        Assert.Equal(0x01UL, io.Read(0x00, 4));
        Assert.Equal(0u, R(io, 0x40));                               // past the table
    }

    [Fact]
    public void RedirectionEntriesResetMaskedAndKeepOnlyWritableBits()
    {
        (IoApic io, _) = Make();
        for (int pin = 0; pin < IoApic.Pins; pin++)
        {
            Assert.Equal(Masked, R(io, (uint)(0x10 + 2 * pin)));
            Assert.Equal(0u, R(io, (uint)(0x11 + 2 * pin)));
        }
        W(io, 0x10 + 2 * 23, 0xFFFF_FFFF);
        Assert.Equal(0x0001_AFFFu, R(io, 0x10 + 2 * 23));            // no delivery status, no remote IRR
        W(io, 0x11 + 2 * 23, 0xFFFF_FFFF);
        Assert.Equal(0xFF00_0000u, R(io, 0x11 + 2 * 23));
        Assert.Equal(0xFF00_0000_0001_AFFFUL, io.Entry(23));
    }

    [Fact]
    public void OtherWidthsAndOffsetsAreIgnoredAndCounted()
    {
        (IoApic io, _) = Make();
        io.Write(0x00, 4, 0x01);
        Assert.Equal(0UL, io.Read(0x10, 1));
        Assert.Equal(0UL, io.Read(0x20, 4));
        io.Write(0x10, 2, 0);
        io.Write(0x40, 4, 0);
        Assert.Equal(4UL, io.BadMmioAccesses);
        Assert.Equal(0x0017_0011u, R(io, 0x01));
    }

    [Fact]
    public void AnEdgeEntryDeliversOnTheRisingEdgeOnly()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        Route(io, 4, Logical | (1u << 8) | 0x34, 0x03);             // lowest priority, logical 0x03
        io.SetIrq(4, true);
        (uint d, bool logical, int mode, int vector, bool level) = Assert.Single(bus.Messages);
        Assert.Equal(3u, d);
        Assert.True(logical);
        Assert.Equal(IpiRequest.LowestPriority, mode);
        Assert.Equal(0x34, vector);
        Assert.False(level);
        io.SetIrq(4, true);                                          // held high: no new edge
        Assert.Single(bus.Messages);
        io.SetIrq(4, false);
        io.SetIrq(4, true);
        Assert.Equal(2, bus.Messages.Count);
        Assert.Equal(0u, R(io, 0x10 + 2 * 4) & RemoteIrr);
    }

    [Fact]
    public void AnEdgeWhileMaskedIsLost()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        Route(io, 1, Masked | 0x31, 0);
        IrqLines.Pulse(io, 1);
        io.SetIrq(1, true);
        Assert.Empty(bus.Messages);
        Route(io, 1, 0x31, 0);                                       // unmasked while the line is high
        Assert.Empty(bus.Messages);
        io.SetIrq(1, false);
        io.SetIrq(1, true);
        Assert.Single(bus.Messages);
    }

    [Fact]
    public void ALevelEntryHoldsRemoteIrrUntilEoiAndDeliversAgainIfStillAsserted()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        Route(io, 10, Level | 0x5A, 1);
        io.SetIrq(10, true);
        (uint d, _, _, int vector, bool level) = Assert.Single(bus.Messages);
        Assert.Equal(1u, d);
        Assert.Equal(0x5A, vector);
        Assert.True(level);
        Assert.Equal(RemoteIrr, R(io, 0x10 + 2 * 10) & RemoteIrr);
        io.SetIrq(10, false);
        io.SetIrq(10, true);
        Assert.Single(bus.Messages);                                 // remote IRR holds it off
        io.Eoi(0x5B);                                                // another vector: nothing
        Assert.Equal(RemoteIrr, R(io, 0x10 + 2 * 10) & RemoteIrr);
        io.Eoi(0x5A);
        Assert.Equal(2, bus.Messages.Count);                         // still asserted: again
        Assert.Equal(RemoteIrr, R(io, 0x10 + 2 * 10) & RemoteIrr);
        io.SetIrq(10, false);
        io.Eoi(0x5A);
        Assert.Equal(2, bus.Messages.Count);
        Assert.Equal(0u, R(io, 0x10 + 2 * 10) & RemoteIrr);
        io.SetIrq(10, true);
        Assert.Equal(3, bus.Messages.Count);
    }

    [Fact]
    public void UnmaskingAnAssertedLevelPinDelivers()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        Route(io, 11, Masked | Level | 0x60, 0);
        io.SetIrq(11, true);
        Assert.Empty(bus.Messages);
        Assert.Equal(0u, R(io, 0x10 + 2 * 11) & RemoteIrr);
        Route(io, 11, Level | 0x60, 0);
        Assert.Single(bus.Messages);
        Route(io, 11, Level | 0x60, 0);                              // rewritten with remote IRR set: nothing
        Assert.Single(bus.Messages);
        Assert.Equal(RemoteIrr, R(io, 0x10 + 2 * 11) & RemoteIrr);   // kept across the write
        Route(io, 11, 0x60, 0);                                      // switched to edge: remote IRR gone
        Assert.Equal(0u, R(io, 0x10 + 2 * 11) & RemoteIrr);
    }

    [Fact]
    public void ALevelMessageNobodyAcceptsLeavesRemoteIrrClear()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        bus.Accepting = false;
        Route(io, 12, Level | 0x61, 7);
        io.SetIrq(12, true);
        Assert.Single(bus.Messages);
        Assert.Equal(0u, R(io, 0x10 + 2 * 12) & RemoteIrr);
    }

    [Fact]
    public void ActiveLowPinsAssertWhenTheLineGoesLow()
    {
        (IoApic io, RecordingApicBus bus) = Make();
        io.SetIrq(16, true);                                         // a PCI line idles high
        io.SetIrq(17, true);
        Route(io, 16, ActiveLow | Level | 0x70, 0);
        Route(io, 17, ActiveLow | 0x71, 0);
        Assert.Empty(bus.Messages);
        io.SetIrq(16, false);
        Assert.Single(bus.Messages);
        Assert.Equal(0x70, bus.Messages[0].Vector);
        io.SetIrq(17, false);                                        // a falling edge asserts
        Assert.Equal(2, bus.Messages.Count);
        io.SetIrq(17, true);
        Assert.Equal(2, bus.Messages.Count);
        io.SetIrq(16, true);                                         // deasserted: the EOI does not re-deliver
        io.Eoi(0x70);
        Assert.Equal(2, bus.Messages.Count);

        // An active-low level pin left low is asserted as soon as it is unmasked.
        Route(io, 18, ActiveLow | Level | 0x72, 0);
        Assert.Equal(3, bus.Messages.Count);
    }

    [Fact]
    public void IsaIrq0IsPin2AndTheRestAreTheirOwnPins()
    {
        Assert.Equal(2, IoApic.PinForIsaIrq(0));
        for (int irq = 1; irq < 16; irq++)
            Assert.Equal(irq, IoApic.PinForIsaIrq(irq));
        (IoApic io, RecordingApicBus bus) = Make();
        io.SetIrq(24, true);                                         // no such pin
        io.SetIrq(-1, true);
        Assert.Empty(bus.Messages);
    }

    [Fact]
    public void ResetMasksEverything()
    {
        (IoApic io, _) = Make();
        Route(io, 3, 0x33, 1);
        W(io, 0x00, 0x0200_0000);
        io.Reset();
        Assert.Equal(Masked, R(io, 0x10 + 2 * 3));
        Assert.Equal(0u, R(io, 0x11 + 2 * 3));
        Assert.Equal(0u, R(io, 0x00));
    }

    // ---- end to end: IOAPIC -> local APIC -> acknowledge -> EOI -> IOAPIC ----

    private static (IoApic IoApic, LocalApic Apic, ManualClock Clock) Wire()
    {
        ManualClock clock = new ManualClock { NowNs = 1_000_000 };
        LocalApic apic = new LocalApic(0, true, clock, 1_000_000_000, 1_000_000_000, null);
        IoApic io = new IoApic(apic);
        apic.EoiListener = io;
        apic.Write(0xF0, 4, 0x1FF);                                  // software-enable
        return (io, apic, clock);
    }

    [Fact]
    public void LevelInterruptRoundTripThroughTheLocalApic()
    {
        (IoApic io, LocalApic apic, _) = Wire();
        Route(io, 9, Level | 0x49, 0);
        io.SetIrq(9, true);
        Assert.Equal(0x49, apic.PendingVector);
        Assert.Equal(0x49, apic.Acknowledge());
        Assert.NotEqual(0UL, apic.Read(0x180 + 0x20, 4) & (1UL << 9)); // TMR: level
        apic.Write(0xB0, 4, 0);                                       // EOI: remote IRR cleared, pin still high
        Assert.Equal(0x49, apic.LastLevelEoi);
        Assert.Equal(0x49, apic.PendingVector);                      // delivered again
        Assert.Equal(RemoteIrr, R(io, 0x10 + 2 * 9) & RemoteIrr);
        io.SetIrq(9, false);                                         // the device is served
        Assert.Equal(0x49, apic.Acknowledge());
        apic.Write(0xB0, 4, 0);
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(0u, R(io, 0x10 + 2 * 9) & RemoteIrr);
        Assert.Equal(2UL, io.Deliveries);
    }

    [Fact]
    public void EdgeInterruptFromIsaIrq0ThroughPin2()
    {
        (IoApic io, LocalApic apic, _) = Wire();
        Route(io, IoApic.PinForIsaIrq(0), 0x30, 0);
        IrqLines.Pulse(io, IoApic.PinForIsaIrq(0));
        Assert.Equal(0x30, apic.Acknowledge());
        apic.Write(0xB0, 4, 0);
        Assert.Equal(-1, apic.LastLevelEoi);                         // an edge EOI goes nowhere
        Assert.Equal(-1, apic.PendingVector);
    }

    [Fact]
    public void AMessageForAnotherApicIDIsNotAcceptedAndSetsNoRemoteIrr()
    {
        (IoApic io, LocalApic apic, _) = Wire();
        Route(io, 5, Level | 0x55, 1);
        io.SetIrq(5, true);
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(0u, R(io, 0x10 + 2 * 5) & RemoteIrr);
        Route(io, 6, Level | 0x56, 0xFF);                            // broadcast
        io.SetIrq(6, true);
        Assert.Equal(0x56, apic.PendingVector);
    }
}
