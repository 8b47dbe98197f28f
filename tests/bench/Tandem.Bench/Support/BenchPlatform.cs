using System.Threading;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>A minimal single-CPU platform: the cost of the mm core itself, not of a platform model.</summary>
public readonly unsafe struct BenchPlatform : IMmPlatform
{
    private readonly BenchMachine _machine;
    public BenchPlatform(BenchMachine machine) { _machine = machine; }
    public byte* PhysToVirt(PhysAddr address) => _machine.Memory + address.Value;
    public int CurrentCpu => 0;
    public int CpuCount => 1;
    public void FlushTlb(in TlbFlushRequest request) => _machine.Flushes++;
    public void SpinPause() => Thread.SpinWait(1);
    public void DeferFree(object retired) { }
    public void FrameFreed(Pfn frame) { }

    public void PreemptDisable() { }

    public void PreemptEnable() { }
    public void WaitForChange(ref int word, int observed) => Thread.Yield();
    public void Checkpoint(MmCheckpoint site) { }
}
