using BenchmarkDotNet.Attributes;

using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// One aging pass (EptMmu's fast-only lockless notifier call, once per 2 MiB of host range) over
/// every leaf of <see cref="AgingVm"/>, against the floor of any correct lockless pass over the same
/// leaf memory: a plain scan with one atomic AND per accessed leaf (10 % accessed), and the atomic
/// AND loop (all accessed). The young pattern is restored before every pass, outside the timing.
/// </summary>
public class AgingBench
{
    private AgingVm _vm = null!;
    private bool _checked;

    [GlobalSetup]
    public void Setup()
    {
        _vm = SharedVm.Vm;
        _checked = false;
    }

    [IterationSetup(Targets = new[] { nameof(Floor10PercentYoung), nameof(Aging10PercentYoung) })]
    public void TenPercentYoung() => _vm.SetYoung(10);

    [IterationSetup(Targets = new[] { nameof(AtomicAndLoopAllYoung), nameof(AgingAllYoung) })]
    public void AllYoung() => _vm.SetYoung(1);

    /// <summary>Once per case: the pass really cleared every accessed bit.</summary>
    [IterationCleanup]
    public void Check()
    {
        if (_checked)
            return;
        _checked = true;
        long left = _vm.CountYoung();
        if (left != 0)
            throw new System.InvalidOperationException("an aging pass left " + left + " accessed leaves");
    }

    [Benchmark(Description = "floor, 10% young: scan + atomic AND per young leaf")]
    public void Floor10PercentYoung()
    {
        long t = WallSamples.Start();
        _vm.FloorScanAndClear();
        WallSamples.Stop(nameof(Floor10PercentYoung), t);
    }

    [Benchmark(Description = "aging pass, 10% young (lockless, fast-only)")]
    public bool Aging10PercentYoung()
    {
        long t = WallSamples.Start();
        bool young = _vm.AgePass();
        WallSamples.Stop(nameof(Aging10PercentYoung), t);
        return young;
    }

    [Benchmark(Description = "atomic AND loop, all young")]
    public void AtomicAndLoopAllYoung()
    {
        long t = WallSamples.Start();
        _vm.AtomicAndLoop();
        WallSamples.Stop(nameof(AtomicAndLoopAllYoung), t);
    }

    [Benchmark(Description = "aging pass, all young (lockless, fast-only)")]
    public bool AgingAllYoung()
    {
        long t = WallSamples.Start();
        bool young = _vm.AgePass();
        WallSamples.Stop(nameof(AgingAllYoung), t);
        return young;
    }
}
