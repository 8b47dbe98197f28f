using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>All the legacy devices on one bus at their standard ports, as a VM gets them.</summary>
public class PlatformPortsTests
{
    private sealed class Dummy : IPortDevice
    {
        public uint Read(ushort port, int size) => 0;
        public void Write(ushort port, int size, uint value) { }
    }

    private readonly ManualClock _clock = new ManualClock { WallSecondsAtZero = 1_000_000_000 };
    private readonly RecordingIrqSink _irq = new RecordingIrqSink();
    private readonly RecordingSerialSink _serial = new RecordingSerialSink();
    private readonly ResetLine _reset = new ResetLine();
    private readonly PortBus _bus = new PortBus(32);
    private readonly Uart16550 _uart;
    private readonly Cmos _cmos;
    private readonly I8042 _kbc;
    private readonly SystemControlA _portA;
    private readonly PciHost _pci;
    private readonly FwCfg _fw = new FwCfg(64 << 20, 1, 1, 4);
    private readonly DebugExit _exit = new DebugExit();

    public PlatformPortsTests()
    {
        _uart = new Uart16550(Uart16550.Com1Port, Uart16550.Com1Irq, _irq, _serial);
        _cmos = new Cmos(_clock, _irq, 64 << 20, 0);
        _kbc = new I8042(_reset, _irq);
        _portA = new SystemControlA(_reset);
        _pci = new PciHost(_reset);
        Assert.True(_bus.Register(Uart16550.Com1Port, Uart16550.PortCount, _uart));
        Assert.True(_bus.Register(Cmos.IndexPort, 2, _cmos));
        Assert.True(_bus.Register(I8042.DataPort, 1, _kbc));
        Assert.True(_bus.Register(I8042.CommandPort, 1, _kbc));
        Assert.True(_bus.Register(SystemControlA.Port, 1, _portA));
        Assert.True(_bus.Register(PciHost.AddressPort, PciHost.PortCount, _pci));
        Assert.True(_bus.Register(FwCfg.SelectorPort, FwCfg.PortCount, _fw));
        Assert.True(_bus.Register(DebugExit.Port, 1, _exit));
    }

    [Fact]
    public void AllRegisterWithoutOverlapAndEachPortReachesItsDevice()
    {
        Assert.Equal(8, _bus.Ranges);
        for (int p = 0x3F8; p < 0x400; p++)
            Assert.Same(_uart, _bus.Find((ushort)p));
        Assert.Same(_cmos, _bus.Find(0x70));
        Assert.Same(_cmos, _bus.Find(0x71));
        Assert.Same(_kbc, _bus.Find(0x60));
        Assert.Same(_kbc, _bus.Find(0x64));
        Assert.Same(_portA, _bus.Find(0x92));
        for (int p = 0xCF8; p < 0xD00; p++)
            Assert.Same(_pci, _bus.Find((ushort)p));
        Assert.Same(_fw, _bus.Find(0x510));
        Assert.Same(_fw, _bus.Find(0x511));
        Assert.Same(_exit, _bus.Find(0xF4));
        Assert.Null(_bus.Find(0x3F7));
        Assert.Null(_bus.Find(0x400));
        Assert.Null(_bus.Find(0x72));
        Assert.Null(_bus.Find(0x512));
    }

    [Fact]
    public void ThePicAndPitPortsStayFree()
    {
        // The 8259 pair with ELCR, the 8254 and port 0x61 (registered by the kernel wiring).
        Dummy d = new Dummy();
        Assert.True(_bus.Register(0x20, 2, d));
        Assert.True(_bus.Register(0xA0, 2, d));
        Assert.True(_bus.Register(0x4D0, 2, d));
        Assert.True(_bus.Register(0x40, 4, d));
        Assert.True(_bus.Register(0x61, 1, d));
    }

    [Fact]
    public void EveryStandardPortIsTakenOnce()
    {
        Dummy d = new Dummy();
        Assert.False(_bus.Register(0x3F8, 1, d));
        Assert.False(_bus.Register(0x3FF, 1, d));
        Assert.False(_bus.Register(0x70, 1, d));
        Assert.False(_bus.Register(0x60, 1, d));
        Assert.False(_bus.Register(0x64, 1, d));
        Assert.False(_bus.Register(0x92, 1, d));
        Assert.False(_bus.Register(0xCFC, 4, d));
        Assert.False(_bus.Register(0x511, 1, d));
        Assert.False(_bus.Register(0xF4, 1, d));
    }

    [Fact]
    public void AGuestSessionThroughTheBus()
    {
        _bus.Write(0x3F8, 1, 'o');
        _bus.Write(0x3F8, 1, 'k');
        Assert.Equal("ok"u8.ToArray(), _serial.Bytes.ToArray());
        _bus.Write(0x70, 1, 0x80 | Cmos.RegD);
        Assert.Equal(Cmos.DValid, _bus.Read(0x71, 1));
        _bus.Write(0xCF8, 4, 0x8000_0000);
        Assert.Equal(0x1237_8086u, _bus.Read(0xCFC, 4));
        _bus.Write(0x510, 2, FwCfg.KeyCpuCount);
        Assert.Equal(1u, _bus.Read(0x511, 1));
        _bus.Write(0x64, 1, 0xFE);
        Assert.True(_reset.Requested);
        _bus.Write(0xF4, 4, 0);
        Assert.True(_exit.ExitRequested);
        Assert.Equal(0u, _exit.ExitStatus);
        Assert.Equal(0xFFu, _bus.Read(0x80, 1)); // nobody's port
    }
}
