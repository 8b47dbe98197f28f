using System.Threading;
using Tandem.Mm;

namespace Tandem.Mm.Tests;

/// <summary>The host platform: one reference to a <see cref="HostMachine"/>.</summary>
public readonly unsafe struct HostPlatform : IMmPlatform
{
    private readonly HostMachine _machine;

    public HostPlatform(HostMachine machine) { _machine = machine; }

    public byte* PhysToVirt(PhysAddr address)
    {
        if (address.Value >= _machine.Size)
            throw new System.ArgumentOutOfRangeException(nameof(address), "physical address outside the host buffer");
        return _machine.Memory + address.Value;
    }

    public int CurrentCpu => HostMachine.ThreadCpu % _machine.Cpus;

    public int CpuCount => _machine.Cpus;

    public void FlushTlb(in TlbFlushRequest request) => _machine.RecordFlush(request);

    public void SpinPause() => Thread.Yield();

    public void DeferFree(object retired) { }

    public void FrameFreed(Pfn frame) { }

    public void WaitForChange(ref int word, int observed)
    {
        SpinWait spin = default;
        for (int i = 0; i < 200 && Volatile.Read(ref word) == observed; i++)
            spin.SpinOnce();
    }

    public void Checkpoint(MmCheckpoint site) => HostMachine.ThreadCheckpoint?.Invoke(site);
}
