using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>
/// Demand fault-in of <see cref="Pages"/> fresh anonymous pages (1 GiB: allocate, zero, map,
/// reverse map) against zeroing as many pages alone (<see cref="Pages"/> frames that stay
/// allocated, 1 GiB: more than the last-level cache holds; <see cref="ZeroPasses"/> passes). Results are per page (OperationsPerInvoke); one invocation per iteration, and
/// the iteration cleanup unmaps (frees) what the fault-in mapped. The zeroing rate over the
/// fault-in rate is the time ratio inverted. Goal: fault-in rate ≥ 0.5 × zeroing rate.
/// </summary>
public unsafe class FaultInBenchmarks
{
    public const int Pages = 262144;
    public const int ZeroPasses = 1;
    private static readonly VirtAddr Base = new VirtAddr(0x20_0000_0000);

    private BenchMachine _machine = null!;
    private MemoryManager<BenchPlatform> _mm = null!;
    private AddressSpace<BenchPlatform> _space = null!;
    private Pfn[] _zeroTargets = null!;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new BenchMachine((ulong)(2 * Pages + Pages / 256 + 16384) * PageSizes.Size4K);
        _mm = _machine.CreateManager();
        _space = _mm.CreateAddressSpace()!;
        _space.AddRegion(Region.Anonymous(Base, (ulong)Pages * PageSizes.Size4K, PageProt.Write | PageProt.User));
        _zeroTargets = new Pfn[Pages];
        for (int i = 0; i < _zeroTargets.Length; i++)
        {
            if (!_mm.Frames.AllocateFrame(out _zeroTargets[i]))
                throw new InvalidOperationException("bench: out of frames");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    private void Unmap() => _space.Unmap(Base, Base + (ulong)Pages * PageSizes.Size4K);

    private void ZeroOnly()
    {
        for (int pass = 0; pass < ZeroPasses; pass++)
        {
            for (int i = 0; i < Pages; i++)
                new Span<byte>(_machine.Memory + _zeroTargets[i].Address.Value, (int)PageSizes.Size4K).Clear();
        }
    }

    private void DemandFault()
    {
        for (int i = 0; i < Pages; i++)
        {
            if (_space.HandleFault(Base + (ulong)i * PageSizes.Size4K, true) != FaultStatus.Ok)
                throw new InvalidOperationException("bench: fault failed");
        }
    }

    [Benchmark(Description = "A: demand fault-in 1 GiB of 4 KiB pages | B: zero as many pages")]
    public void FaultInVsZero() => Paired.Iteration(nameof(FaultInVsZero),
        new Paired.Side(null, DemandFault, Unmap),
        new Paired.Side(null, ZeroOnly));
}
