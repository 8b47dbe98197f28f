using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

public class DebugExitTests
{
    [Fact]
    public void NothingRequestedAtFirst()
    {
        DebugExit d = new DebugExit();
        Assert.False(d.ExitRequested);
        Assert.Equal(0u, d.ExitStatus);
    }

    [Theory]
    [InlineData(1, 0x00u)]
    [InlineData(1, 0x2Au)]
    [InlineData(2, 0xBEEFu)]
    [InlineData(4, 0xDEAD_BEEFu)]
    public void AWriteOfAnyWidthEndsTheVmWithTheValueUnchanged(int size, uint value)
    {
        PortBus bus = new PortBus(4);
        DebugExit d = new DebugExit();
        Assert.True(bus.Register(DebugExit.Port, 1, d));
        bus.Write(DebugExit.Port, size, value);
        Assert.True(d.ExitRequested);
        Assert.Equal(value, d.ExitStatus); // Tandem's mapping: not QEMU's (value << 1) | 1.
    }

    [Fact]
    public void TheBusMasksTheValueToTheAccessWidth()
    {
        PortBus bus = new PortBus(4);
        DebugExit d = new DebugExit();
        bus.Register(DebugExit.Port, 1, d);
        bus.Write(DebugExit.Port, 1, 0x1234);
        Assert.Equal(0x34u, d.ExitStatus);
    }

    [Fact]
    public void TheFirstWriteWinsUntilCleared()
    {
        DebugExit d = new DebugExit();
        d.Write(DebugExit.Port, 1, 3);
        d.Write(DebugExit.Port, 1, 0);
        Assert.Equal(3u, d.ExitStatus);
        d.Clear();
        Assert.False(d.ExitRequested);
        d.Write(DebugExit.Port, 4, 7);
        Assert.True(d.ExitRequested);
        Assert.Equal(7u, d.ExitStatus);
    }

    [Fact]
    public void ReadsAreAllOnes() => Assert.Equal(0xFFu, PortBusWith.New(new DebugExit(), DebugExit.Port, 1).Read(DebugExit.Port, 1));
}

/// <summary>A bus holding one device, for tests that read through the bus.</summary>
public static class PortBusWith
{
    public static PortBus New(IPortDevice device, ushort first, int count)
    {
        PortBus bus = new PortBus(4);
        Assert.True(bus.Register(first, count, device));
        return bus;
    }
}
