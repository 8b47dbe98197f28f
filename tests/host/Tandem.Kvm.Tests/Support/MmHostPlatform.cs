using System.Threading;
using Tandem.Mm;

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

    public int CurrentCpu => KvmMachine.ThreadCpu % _machine.Cpus;

    public int CpuCount => _machine.Cpus;

    public void FlushTlb(in TlbFlushRequest request) => Interlocked.Increment(ref _machine.PrimaryFlushCount);

    public void SpinPause() => Thread.Yield();

    public void DeferFree(object retired) { }

    public void FrameFreed(Pfn frame) { }

    public void WaitForChange(ref int word, int observed)
    {
        SpinWait spin = default;
        for (int i = 0; i < 200 && Volatile.Read(ref word) == observed; i++)
            spin.SpinOnce();
    }

    public void Checkpoint(MmCheckpoint site) => KvmMachine.ThreadCheckpoint?.Invoke(site);
}
