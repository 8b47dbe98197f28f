using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class PciHostTests
{
    private readonly ResetLine _reset = new ResetLine();
    private readonly PciHost _pci;
    private readonly PortBus _bus;

    public PciHostTests()
    {
        _pci = new PciHost(_reset);
        _bus = PortBusWith.New(_pci, PciHost.AddressPort, PciHost.PortCount);
    }

    private static uint Address(int bus, int dev, int fn, int reg) =>
        0x8000_0000u | (uint)(bus << 16) | (uint)(dev << 11) | (uint)(fn << 8) | (uint)(reg & 0xFC);

    private uint ReadDword(uint address)
    {
        _bus.Write(PciHost.AddressPort, 4, address);
        return _bus.Read(PciHost.DataPort, 4);
    }

    [Fact]
    public void HostBridgeIdsThroughDwordAccess()
    {
        Assert.Equal(0x1237_8086u, ReadDword(Address(0, 0, 0, 0x00)));
        uint classRev = ReadDword(Address(0, 0, 0, 0x08));
        Assert.Equal(0x0600_00u, classRev >> 8); // class 06, subclass 00, prog-if 00
        Assert.Equal(0u, (ReadDword(Address(0, 0, 0, 0x0C)) >> 16) & 0xFF); // header type 0
    }

    [Fact]
    public void HostBridgeIdsThroughByteAndWordAccess()
    {
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x00));
        Assert.Equal(0x86u, _bus.Read(0xCFC, 1));
        Assert.Equal(0x80u, _bus.Read(0xCFD, 1));
        Assert.Equal(0x37u, _bus.Read(0xCFE, 1));
        Assert.Equal(0x12u, _bus.Read(0xCFF, 1));
        Assert.Equal(0x8086u, _bus.Read(0xCFC, 2));
        Assert.Equal(0x1237u, _bus.Read(0xCFE, 2));
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x08));
        Assert.Equal(0x06u, _bus.Read(0xCFF, 1));
        Assert.Equal(0x00u, _bus.Read(0xCFE, 1));
    }

    [Theory]
    [InlineData(0, 1, 0)]
    [InlineData(0, 0, 1)]
    [InlineData(0, 31, 7)]
    [InlineData(1, 0, 0)]
    [InlineData(255, 3, 2)]
    public void AbsentFunctionsReadAllOnesInEveryWidth(int bus, int dev, int fn)
    {
        Assert.Equal(0xFFFF_FFFFu, ReadDword(Address(bus, dev, fn, 0)));
        Assert.Equal(0xFFFFu, _bus.Read(0xCFE, 2));
        Assert.Equal(0xFFu, _bus.Read(0xCFD, 1));
    }

    [Fact]
    public void WritesToAbsentFunctionsAreIgnoredAndDoNotLeakIntoTheBridge()
    {
        _bus.Write(PciHost.AddressPort, 4, Address(0, 1, 0, 0x04));
        _bus.Write(PciHost.DataPort, 4, 0xFFFF_FFFF);
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x3C));
        Assert.Equal(0u, _bus.Read(PciHost.DataPort, 1));
        Assert.Equal(0u, ReadDword(Address(0, 0, 0, 0x04)) & 0xFFFF);
    }

    [Fact]
    public void DisabledAddressReadsAllOnesAndIgnoresWrites()
    {
        Assert.Equal(0xFFFF_FFFFu, _bus.Read(PciHost.DataPort, 4)); // power-on latch: disabled
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0) & 0x7FFF_FFFF);
        Assert.Equal(0xFFFF_FFFFu, _bus.Read(PciHost.DataPort, 4));
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x3C) & 0x7FFF_FFFF);
        _bus.Write(PciHost.DataPort, 1, 0x0B);
        Assert.Equal(0u, ReadDword(Address(0, 0, 0, 0x3C)) & 0xFF);
    }

    [Fact]
    public void OnlyDwordAccessesLatchTheAddressAndReadsReturnTheLatch()
    {
        uint a = Address(0, 0, 0, 0x08);
        _bus.Write(PciHost.AddressPort, 4, a | 0x7F00_0003); // reserved bits read back 0
        Assert.Equal(a, _bus.Read(PciHost.AddressPort, 4));
        _bus.Write(PciHost.AddressPort, 1, 0x00);
        _bus.Write(PciHost.AddressPort, 2, 0x0000);
        Assert.Equal(a, _bus.Read(PciHost.AddressPort, 4));
        Assert.Equal(0xFFu, _bus.Read(PciHost.AddressPort, 1));
        Assert.Equal(0xFFFFu, _bus.Read(0xCFA, 2));
    }

    [Fact]
    public void IdsAreReadOnlyAndOnlyTheDocumentedBitsAreWritable()
    {
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x00));
        _bus.Write(PciHost.DataPort, 4, 0);
        Assert.Equal(0x1237_8086u, _bus.Read(PciHost.DataPort, 4));
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x04));
        _bus.Write(PciHost.DataPort, 4, 0xFFFF_FFFF);
        Assert.Equal(0x0280_0007u, _bus.Read(PciHost.DataPort, 4));
        _bus.Write(0xCFC, 2, 0x0000);
        Assert.Equal(0x0280_0000u, _bus.Read(PciHost.DataPort, 4));
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x3C));
        _bus.Write(0xCFC, 1, 0x0B);
        Assert.Equal(0x0Bu, _bus.Read(PciHost.DataPort, 4));
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x0C));
        _bus.Write(0xCFD, 1, 0x40); // latency timer
        Assert.Equal(0x0000_4000u, _bus.Read(PciHost.DataPort, 4));
    }

    [Fact]
    public void ResetControlAt0xCF9PullsResetOnBit2Rising()
    {
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x08));
        _bus.Write(PciHost.ResetControlPort, 1, 0x02); // system reset selected, no reset yet
        Assert.Equal(0x02u, _bus.Read(PciHost.ResetControlPort, 1));
        Assert.Equal(0u, _reset.Count);
        _bus.Write(PciHost.ResetControlPort, 1, 0x06);
        Assert.True(_reset.Requested);
        _bus.Write(PciHost.ResetControlPort, 1, 0x06); // no new edge
        Assert.Equal(1u, _reset.Count);
        Assert.Equal(Address(0, 0, 0, 0x08), _bus.Read(PciHost.AddressPort, 4)); // the latch is untouched
    }

    [Fact]
    public void WithoutAResetLine0xCF9IsAnEmptyPort()
    {
        PciHost pci = new PciHost(null);
        pci.Write(PciHost.ResetControlPort, 1, 0x06);
        Assert.Equal(0xFFu, pci.Read(PciHost.ResetControlPort, 1) & 0xFF);
    }

    [Fact]
    public void ResetClearsTheLatchAndTheWritableBits()
    {
        _bus.Write(PciHost.AddressPort, 4, Address(0, 0, 0, 0x04));
        _bus.Write(PciHost.DataPort, 2, 0x0007);
        _bus.Write(PciHost.ResetControlPort, 1, 0x02);
        _pci.Reset();
        Assert.Equal(0u, _bus.Read(PciHost.AddressPort, 4));
        Assert.Equal(0u, _bus.Read(PciHost.ResetControlPort, 1));
        Assert.Equal(0x0280_0000u, ReadDword(Address(0, 0, 0, 0x04)));
        Assert.Equal(0x1237_8086u, ReadDword(Address(0, 0, 0, 0x00)));
    }
}
