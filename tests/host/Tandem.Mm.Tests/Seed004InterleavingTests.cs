using System;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Seed 004's race, systematically: one secondary fault (sequence snapshot, resolve through the
/// primary, locked check-and-install) against one TryToUnmap of the page (clear, flush, notifier
/// start, notifier end, drop the reference), over every interleaving of their steps.
/// </summary>
public class Seed004InterleavingTests
{
    private static void BindThread(int cpu, System.Action<MmCheckpoint>? hook)
    {
        HostMachine.ThreadCpu = cpu;
        HostMachine.ThreadCheckpoint = hook;
    }

    private readonly ITestOutputHelper _out;
    public Seed004InterleavingTests(ITestOutputHelper output) { _out = output; }

    private static (Action, Action, Func<string?>, IDisposable) World(bool checkRetry)
    {
        TestBed b = new TestBed(windowPages: 4, memory: 2UL << 20, cpus: 3);
        RecordingSecondaryMmu sec = b.AddSecondary();
        sec.CheckRetry = checkRetry;
        VirtAddr va = b.Page(1);
        b.Space.HandleFault(va, true);
        b.Space.TranslateFrame(va, out Pfn p);
        Action fault = () => sec.Fault(va, false);
        Action unmap = () => b.Mm.TryToUnmap(p);
        Func<string?> check = () =>
        {
            long e = sec.Entry(1);
            if (sec.Violations > 0)
                return string.Join("; ", sec.Messages);
            if (e == 0)
                return null;
            Pfn mapped = new Pfn((ulong)e >> 12);
            if (!b.Space.TranslateFrame(va, out Pfn primary))
                return "secondary maps frame " + mapped.Value + " but the primary entry is gone (invariant 1)";
            if (primary != mapped)
                return "secondary maps frame " + mapped.Value + " but the primary maps " + primary.Value;
            if (b.Mm.Frames.RefCountOf(mapped) <= 0)
                return "secondary maps a freed frame";
            return null;
        };
        return (fault, unmap, check, b);
    }

    [Fact]
    public void EveryInterleavingOfFaultAndInvalidationIsSafe()
    {
        var (runs, failure, failures) = InterleavingExplorer.ExploreAll(() => World(checkRetry: true), BindThread, InterleavingExplorer.Fairness.YieldAfterRetry);
        _out.WriteLine("interleavings: " + runs + ", failing: " + failures);
        Assert.True(runs >= 20, "too few interleavings explored: " + runs);
        Assert.True(failure == null, failure);
    }

    [Fact]
    public void WithoutTheRetryCheckSomeInterleavingLeavesAStaleSecondaryEntry()
    {
        var (runs, failure, failures) = InterleavingExplorer.ExploreAll(() => World(checkRetry: false), BindThread, InterleavingExplorer.Fairness.YieldAfterRetry);
        _out.WriteLine("interleavings: " + runs + ", failing: " + failures + ", first: " + failure);
        Assert.True(failures > 0, "removing the retry check must be caught");
    }
}
