using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;

namespace Tandem.Kvm.Tests;

/// <summary>The EPT platform on the host: table pages from the machine's pool, INVEPT and remote
/// flushes go to the caching-TLB model.</summary>
public readonly unsafe struct EptHostPlatform : IEptPlatform
{
    private readonly KvmMachine _machine;

    public EptHostPlatform(KvmMachine machine) { _machine = machine; }

    public KvmMachine Machine => _machine;

    public bool AllocateTable(out PhysAddr address, out ulong* entries) => _machine.AllocateTable(out address, out entries);

    public ulong* TableAt(PhysAddr address) => _machine.TableAt(address);

    public void FreeTable(PhysAddr address) => _machine.FreeTable(address);

    public void InvEptSingleContext(ulong eptPointer) => _machine.InvEpt(eptPointer);

    public void FlushRemote(ulong eptPointer, ulong cpuMask) => _machine.FlushRemote(eptPointer, cpuMask);

    public int CurrentCpu => KvmMachine.ThreadCpu % _machine.Cpus;

    public void PreemptDisable() { }

    public void PreemptEnable() { }

    public void SpinPause()
    {
        AccessMonitor.Step(SharedAccessKind.Spin, 0);
        Thread.Yield();
    }

    public void Checkpoint(MmCheckpoint site) => KvmMachine.ThreadCheckpoint?.Invoke(site);
}
