using System.Collections.Generic;
using Tandem.Kvm.Devices;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>Records every line change: the current level per line and the rising edges.</summary>
public sealed class RecordingIrqSink : IIrqSink
{
    public readonly bool[] Level = new bool[24];
    public readonly int[] RisingEdges = new int[24];
    public readonly int[] Calls = new int[24];

    public void SetIrq(int irq, bool level)
    {
        Calls[irq]++;
        if (level && !Level[irq])
            RisingEdges[irq]++;
        Level[irq] = level;
    }
}

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock : IDeviceClock
{
    public ulong NowNs { get; set; }
    public ulong WallSecondsAtZero { get; set; }

    public void Advance(ulong ns) => NowNs += ns;
}

/// <summary>Collects transmitted bytes.</summary>
public sealed class RecordingSerialSink : ISerialSink
{
    public readonly List<byte> Bytes = new();

    public void Put(byte b) => Bytes.Add(b);
}
