using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// An aging pass over every leaf of <see cref="AgingVm"/>, 2 MiB of host range (every alias slot)
/// at a time, half of it with EptMmu's fast-only lockless notifier call (A) and the other half with
/// the floor of any correct lockless pass over the same leaf memory (B): a plain scan with one
/// atomic AND per accessed leaf (10 % accessed), and the atomic AND loop (all accessed). A and B
/// alternate chunk by chunk and swap halves every iteration (<see cref="Paired.Interleaved"/>);
/// the young pattern is restored before each iteration, untimed.
/// </summary>
public class AgingBench
{
    private AgingVm _vm = null!;

    [GlobalSetup]
    public void Setup() => _vm = SharedVm.Vm;

    [Benchmark(Description = "A: aging, 10% young | B: floor, scan + atomic AND per young leaf (interleaved per 2 MiB)")]
    public void Aging10VsFloor() => Paired.Interleaved(nameof(Aging10VsFloor), () => _vm.SetYoung(10), AgingVm.Chunks,
        _vm.AgeChunk, _vm.FloorChunk, shared: true, () => SharedVm.CheckAgedOnce(nameof(Aging10VsFloor)));

    [Benchmark(Description = "A: aging, all young | B: atomic AND loop (interleaved per 2 MiB)")]
    public void AgingAllVsAndLoop() => Paired.Interleaved(nameof(AgingAllVsAndLoop), () => _vm.SetYoung(1), AgingVm.Chunks,
        _vm.AgeChunk, _vm.AndChunk, shared: true, () => SharedVm.CheckAgedOnce(nameof(AgingAllVsAndLoop)));
}
