using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class I8042Tests
{
    private readonly ResetLine _reset = new ResetLine();
    private readonly RecordingIrqSink _irq = new RecordingIrqSink();
    private readonly I8042 _kbc;
    private readonly PortBus _bus = new PortBus(8);

    public I8042Tests()
    {
        _kbc = new I8042(_reset, _irq);
        Assert.True(_bus.Register(I8042.DataPort, 1, _kbc));
        Assert.True(_bus.Register(I8042.CommandPort, 1, _kbc));
    }

    private byte Status() => (byte)_bus.Read(I8042.CommandPort, 1);
    private void Command(byte c) => _bus.Write(I8042.CommandPort, 1, c);
    private void Data(byte b) => _bus.Write(I8042.DataPort, 1, b);
    private byte ReadData() => (byte)_bus.Read(I8042.DataPort, 1);

    [Fact]
    public void StatusAfterResetHasSystemFlagAndEmptyBuffers()
    {
        byte s = Status();
        Assert.Equal(0, s & I8042.StatusOutputFull);
        Assert.Equal(0, s & 0x02); // input buffer never full
        Assert.NotEqual(0, s & I8042.StatusSystemFlag);
        Assert.NotEqual(0, s & I8042.StatusNotInhibited);
    }

    [Fact]
    public void SelfTestAnswers55AndInterfaceTestAnswers0()
    {
        Command(0xAA);
        Assert.NotEqual(0, Status() & I8042.StatusOutputFull);
        Assert.NotEqual(0, Status() & I8042.StatusCommand);
        Assert.Equal(0x55, ReadData());
        Assert.Equal(0, Status() & I8042.StatusOutputFull);
        Command(0xAB);
        Assert.Equal(0x00, ReadData());
    }

    [Fact]
    public void CommandByteReadAndWrite()
    {
        Command(0x20);
        Assert.Equal(I8042.DefaultCommandByte, ReadData());
        Command(0x60);
        Data(0x00); // system flag off, interrupts off
        Assert.Equal(0, Status() & I8042.StatusCommand);
        Assert.Equal(0, Status() & I8042.StatusSystemFlag);
        Command(0x20);
        Assert.Equal(0x00, ReadData());
        Assert.Equal(0u, _reset.Count);
    }

    [Fact]
    public void ControllerRamBeyondTheCommandByte()
    {
        Command(0x65);
        Data(0x5A);
        Command(0x25);
        Assert.Equal(0x5A, ReadData());
        Command(0x20);
        Assert.Equal(I8042.DefaultCommandByte, ReadData());
    }

    [Fact]
    public void DisableAndEnableKeyboardAndMouseFlipTheCommandByteBits()
    {
        Command(0xAD);
        Command(0xA7);
        Assert.Equal(I8042.DefaultCommandByte | 0x30, _kbc.CommandByte);
        Command(0xAE);
        Assert.Equal(I8042.DefaultCommandByte | 0x20, _kbc.CommandByte);
        Command(0xA8);
        Assert.Equal(I8042.DefaultCommandByte, _kbc.CommandByte);
    }

    [Fact]
    public void PulseResetCommandPullsTheResetLine()
    {
        Command(0xFE);
        Assert.True(_reset.Requested);
        Assert.Equal(1u, _reset.Count);
        _reset.Acknowledge();
        Assert.False(_reset.Requested);
        Command(0xFF); // pulses nothing
        Command(0xFD); // bit 1 only
        Assert.Equal(1u, _reset.Count);
        Command(0xF0); // all four, bit 0 among them
        Assert.Equal(2u, _reset.Count);
    }

    [Fact]
    public void WritingOutputPortBit0ClearPullsResetAndBit1IsA20()
    {
        Command(0xD0);
        Assert.Equal(I8042.DefaultOutputPort, ReadData());
        Command(0xD1);
        Data(0x01); // A20 off, reset released
        Assert.False(_kbc.A20);
        Assert.Equal(0u, _reset.Count);
        Command(0xD0);
        Assert.Equal(0x01, ReadData());
        Command(0xD1);
        Data(0x02);
        Assert.True(_reset.Requested);
        Assert.True(_kbc.A20);
    }

    [Fact]
    public void ADataByteWithoutPendingCommandGoesToTheAbsentKeyboard()
    {
        Data(0xFE); // would be the reset pulse if it were taken as a command
        Data(0xF4);
        Assert.Equal(0u, _reset.Count);
        Assert.Equal(0, Status() & I8042.StatusOutputFull);
    }

    [Fact]
    public void D2PutsTheByteInTheOutputBufferAndRaisesIrq1WhileFull()
    {
        Command(0xD2);
        Data(0x1C);
        Assert.True(_irq.Level[1]);
        Assert.Equal(1, _irq.RisingEdges[1]);
        Assert.Equal(0x1C, ReadData());
        Assert.False(_irq.Level[1]);
        Assert.Equal(0x1C, ReadData()); // an empty buffer reads the last byte again
    }

    [Fact]
    public void NoIrqWhenTheCommandByteDisablesIt()
    {
        Command(0x60);
        Data(0x44);
        Command(0xAA);
        Assert.False(_irq.Level[1]);
        Assert.Equal(0, _irq.RisingEdges[1]);
    }

    [Fact]
    public void ResetRestoresThePowerOnState()
    {
        Command(0x60);
        Data(0x00);
        Command(0xAA);
        _kbc.Reset();
        Assert.Equal(I8042.DefaultCommandByte, _kbc.CommandByte);
        Assert.Equal(0, Status() & I8042.StatusOutputFull);
    }
}

public class SystemControlATests
{
    [Fact]
    public void Bit0RisingPullsResetAndBit1IsA20()
    {
        ResetLine reset = new ResetLine();
        SystemControlA a = new SystemControlA(reset);
        PortBus bus = PortBusWith.New(a, SystemControlA.Port, 1);
        Assert.Equal(SystemControlA.DefaultValue, bus.Read(SystemControlA.Port, 1));
        Assert.True(a.A20);
        bus.Write(SystemControlA.Port, 1, 0x00);
        Assert.False(a.A20);
        Assert.Equal(0u, reset.Count);
        bus.Write(SystemControlA.Port, 1, 0x03);
        Assert.True(reset.Requested);
        Assert.True(a.A20);
        bus.Write(SystemControlA.Port, 1, 0x03); // already set: no new edge
        Assert.Equal(1u, reset.Count);
        bus.Write(SystemControlA.Port, 1, 0x02);
        bus.Write(SystemControlA.Port, 1, 0x01);
        Assert.Equal(2u, reset.Count);
        Assert.Equal(0x01u, bus.Read(SystemControlA.Port, 1));
    }
}
