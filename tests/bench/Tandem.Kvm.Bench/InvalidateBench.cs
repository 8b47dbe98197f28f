using System;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// Unmapping <see cref="Pages"/> mapped 4 KiB pages (16 GiB of host range) that both the primary
/// and the EPT map, against unmapping the same in an address space with no secondary MMU (same
/// machine, same mm). Each space maps its own 1 GiB of frames sixteen times over (an unmap drops
/// mappings and reverse-map entries without freeing frames, so no frame is zeroed again in the
/// setup); they are mapped, and faulted into the EPT, again before every iteration, untimed. The
/// two unmaps alternate 32 MiB by 32 MiB (<see cref="Paired.Interleaved"/>). Mapped from the top down, so each unmap finds its reverse-map entry at the head of the
/// frame's list, as for a page mapped once. mm notifies once per gather round; the EPT must issue exactly one INVEPT per notified range.
/// </summary>
public class InvalidateBench
{
    public const int Frames = 262144;
    public const int Pages = 16 * Frames;
    private static readonly VirtAddr Base = new VirtAddr(0x40_0000_0000);
    private BenchMachine _machine = null!;
    private MemoryManager<BenchMmPlatform> _mm = null!;
    private AddressSpace<BenchMmPlatform> _withEpt = null!;
    private AddressSpace<BenchMmPlatform> _primaryOnly = null!;
    private EptMmu<BenchEptPlatform> _ept = null!;
    private Pfn[] _frames = null!;
    private Pfn[] _otherFrames = null!;
    public static long InvEpts, Ranges;
    public static double InvEptPerRange => Ranges == 0 ? 0 : (double)InvEpts / Ranges;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new BenchMachine((ulong)(2 * Frames + 2 * (Pages / 256) + 16384) * PageSizes.Size4K, cpus: 2, tablePages: Pages / 512 + 64);
        _mm = new MemoryManager<BenchMmPlatform>(_machine.MmPlatform, _machine.FrameCount, 16, 2 * Pages + 4096);
        _mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        _withEpt = _mm.CreateAddressSpace() ?? throw new InvalidOperationException("space");
        _primaryOnly = _mm.CreateAddressSpace() ?? throw new InvalidOperationException("space");
        _withEpt.Activate(0);
        _withEpt.Activate(1);
        _primaryOnly.Activate(0);
        _primaryOnly.Activate(1);
        _ept = EptMmu<BenchEptPlatform>.Create(_machine.EptPlatform, _withEpt) ?? throw new InvalidOperationException("ept");
        if (!_ept.AddMemslot(new Memslot(new Gfn(0), Pages, Base, true)))
            throw new InvalidOperationException("memslot");
        _ept.RegisterWith(_withEpt.Notifiers);
        _ept.Activate(0);
        _ept.Activate(1);
        _frames = Allocate();
        _otherFrames = Allocate();
    }

    [GlobalCleanup]
    public void Cleanup() => _machine?.Dispose();

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

    private void MapAll(AddressSpace<BenchMmPlatform> space)
    {
        for (int i = Pages - 1; i >= 0; i--)
        {
            MapStatus status = space.MapFrame(Base + (ulong)i * PageSizes.Size4K, (space == _withEpt ? _frames : _otherFrames)[i % Frames], PageProt.Write | PageProt.User);
            if (status != MapStatus.Ok)
                throw new InvalidOperationException("map failed at page " + i + ": " + status);
        }
    }

    private void FillBoth()
    {
        MapAll(_withEpt);
        for (int i = 0; i < Pages; i++)
        {
            if (_ept.HandleViolation(new Gfn((ulong)i).Address, true) != FaultStatus.Ok)
                throw new InvalidOperationException("EPT fill");
        }
    }

    /// <summary>An A chunk: unmap from the space with the EPT, counting its INVEPTs and notified ranges (one primary flush each).</summary>
    private void UnmapWithEpt(int chunk)
    {
        long inv0 = _machine.InvEpts, ranges0 = _machine.PrimaryFlushes;
        Unmap(_withEpt, chunk);
        InvEpts += _machine.InvEpts - inv0;
        Ranges += _machine.PrimaryFlushes - ranges0;
    }

    /// <summary>Pages per <c>Unmap</c> call (32 MiB): A and B alternate call by call.</summary>
    public const int ChunkPages = 8192;

    private void Unmap(AddressSpace<BenchMmPlatform> space, int chunk)
    {
        VirtAddr start = Base + (ulong)chunk * ChunkPages * PageSizes.Size4K;
        space.Unmap(start, start + ChunkPages * PageSizes.Size4K);
    }

    [Benchmark(Description = "A: unmap 16 GiB (4 Mi pages), primary + EPT | B: primary only (interleaved per 32 MiB)")]
    public void UnmapEptVsPrimaryOnly() => Paired.Interleaved(nameof(UnmapEptVsPrimaryOnly), () => { FillBoth(); MapAll(_primaryOnly); },
        Pages / ChunkPages, UnmapWithEpt, c => Unmap(_primaryOnly, c), shared: false);
}
