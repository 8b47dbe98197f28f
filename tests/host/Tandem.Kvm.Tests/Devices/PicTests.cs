using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class PicTests
{
    /// <summary>The pair initialised as Linux's init_8259A does: master vectors 0x30, slave 0x38, cascade on IRQ 2, 8086 mode.</summary>
    private static (Pic8259 Pic, PortBus Bus) Linux(bool autoEoi = false)
    {
        Pic8259 pic = new Pic8259();
        PortBus bus = new PortBus(8);
        Assert.True(pic.Attach(bus));
        byte icw4 = (byte)(autoEoi ? 0x03 : 0x01);
        bus.Write(0x20, 1, 0x11);
        bus.Write(0x21, 1, 0x30);
        bus.Write(0x21, 1, 0x04);
        bus.Write(0x21, 1, icw4);
        bus.Write(0xA0, 1, 0x11);
        bus.Write(0xA1, 1, 0x38);
        bus.Write(0xA1, 1, 0x02);
        bus.Write(0xA1, 1, icw4);
        bus.Write(0x21, 1, 0x00);
        bus.Write(0xA1, 1, 0x00);
        return (pic, bus);
    }

    private static void Edge(Pic8259 pic, int irq)
    {
        pic.SetIrq(irq, true);
        pic.SetIrq(irq, false);
    }

    [Fact]
    public void AnEdgeIsDeliveredOnceAtItsVectorAndStaysInServiceUntilEoi()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        Assert.False(pic.HasInterrupt);
        Edge(pic, 0);
        Assert.True(pic.HasInterrupt);
        Assert.Equal(0x30, pic.Acknowledge());
        Assert.Equal(1, pic.Isr);
        Assert.Equal(0, pic.Irr);
        Assert.False(pic.HasInterrupt);
        bus.Write(0x20, 1, 0x20);            // non-specific EOI
        Assert.Equal(0, pic.Isr);
    }

    [Fact]
    public void ALowerPriorityRequestWaitsForTheEoiAndAHigherOneNests()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        Edge(pic, 3);
        Assert.Equal(0x33, pic.Acknowledge());
        Edge(pic, 5);
        Assert.False(pic.HasInterrupt);      // IRQ 5 is below IRQ 3, in service
        Edge(pic, 1);
        Assert.True(pic.HasInterrupt);       // IRQ 1 is above it: nests
        Assert.Equal(0x31, pic.Acknowledge());
        bus.Write(0x20, 1, 0x20);            // ends IRQ 1 (highest in service)
        Assert.Equal(1 << 3, pic.Isr);
        Assert.False(pic.HasInterrupt);
        bus.Write(0x20, 1, 0x20);            // ends IRQ 3
        Assert.True(pic.HasInterrupt);
        Assert.Equal(0x35, pic.Acknowledge());
    }

    [Fact]
    public void AMaskedRequestWaitsInIrrUntilUnmasked()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        bus.Write(0x21, 1, 0x01);
        Edge(pic, 0);
        Assert.False(pic.HasInterrupt);
        Assert.Equal(1u, bus.Read(0x20, 1));        // IRR (OCW3 default)
        Assert.Equal(1u, bus.Read(0x21, 1));        // IMR
        bus.Write(0x21, 1, 0x00);
        Assert.Equal(0x30, pic.Acknowledge());
    }

    [Fact]
    public void ASlaveInterruptGoesThroughTheCascadeAndNeedsBothEois()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        Edge(pic, 10);
        Assert.True(pic.HasInterrupt);
        Assert.Equal(0x3A, pic.Acknowledge());
        Assert.Equal((1 << 2) | (1 << 10), pic.Isr);
        Edge(pic, 12);
        Assert.False(pic.HasInterrupt);      // cascade (IRQ 2) in service on the master
        bus.Write(0xA0, 1, 0x20);
        bus.Write(0x20, 1, 0x20);
        Assert.True(pic.HasInterrupt);
        Assert.Equal(0x3C, pic.Acknowledge());
    }

    [Fact]
    public void AnEdgeLineHeldHighRequestsOnlyOnce()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        pic.SetIrq(4, true);
        Assert.Equal(0x34, pic.Acknowledge());
        bus.Write(0x20, 1, 0x20);
        pic.SetIrq(4, true);
        Assert.False(pic.HasInterrupt);
        pic.SetIrq(4, false);
        pic.SetIrq(4, true);
        Assert.Equal(0x34, pic.Acknowledge());
    }

    [Fact]
    public void ALevelLineRequestsAgainAfterEoiWhileHighAndNotOnceLow()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        bus.Write(0x4D1, 1, 0x02);           // IRQ 9 level-triggered
        pic.SetIrq(9, true);
        Assert.Equal(0x39, pic.Acknowledge());
        bus.Write(0xA0, 1, 0x20);
        bus.Write(0x20, 1, 0x20);
        Assert.True(pic.HasInterrupt);       // still high: requests again
        Assert.Equal(0x39, pic.Acknowledge());
        pic.SetIrq(9, false);                // the handler clears the device's condition, then EOIs
        bus.Write(0xA0, 1, 0x20);
        bus.Write(0x20, 1, 0x20);
        Assert.False(pic.HasInterrupt);
    }

    [Fact]
    public void AnAcknowledgeWithNothingPendingIsSpuriousIrq7WithoutInService()
    {
        (Pic8259 pic, PortBus _) = Linux();
        Assert.Equal(0x37, pic.Acknowledge());
        Assert.Equal(0, pic.Isr);
    }

    [Fact]
    public void AutomaticEoiLeavesNothingInService()
    {
        (Pic8259 pic, PortBus _) = Linux(autoEoi: true);
        Edge(pic, 6);
        Assert.Equal(0x36, pic.Acknowledge());
        Assert.Equal(0, pic.Isr);
        Edge(pic, 7);
        Assert.Equal(0x37, pic.Acknowledge());
    }

    [Fact]
    public void Ocw3SelectsIsrOrIrrAndPollAcknowledges()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        Edge(pic, 5);
        bus.Write(0x20, 1, 0x0B);            // read ISR
        Assert.Equal(0u, bus.Read(0x20, 1));
        bus.Write(0x20, 1, 0x0A);            // read IRR
        Assert.Equal(1u << 5, bus.Read(0x20, 1));
        bus.Write(0x20, 1, 0x0C);            // poll
        Assert.Equal(0x85u, bus.Read(0x20, 1));
        Assert.Equal(1 << 5, pic.Isr);
        bus.Write(0x20, 1, 0x0C);
        Assert.Equal(0u, bus.Read(0x20, 1));  // nothing more
    }

    [Fact]
    public void SetPriorityRotatesWhoWins()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        bus.Write(0x20, 1, 0xC0 | 3);        // IRQ 3 lowest: IRQ 4 highest
        Edge(pic, 2 + 1);
        Edge(pic, 4);
        Assert.Equal(0x34, pic.Acknowledge());
        bus.Write(0x20, 1, 0x60 | 4);        // specific EOI for IRQ 4
        Assert.Equal(0x33, pic.Acknowledge());
    }

    [Fact]
    public void ElcrKeepsTheAlwaysEdgeLinesEdge()
    {
        (Pic8259 _, PortBus bus) = Linux();
        bus.Write(0x4D0, 1, 0xFF);
        bus.Write(0x4D1, 1, 0xFF);
        Assert.Equal(0xF8u, bus.Read(0x4D0, 1));
        Assert.Equal(0xDEu, bus.Read(0x4D1, 1));
    }

    [Fact]
    public void NothingIsDeliveredWhileInitialising()
    {
        (Pic8259 pic, PortBus bus) = Linux();
        bus.Write(0x20, 1, 0x11);            // ICW1 again, no ICW2 yet
        Edge(pic, 1);
        Assert.False(pic.HasInterrupt);
        bus.Write(0x21, 1, 0x50);
        bus.Write(0x21, 1, 0x04);
        bus.Write(0x21, 1, 0x01);
        Assert.Equal(0x51, pic.Acknowledge());
    }
}
