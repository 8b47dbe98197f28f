using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class Uart16550Tests
{
    private const ushort Base = Uart16550.Com1Port;
    private const ushort Rbr = Base, Ier = Base + 1, Iir = Base + 2, Lcr = Base + 3, Mcr = Base + 4, Lsr = Base + 5, Msr = Base + 6, Scr = Base + 7;
    private const int Irq = Uart16550.Com1Irq;

    private readonly RecordingIrqSink _irq = new RecordingIrqSink();
    private readonly RecordingSerialSink _out = new RecordingSerialSink();
    private readonly Uart16550 _uart;
    private readonly PortBus _bus;

    public Uart16550Tests()
    {
        _uart = new Uart16550(Base, Irq, _irq, _out);
        _bus = PortBusWith.New(_uart, Base, Uart16550.PortCount);
    }

    private byte In(ushort port) => (byte)_bus.Read(port, 1);
    private void Out(ushort port, byte value) => _bus.Write(port, 1, value);
    private byte IirId() => (byte)(In(Iir) & 0x0F);

    [Fact]
    public void PowerOnState()
    {
        Assert.Equal(0, In(Ier));
        Assert.Equal(Uart16550.IirNone, In(Iir));
        Assert.Equal(0, In(Lcr));
        Assert.Equal(0, In(Mcr));
        Assert.Equal(0x60, In(Lsr));
        Assert.Equal(Uart16550.MsrIdle, In(Msr));
        Assert.False(_irq.Level[Irq]);
        Assert.Equal(0, _irq.Calls[Irq]);
    }

    [Fact]
    public void TransmitGoesToTheSinkAndLsrStaysEmpty()
    {
        foreach (byte b in "hi\n"u8.ToArray())
            Out(Rbr, b);
        Assert.Equal("hi\n"u8.ToArray(), _out.Bytes.ToArray());
        Assert.Equal(0x60, In(Lsr) & 0x60);
    }

    [Fact]
    public void DlabSwitchesThrAndIerToTheDivisorLatch()
    {
        Out(Ier, 0x05);
        Out(Lcr, 0x83);
        Assert.Equal(12, In(Rbr)); // DLL's reset value: 9600 baud
        Out(Rbr, 0x01); // DLL, not THR
        Out(Ier, 0x02); // DLM, not IER
        Assert.Empty(_out.Bytes);
        Assert.Equal(0x01, In(Rbr));
        Assert.Equal(0x02, In(Ier));
        Out(Lcr, 0x03);
        Assert.Equal(0x05, In(Ier));
        Assert.Equal(0x03, In(Lcr));
        Out(Rbr, (byte)'x');
        Assert.Equal(new[] { (byte)'x' }, _out.Bytes.ToArray());
        Out(Lcr, 0x80);
        Assert.Equal(0x01, In(Rbr));
        Assert.Equal(0x02, In(Ier));
    }

    [Fact]
    public void ScratchAndIerHoldTheirBits()
    {
        Out(Scr, 0xA5);
        Assert.Equal(0xA5, In(Scr));
        Out(Ier, 0xFF);
        Assert.Equal(0x0F, In(Ier));
        Out(Mcr, 0xFF);
        Assert.Equal(0x1F, In(Mcr));
    }

    [Fact]
    public void ReceiveWithoutFifoHoldsOneByteAndTheRestWaitsInTheHostBuffer()
    {
        Assert.True(_uart.Receive(0x41));
        Assert.True(_uart.Receive(0x42));
        Assert.Equal(1, _uart.RxFifoCount);
        Assert.Equal(1, _uart.HostBuffered);
        Assert.Equal(Uart16550.LsrDataReady, In(Lsr) & Uart16550.LsrDataReady);
        Assert.Equal(0x41, In(Rbr));
        Assert.Equal(0x42, In(Rbr));
        Assert.Equal(0, In(Lsr) & Uart16550.LsrDataReady);
        Assert.Equal(0x42, In(Rbr)); // empty: the last byte again
    }

    /// <summary>
    /// ReceiveRoom is what Events.PollConsole trusts: that many bytes go in without a drop, it
    /// shrinks with each byte the host buffer keeps and grows as the guest reads.
    /// </summary>
    [Fact]
    public void ReceiveRoomIsWhatTheHostBufferTakesWithoutADrop()
    {
        Out(Iir, 0x07); // enable and clear FIFOs
        Assert.Equal(Uart16550.HostBufferSize, _uart.ReceiveRoom);
        for (int i = 0; i < Uart16550.FifoSize; i++)
            Assert.True(_uart.Receive((byte)i));
        Assert.Equal(Uart16550.HostBufferSize, _uart.ReceiveRoom); // the FIFO took them
        int room = _uart.ReceiveRoom;
        for (int i = 0; i < room; i++)
            Assert.True(_uart.Receive((byte)(16 + i)));
        Assert.Equal(0, _uart.ReceiveRoom);
        Assert.Equal(0UL, _uart.Dropped);
        In(Rbr);
        Assert.Equal(1, _uart.ReceiveRoom);                        // a read moved one byte into the FIFO
        Assert.True(_uart.Receive(0x55));
        Assert.Equal(0, _uart.ReceiveRoom);
        Assert.Equal(0UL, _uart.Dropped);
    }

    [Fact]
    public void FifoHolds16AndTheHostBuffer256ThenBytesAreDroppedWithOverrun()
    {
        Out(Iir, 0x07); // enable and clear FIFOs
        for (int i = 0; i < Uart16550.FifoSize + Uart16550.HostBufferSize; i++)
            Assert.True(_uart.Receive((byte)i));
        Assert.Equal(16, _uart.RxFifoCount);
        Assert.Equal(256, _uart.HostBuffered);
        Assert.False(_uart.Receive(0xEE));
        Assert.False(_uart.Receive(0xEF));
        Assert.Equal(2UL, _uart.Dropped);
        byte lsr = In(Lsr);
        Assert.Equal(Uart16550.LsrOverrun, lsr & Uart16550.LsrOverrun);
        Assert.Equal(0, In(Lsr) & Uart16550.LsrOverrun); // reading LSR cleared OE
        for (int i = 0; i < 16 + 256; i++)
            Assert.Equal((byte)i, In(Rbr));
        Assert.Equal(0, In(Lsr) & Uart16550.LsrDataReady);
        Assert.True(_uart.Receive(7));
        Assert.Equal(7, In(Rbr));
    }

    [Fact]
    public void FcrClearsTheFifoAndIirShowsFifosEnabled()
    {
        Out(Iir, 0x01);
        Assert.Equal(Uart16550.IirFifoEnabled, In(Iir) & 0xC0);
        for (int i = 0; i < 5; i++)
            _uart.Receive((byte)i);
        Out(Iir, 0x03); // clear the receive FIFO
        Assert.Equal(0, _uart.RxFifoCount);
        Assert.Equal(0, In(Lsr) & Uart16550.LsrDataReady);
        _uart.Receive(9);
        Out(Iir, 0x00); // FIFOs off: cleared again
        Assert.Equal(0, _uart.RxFifoCount);
        Assert.Equal(0, In(Iir) & 0xC0);
    }

    [Fact]
    public void NoIrqWithoutOut2()
    {
        Out(Ier, 0x0F);
        _uart.Receive(1);
        Assert.Equal(Uart16550.IirRxData, IirId()); // pending, but the line is gated
        Assert.False(_irq.Level[Irq]);
        Out(Mcr, Uart16550.McrOut2);
        Assert.True(_irq.Level[Irq]);
    }

    [Fact]
    public void ReceivedDataRaisesTheLineUntilTheFifoIsRead()
    {
        Out(Mcr, Uart16550.McrOut2 | Uart16550.McrDtr | Uart16550.McrRts);
        Out(Ier, Uart16550.IerRxData);
        Assert.False(_irq.Level[Irq]);
        _uart.Receive(0x61);
        Assert.True(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirRxData, IirId());
        Assert.True(_irq.Level[Irq]); // reading IIR does not clear received data
        Assert.Equal(0x61, In(Rbr));
        Assert.False(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirNone, IirId());
        Assert.Equal(1, _irq.RisingEdges[Irq]);
    }

    [Theory]
    [InlineData(0x00, 1)]
    [InlineData(0x40, 4)]
    [InlineData(0x80, 8)]
    [InlineData(0xC0, 14)]
    public void TriggerLevelSeparatesTimeoutFromDataAvailable(byte fcrTrigger, int level)
    {
        Out(Iir, (byte)(fcrTrigger | 0x01));
        Out(Ier, Uart16550.IerRxData);
        for (int i = 0; i < level - 1; i++)
        {
            _uart.Receive((byte)i);
            Assert.Equal(Uart16550.IirTimeout, IirId());
        }
        _uart.Receive(0xFF);
        Assert.Equal(Uart16550.IirRxData, IirId());
        Assert.Equal(0xC0 | Uart16550.IirRxData, In(Iir));
        In(Rbr);
        if (level > 1)
            Assert.Equal(Uart16550.IirTimeout, IirId());
    }

    [Fact]
    public void ThrEmptyIsRaisedOnEnableAndClearedByReadingIir()
    {
        Out(Mcr, Uart16550.McrOut2);
        Out(Ier, Uart16550.IerThrEmpty);
        Assert.True(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirThrEmpty, IirId()); // this read clears it
        Assert.False(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirNone, IirId());
        Out(Ier, Uart16550.IerThrEmpty); // already enabled: no new interrupt
        Assert.Equal(Uart16550.IirNone, IirId());
        Out(Ier, 0);
        Out(Ier, Uart16550.IerThrEmpty); // 0 -> 1 again
        Assert.Equal(Uart16550.IirThrEmpty, IirId());
    }

    [Fact]
    public void EachTransmittedByteGivesTheLineAFreshEdge()
    {
        Out(Mcr, Uart16550.McrOut2);
        Out(Ier, Uart16550.IerThrEmpty);
        Assert.Equal(1, _irq.RisingEdges[Irq]);
        for (int i = 0; i < 3; i++)
            Out(Rbr, (byte)'a'); // writing THR clears THRE, the byte leaves, THRE again
        Assert.Equal(4, _irq.RisingEdges[Irq]);
        Assert.True(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirThrEmpty, IirId());
        Assert.False(_irq.Level[Irq]);
    }

    [Fact]
    public void IirReportsSourcesInPriorityOrder()
    {
        Out(Iir, 0x01); // FIFOs on, trigger 1
        Out(Mcr, Uart16550.McrOut2 | Uart16550.McrLoopback); // loopback: modem deltas appear
        Out(Mcr, Uart16550.McrOut2 | Uart16550.McrLoopback | Uart16550.McrRts); // DCTS
        Out(Ier, 0x0F); // everything; THRE pending from the 0 -> 1 edge
        // Fill the FIFO and overrun it through loopback.
        for (int i = 0; i < Uart16550.FifoSize + 1; i++)
            Out(Rbr, (byte)i);
        Assert.Equal(Uart16550.IirLineStatus, IirId());
        Assert.Equal(Uart16550.IirLineStatus, IirId()); // IIR does not clear line status
        In(Lsr);
        Assert.Equal(Uart16550.IirRxData, IirId());
        for (int i = 0; i < Uart16550.FifoSize; i++)
            Assert.Equal(i, In(Rbr));
        Assert.Equal(Uart16550.IirThrEmpty, IirId()); // and this read clears THRE
        Assert.Equal(Uart16550.IirModemStatus, IirId());
        Assert.Equal(0x93, In(Msr)); // DCD (OUT2), CTS (RTS); DCTS and DDSR from the two MCR writes
        Assert.Equal(Uart16550.IirNone, IirId());
    }

    [Fact]
    public void LoopbackModemLinesAndDeltas()
    {
        Out(Mcr, Uart16550.McrLoopback);
        Assert.Equal(0x0B, In(Msr)); // CTS, DSR, DCD fell (their deltas); RI was already low
        Assert.Equal(0x00, In(Msr));
        Out(Mcr, Uart16550.McrLoopback | Uart16550.McrDtr | Uart16550.McrRts | Uart16550.McrOut1 | Uart16550.McrOut2);
        Assert.Equal(0xFB, In(Msr)); // all four lines; deltas except TERI
        Out(Mcr, Uart16550.McrLoopback | Uart16550.McrDtr | Uart16550.McrRts | Uart16550.McrOut2);
        Assert.Equal(0xB4, In(Msr)); // RI fell: TERI
        Out(Mcr, 0);
        Assert.Equal(Uart16550.MsrIdle, In(Msr) & 0xF0);
    }

    [Fact]
    public void LoopbackSendsToTheReceiverAndHoldsHostInputBack()
    {
        Out(Mcr, Uart16550.McrLoopback);
        _uart.Receive(0x55);
        Assert.Equal(0, _uart.RxFifoCount);
        Out(Rbr, 0x33);
        Assert.Empty(_out.Bytes);
        Assert.Equal(0x33, In(Rbr));
        Out(Mcr, 0);
        Assert.Equal(0x55, In(Rbr));
    }

    [Fact]
    public void NoIrqInLoopbackEvenWithOut2()
    {
        Out(Mcr, Uart16550.McrLoopback | Uart16550.McrOut2);
        Out(Ier, Uart16550.IerRxData);
        Out(Rbr, 1);
        Assert.Equal(Uart16550.IirRxData, IirId());
        Assert.False(_irq.Level[Irq]);
    }

    [Fact]
    public void LineStatusInterruptForAHostOverrun()
    {
        Out(Mcr, Uart16550.McrOut2);
        Out(Ier, Uart16550.IerLineStatus);
        for (int i = 0; i < 1 + Uart16550.HostBufferSize; i++)
            _uart.Receive(0);
        Assert.False(_irq.Level[Irq]);
        _uart.Receive(0);
        Assert.True(_irq.Level[Irq]);
        Assert.Equal(Uart16550.IirLineStatus, IirId());
        In(Lsr);
        Assert.False(_irq.Level[Irq]);
    }

    [Fact]
    public void WordAccessesTouchSuccessiveRegisters()
    {
        _bus.Write(Lcr, 2, 0x0B03); // LCR = 3, MCR = 0x0B
        Assert.Equal(0x03, In(Lcr));
        Assert.Equal(0x0B, In(Mcr));
        Assert.Equal(0x0B03u, _bus.Read(Lcr, 2));
        Out(Mcr, 0);
        Out(Scr, 0x5A);
        Assert.Equal(0xFF5A_B060u, _bus.Read(Lsr, 4)); // LSR, MSR, SCR, then past the device
    }

    [Fact]
    public void FloodingOutputDoesNotAllocate()
    {
        NullSink sink = new NullSink();
        Uart16550 u = new Uart16550(Base, Irq, _irq, sink);
        u.Write(Ier, 1, 0x0F);
        u.Write(Mcr, 1, Uart16550.McrOut2);
        for (int i = 0; i < 1000; i++)
            u.Write(Base, 1, (uint)i); // warm up
        long before = System.GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1_000_000; i++)
        {
            u.Write(Base, 1, (uint)i);
            u.Read(Iir, 1);
        }
        Assert.Equal(before, System.GC.GetAllocatedBytesForCurrentThread());
        Assert.Equal(1_001_000, sink.Count);
    }

    private sealed class NullSink : ISerialSink
    {
        public int Count;
        public void Put(byte b) => Count++;
    }

    [Fact]
    public void ResetDropsStateAndLowersTheLine()
    {
        Out(Mcr, Uart16550.McrOut2);
        Out(Ier, Uart16550.IerRxData);
        _uart.Receive(1);
        Assert.True(_irq.Level[Irq]);
        _uart.Reset();
        Assert.False(_irq.Level[Irq]);
        Assert.Equal(0, _uart.RxFifoCount);
        Assert.Equal(0, In(Ier));
    }
}
