using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// One aging pass (EptMmu's fast-only lockless notifier call, once per 2 MiB of host range) over
/// every leaf of <see cref="AgingVm"/> (A), paired in every iteration with the floor of any correct
/// lockless pass over the same leaf memory (B): a plain scan with one atomic AND per accessed leaf
/// (10 % accessed), and the atomic AND loop (all accessed). The young pattern is restored before
/// each pass, untimed (<see cref="Paired"/>).
/// </summary>
public class AgingBench
{
    private AgingVm _vm = null!;

    [GlobalSetup]
    public void Setup() => _vm = SharedVm.Vm;

    [Benchmark(Description = "A: aging pass, 10% young | B: floor, scan + atomic AND per young leaf")]
    public void Aging10VsFloor() => Paired.Iteration(nameof(Aging10VsFloor),
        new Paired.Side(() => _vm.SetYoung(10), () => _vm.AgePass(), () => SharedVm.CheckAgedOnce(nameof(Aging10VsFloor) + "/A")),
        new Paired.Side(() => _vm.SetYoung(10), _vm.FloorScanAndClear, () => SharedVm.CheckAgedOnce(nameof(Aging10VsFloor) + "/B")));

    [Benchmark(Description = "A: aging pass, all young | B: atomic AND loop")]
    public void AgingAllVsAndLoop() => Paired.Iteration(nameof(AgingAllVsAndLoop),
        new Paired.Side(() => _vm.SetYoung(1), () => _vm.AgePass(), () => SharedVm.CheckAgedOnce(nameof(AgingAllVsAndLoop) + "/A")),
        new Paired.Side(() => _vm.SetYoung(1), _vm.AtomicAndLoop, () => SharedVm.CheckAgedOnce(nameof(AgingAllVsAndLoop) + "/B")));
}
