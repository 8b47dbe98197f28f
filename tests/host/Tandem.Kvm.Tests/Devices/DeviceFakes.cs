using System.Collections.Generic;
using Tandem.Kvm.Devices;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>A clock the test advances by hand.</summary>
public sealed class ManualClock : IDeviceClock
{
    public ulong NowNs { get; set; }

    public ulong WallSecondsAtZero { get; set; }

    public void Advance(ulong ns) => NowNs += ns;
}

/// <summary>Records every line change and counts rising edges per line.</summary>
public sealed class RecordingIrqSink : IIrqSink
{
    public readonly bool[] Level = new bool[24];
    public readonly int[] Rises = new int[24];
    public readonly List<(int Irq, bool Level)> Changes = new List<(int, bool)>();

    public void SetIrq(int irq, bool level)
    {
        if (level && !Level[irq])
            Rises[irq]++;
        Level[irq] = level;
        Changes.Add((irq, level));
    }
}
