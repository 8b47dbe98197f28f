using System;
using BenchmarkDotNet.Attributes;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>
/// Unmapping a range of tracked 4 KiB pages with one registered do-nothing notifier, against the
/// same with none. Each invocation unmaps a fresh range of <see cref="Pages"/> pages (mapped in
/// the iteration setup); results are per page. Goal: ratio ≤ 1.1.
/// </summary>
[InvocationCount(Ranges)]
public class UnmapNotifierBenchmarks
{
    public const int Ranges = 64;
    public const int Pages = 512;
    private static readonly VirtAddr Base = new VirtAddr(0x10_0000_0000);

    private BenchMachine _machine = null!;
    private MemoryManager<BenchPlatform> _mm = null!;
    private AddressSpace<BenchPlatform> _plain = null!;
    private AddressSpace<BenchPlatform> _notified = null!;
    private Pfn[] _frames = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new BenchMachine(320UL << 20);
        _mm = _machine.CreateManager();
        _plain = _mm.CreateAddressSpace()!;
        _notified = _mm.CreateAddressSpace()!;
        _notified.Notifiers.Register(new NullNotifier(), MmuNotifierFlags.LocklessAging);
        _frames = new Pfn[Ranges * Pages];
        for (int i = 0; i < _frames.Length; i++)
        {
            if (!_mm.Frames.AllocateFrame(out _frames[i]))
                throw new InvalidOperationException("bench: out of frames");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    private void MapAll(AddressSpace<BenchPlatform> space)
    {
        for (int i = 0; i < _frames.Length; i++)
        {
            if (space.MapFrame(Base + (ulong)i * PageSizes.Size4K, _frames[i], PageProt.Write) != MapStatus.Ok)
                throw new InvalidOperationException("bench: map failed");
        }
        _next = 0;
    }

    [IterationSetup(Target = nameof(UnmapNoNotifier))]
    public void SetupPlain() => MapAll(_plain);

    [IterationSetup(Target = nameof(UnmapOneNotifier))]
    public void SetupNotified() => MapAll(_notified);

    [IterationCleanup]
    public void CleanupIteration()
    {
        _plain.Unmap(Base, Base + (ulong)_frames.Length * PageSizes.Size4K);
        _notified.Unmap(Base, Base + (ulong)_frames.Length * PageSizes.Size4K);
    }

    private void UnmapNextRange(AddressSpace<BenchPlatform> space)
    {
        VirtAddr start = Base + (ulong)(_next++ * Pages) * PageSizes.Size4K;
        space.Unmap(start, start + Pages * PageSizes.Size4K);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages, Description = "unmap/page, no notifier")]
    public void UnmapNoNotifier() => UnmapNextRange(_plain);

    [Benchmark(OperationsPerInvoke = Pages, Description = "unmap/page, one null notifier")]
    public void UnmapOneNotifier() => UnmapNextRange(_notified);
}
