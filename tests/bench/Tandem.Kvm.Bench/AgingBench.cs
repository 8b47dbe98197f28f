using System.Threading;
using BenchmarkDotNet.Attributes;
using Tandem.Kvm.Ept;
using Tandem.Kvm.Tests;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// One aging pass (the fast-only notifier call, lockless) over 64 Ki EPT leaves, against a plain
/// read scan of the same entries and against the floor: one atomic AND per entry.
/// </summary>
public unsafe class AgingBench
{
    public const int Pages = 65536;
    private EptBed _bed = null!;
    private ulong*[] _leaves = null!;
    private Tandem.Mm.SpinLock _globalLock;
    public static int Sink;

    [GlobalSetup]
    public void Setup()
    {
        _bed = BenchBeds.Filled(Pages);
        _leaves = BenchBeds.LeafPointers(_bed);
    }

    [GlobalCleanup]
    public void Cleanup() => _bed.Dispose();

    [IterationSetup(Targets = new[] { nameof(PlainReadScan), nameof(AgingPass10PercentYoung), nameof(GlobalLockAgingPass10PercentYoung) })]
    public void TenPercentYoung() => BenchBeds.SetYoung(_leaves, 10);

    [IterationSetup(Targets = new[] { nameof(AtomicAndLoopAllYoung), nameof(AgingPassAllYoung) })]
    public void AllYoung() => BenchBeds.SetYoung(_leaves, 1);

    /// <summary>Baseline: read every leaf once (Volatile.Read) and count the young ones.</summary>
    [Benchmark(Baseline = true)]
    public int PlainReadScan()
    {
        int young = 0;
        ulong*[] leaves = _leaves;
        for (int i = 0; i < leaves.Length; i++)
        {
            if ((Volatile.Read(ref *leaves[i]) & EptEntry.Accessed) != 0)
                young++;
        }
        return Sink = young;
    }

    /// <summary>EptMmu's lockless fast-only aging (test and clear) over the whole memslot.</summary>
    [Benchmark]
    public bool AgingPass10PercentYoung() => _bed.Ept.TestClearYoungFastOnly(_bed.Space, _bed.Hva(0), _bed.Hva(Pages), true);

    /// <summary>Contrast: the same pass under one VM-wide lock (the legacy shadow MMU's way).</summary>
    [Benchmark]
    public bool GlobalLockAgingPass10PercentYoung()
    {
        while (!_globalLock.TryEnter())
            Thread.SpinWait(1);
        bool young = _bed.Ept.ClearYoung(_bed.Space, _bed.Hva(0), _bed.Hva(Pages));
        _globalLock.Exit();
        return young;
    }

    /// <summary>The floor for an all-young pass: one atomic AND per entry, nothing else.</summary>
    [Benchmark]
    public void AtomicAndLoopAllYoung()
    {
        ulong*[] leaves = _leaves;
        for (int i = 0; i < leaves.Length; i++)
            Interlocked.And(ref *leaves[i], ~EptEntry.Accessed);
    }

    [Benchmark]
    public bool AgingPassAllYoung() => _bed.Ept.TestClearYoungFastOnly(_bed.Space, _bed.Hva(0), _bed.Hva(Pages), true);
}
