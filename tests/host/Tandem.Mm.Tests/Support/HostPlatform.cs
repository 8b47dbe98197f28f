using System.Threading;
using Tandem.Mm;
using Tandem.Testing;

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

    // With ReuseFreedFramesAtOnce every CPU shares cache 0 (the frame database is the only user).
    public int CurrentCpu => _machine.ReuseFreedFramesAtOnce ? 0 : HostMachine.ThreadCpu % _machine.Cpus;

    public int CpuCount => _machine.Cpus;

    public void FlushTlb(in TlbFlushRequest request) => _machine.RecordFlush(request);

    public void SpinPause()
    {
        AccessMonitor.Step(SharedAccessKind.Spin, 0);
        Thread.Yield();
    }

    public void DeferFree(object retired) { }

    public void FrameFreed(Pfn frame) => _machine.PoisonFrame(frame);

    public void PreemptDisable() { }

    public void PreemptEnable() { }

    public void WaitForChange(ref int word, int observed)
    {
        SpinWait spin = default;
        for (int i = 0; i < 200 && Volatile.Read(ref word) == observed; i++)
        {
            AccessMonitor.Step(SharedAccessKind.Spin, 0);
            spin.SpinOnce();
        }
    }

    public void Checkpoint(MmCheckpoint site) => HostMachine.ThreadCheckpoint?.Invoke(site);
}
