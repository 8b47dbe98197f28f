using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;
using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>
/// Unmapping <see cref="Pages"/> tracked 4 KiB mappings, <see cref="RangePages"/> pages per
/// <c>Unmap</c> call, with one registered do-nothing notifier against the same with none. The
/// mappings are, per address space, its own 1 GiB of frames mapped <see cref="Pages"/> / <see cref="Frames"/> times over (the
/// unmap drops mappings and reverse-map entries, frees nothing), mapped again in every iteration
/// setup from the top down so that each unmap finds its reverse-map entry at the head of the
/// frame's list, as for a page mapped once. A and B alternate 4096 pages by 4096 pages
/// (<see cref="Paired.Interleaved"/>). Goal: ratio ≤ 1.1.
/// </summary>
public class UnmapNotifierBenchmarks
{
    public const int Frames = 262144;
    public const int Pages = 16 * Frames;
    public const int RangePages = 512;
    private static readonly VirtAddr Base = new VirtAddr(0x10_0000_0000);

    private BenchMachine _machine = null!;
    private MemoryManager<BenchPlatform> _mm = null!;
    private AddressSpace<BenchPlatform> _plain = null!;
    private AddressSpace<BenchPlatform> _notified = null!;
    private Pfn[] _frames = null!;
    private Pfn[] _otherFrames = null!;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new BenchMachine((ulong)(2 * Frames + 2 * (Pages / 256) + 16384) * PageSizes.Size4K);
        _mm = new MemoryManager<BenchPlatform>(new BenchPlatform(_machine), _machine.FrameCount, 16, 2 * Pages + 4096);
        _mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        _plain = _mm.CreateAddressSpace()!;
        _notified = _mm.CreateAddressSpace()!;
        _notified.Notifiers.Register(new NullNotifier(), MmuNotifierFlags.LocklessAging);
        _frames = Allocate();
        _otherFrames = Allocate();
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    /// <summary>One frame set per address space: an unmap then never walks past the other space's reverse-map entries.</summary>
    private Pfn[] Allocate()
    {
        Pfn[] frames = new Pfn[Frames];
        for (int i = 0; i < Frames; i++)
        {
            if (!_mm.Frames.AllocateFrame(out frames[i]))
                throw new InvalidOperationException("bench: out of frames");
        }
        return frames;
    }

    private void MapAll(AddressSpace<BenchPlatform> space)
    {
        for (int i = Pages - 1; i >= 0; i--)
        {
            MapStatus status = space.MapFrame(Base + (ulong)i * PageSizes.Size4K, (space == _notified ? _frames : _otherFrames)[i % Frames], PageProt.Write);
            if (status != MapStatus.Ok)
                throw new InvalidOperationException("bench: map failed at page " + i + ": " + status);
        }
    }

    /// <summary>Ranges per timed chunk: A and B alternate chunk by chunk.</summary>
    public const int RangesPerChunk = 8;

    private static void UnmapChunk(AddressSpace<BenchPlatform> space, int chunk)
    {
        for (int r = chunk * RangesPerChunk; r < (chunk + 1) * RangesPerChunk; r++)
        {
            VirtAddr start = Base + (ulong)r * RangePages * PageSizes.Size4K;
            space.Unmap(start, start + RangePages * PageSizes.Size4K);
        }
    }

    [Benchmark(Description = "A: unmap 4 Mi pages, one null notifier | B: no notifier (interleaved per 4096 pages)")]
    public void UnmapNotifierVsNone() => Paired.Interleaved(nameof(UnmapNotifierVsNone), () => { MapAll(_notified); MapAll(_plain); },
        Pages / RangePages / RangesPerChunk, c => UnmapChunk(_notified, c), c => UnmapChunk(_plain, c), shared: false);
}
