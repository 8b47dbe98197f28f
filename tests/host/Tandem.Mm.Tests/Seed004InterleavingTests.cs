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

    private static InterleavingExplorer.World World(bool checkRetry)
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
        return new InterleavingExplorer.World(check, b, fault, unmap) { Watches = new[] { b.Machine.FreedWatch } };
    }

    [Fact]
    public void EveryInterleavingOfFaultAndInvalidationIsSafe()
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => World(checkRetry: true), BindThread);
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.Runs >= 20, "too few interleavings explored: " + r.Runs);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }

    [Fact]
    public void WithoutTheRetryCheckSomeInterleavingLeavesAStaleSecondaryEntry()
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => World(checkRetry: false), BindThread);
        _out.WriteLine(r.ToString());
        Assert.True(r.Failures > 0, "removing the retry check must be caught");
        // The failing schedule replays to the same failure.
        Assert.NotNull(InterleavingExplorer.Replay(() => World(checkRetry: false), BindThread, r.FirstFailingSchedule!));
    }
}
