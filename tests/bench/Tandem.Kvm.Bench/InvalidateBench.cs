using System;
using BenchmarkDotNet.Attributes;
using Tandem.Kvm.Tests;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// Unmapping 4096 pages that both the primary and the EPT map, against unmapping the same pages
/// in an address space without an EPT. mm notifies once per gather round (64 pages); the EPT must
/// issue exactly one INVEPT per notified range.
/// </summary>
public class InvalidateBench
{
    private const int Pages = 4096;
    private EptBed _withEpt = null!;
    private EptBed _primaryOnly = null!;
    public static long InvEpts, Ranges;
    public static double InvEptPerRange => Ranges == 0 ? 0 : (double)InvEpts / Ranges;

    [GlobalSetup]
    public void Setup()
    {
        _withEpt = new EptBed(pages: Pages, memory: 64UL << 20, cpus: 4, audit: false, tablePages: 64);
        _primaryOnly = new EptBed(pages: Pages, memory: 64UL << 20, cpus: 4, audit: false, tablePages: 64);
        // The second bed's EPT leaves the primary alone: unregister it so that space has no notifier.
        _primaryOnly.Space.Notifiers.Unregister(_primaryOnly.Ept);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _withEpt.Dispose();
        _primaryOnly.Dispose();
    }

    [IterationSetup(Target = nameof(UnmapPrimaryAndEpt))]
    public void FillBoth()
    {
        for (int i = 0; i < Pages; i++)
        {
            if (_withEpt.Ept.HandleViolation(_withEpt.Gpa(i), true) != FaultStatus.Ok)
                throw new InvalidOperationException("fill");
        }
        _inv0 = _withEpt.Machine.InvEptCount;
        _ranges0 = _withEpt.Machine.PrimaryFlushCount;
    }

    [IterationCleanup(Target = nameof(UnmapPrimaryAndEpt))]
    public void CountInvEpt()
    {
        InvEpts += _withEpt.Machine.InvEptCount - _inv0;
        Ranges += _withEpt.Machine.PrimaryFlushCount - _ranges0;
    }

    [IterationSetup(Target = nameof(UnmapPrimaryOnly))]
    public void FillPrimary()
    {
        for (int i = 0; i < Pages; i++)
        {
            if (_primaryOnly.Space.HandleFault(_primaryOnly.Hva(i), true) != FaultStatus.Ok)
                throw new InvalidOperationException("fill");
        }
    }

    private long _inv0, _ranges0;

    [Benchmark(Baseline = true)]
    public void UnmapPrimaryOnly() => _primaryOnly.Space.Unmap(_primaryOnly.Hva(0), _primaryOnly.Hva(Pages));

    [Benchmark]
    public void UnmapPrimaryAndEpt() => _withEpt.Space.Unmap(_withEpt.Hva(0), _withEpt.Hva(Pages));
}
