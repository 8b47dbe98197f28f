using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>
/// Demand fault-in of <see cref="Pages"/> fresh anonymous pages (1 GiB: allocate, zero, map,
/// reverse map) against zeroing as many pages alone (<see cref="Pages"/> frames that stay
/// allocated, 1 GiB: more than the last-level cache holds; <see cref="ZeroPasses"/> pass),
/// alternating 4096 pages by 4096 pages (<see cref="Paired.Interleaved"/>); what the fault-in
/// mapped is unmapped (freed) after each iteration, untimed. The zeroing rate over the fault-in
/// rate is the time ratio inverted. Goal: fault-in rate ≥ 0.5 × zeroing rate.
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

    /// <summary>Pages per timed chunk: A and B alternate chunk by chunk.</summary>
    public const int ChunkPages = 4096;

    private void ZeroChunk(int c)
    {
        for (int pass = 0; pass < ZeroPasses; pass++)
        {
            for (int i = c * ChunkPages; i < (c + 1) * ChunkPages; i++)
                new Span<byte>(_machine.Memory + _zeroTargets[i].Address.Value, (int)PageSizes.Size4K).Clear();
        }
    }

    private void FaultChunk(int c)
    {
        for (int i = c * ChunkPages; i < (c + 1) * ChunkPages; i++)
        {
            if (_space.HandleFault(Base + (ulong)i * PageSizes.Size4K, true) != FaultStatus.Ok)
                throw new InvalidOperationException("bench: fault failed");
        }
    }

    /// <summary><c>--probe-fault ROUNDS</c>: fault-in and zeroing, whole gigabytes, for a profiler; prints ns per page.</summary>
    public static int Probe(int rounds)
    {
        FaultInBenchmarks b = new FaultInBenchmarks();
        b.Setup();
        for (int r = 0; r < rounds; r++)
        {
            long c0 = ThreadCpuClock.Now();
            for (int c = 0; c < Pages / ChunkPages; c++)
                b.FaultChunk(c);
            long c1 = ThreadCpuClock.Now();
            for (int c = 0; c < Pages / ChunkPages; c++)
                b.ZeroChunk(c);
            long c2 = ThreadCpuClock.Now();
            b.Unmap();
            Console.WriteLine($"probe-fault: fault-in {(double)(c1 - c0) / Pages:F1} ns/page, zeroing {(double)(c2 - c1) / Pages:F1} ns/page, ratio {(double)(c1 - c0) / (c2 - c1):F3}");
        }
        b.Cleanup();
        return 0;
    }

    [Benchmark(Description = "A: demand fault-in 1 GiB of 4 KiB pages | B: zero as many pages (interleaved per 4096 pages)")]
    public void FaultInVsZero() => Paired.Interleaved(nameof(FaultInVsZero), null, Pages / ChunkPages, FaultChunk, ZeroChunk, shared: false, Unmap);
}
