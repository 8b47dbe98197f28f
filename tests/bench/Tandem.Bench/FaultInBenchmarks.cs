using System;
using BenchmarkDotNet.Attributes;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>
/// Demand fault-in of <see cref="Pages"/> anonymous pages (allocate, zero, map, reverse map) against
/// zeroing the same number of pages alone. Results are per page; the zeroing rate over the
/// fault-in rate is the time ratio inverted. Goal: fault-in rate ≥ 0.5 × zeroing rate (ratio ≤ 2).
/// </summary>
[InvocationCount(Ranges)]
public unsafe class FaultInBenchmarks
{
    public const int Ranges = 64;
    public const int Pages = 512;
    private static readonly VirtAddr Base = new VirtAddr(0x20_0000_0000);

    private BenchMachine _machine = null!;
    private MemoryManager<BenchPlatform> _mm = null!;
    private AddressSpace<BenchPlatform> _space = null!;
    private Pfn[] _zeroTargets = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new BenchMachine(320UL << 20);
        _mm = _machine.CreateManager();
        _space = _mm.CreateAddressSpace()!;
        _space.AddRegion(Region.Anonymous(Base, (ulong)Ranges * Pages * PageSizes.Size4K, PageProt.Write | PageProt.User));
        _zeroTargets = new Pfn[Ranges * Pages];
        for (int i = 0; i < _zeroTargets.Length; i++)
            _mm.Frames.AllocateFrame(out _zeroTargets[i]);
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    [IterationSetup]
    public void Reset() => _next = 0;

    [IterationCleanup]
    public void Unmap() => _space.Unmap(Base, Base + (ulong)Ranges * Pages * PageSizes.Size4K);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages, Description = "zero 4 KiB page")]
    public void ZeroOnly()
    {
        int first = _next++ * Pages;
        for (int i = 0; i < Pages; i++)
            new Span<byte>(_machine.Memory + _zeroTargets[first + i].Address.Value, (int)PageSizes.Size4K).Clear();
    }

    [Benchmark(OperationsPerInvoke = Pages, Description = "demand fault-in 4 KiB page")]
    public void DemandFault()
    {
        VirtAddr start = Base + (ulong)(_next++ * Pages) * PageSizes.Size4K;
        for (int i = 0; i < Pages; i++)
            _space.HandleFault(start + (ulong)i * PageSizes.Size4K, true);
    }
}
