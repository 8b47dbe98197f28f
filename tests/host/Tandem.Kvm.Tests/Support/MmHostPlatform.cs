using System.Threading;
using Tandem.Mm;
using Tandem.Testing;

namespace Tandem.Kvm.Tests;

/// <summary>mm's platform on the host (same shape as the mm tests' HostPlatform).</summary>
public readonly unsafe struct MmHostPlatform : IMmPlatform
{
    private readonly KvmMachine _machine;

    public MmHostPlatform(KvmMachine machine) { _machine = machine; }

    public byte* PhysToVirt(PhysAddr address)
    {
        if (address.Value >= _machine.Size)
            throw new System.ArgumentOutOfRangeException(nameof(address), "physical address outside the host buffer");
        return _machine.Memory + address.Value;
    }

    // With ReuseFreedFramesAtOnce every CPU shares cache 0 (only the frame database uses this).
    public int CurrentCpu => _machine.ReuseFreedFramesAtOnce ? 0 : KvmMachine.ThreadCpu % _machine.Cpus;

    public int CpuCount => _machine.Cpus;

    public void FlushTlb(in TlbFlushRequest request) => Interlocked.Increment(ref _machine.PrimaryFlushCount);

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

    public void Checkpoint(MmCheckpoint site) => KvmMachine.ThreadCheckpoint?.Invoke(site);
}
