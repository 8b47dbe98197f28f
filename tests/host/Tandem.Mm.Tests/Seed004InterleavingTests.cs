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
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => World(checkRetry: true), BindThread, new InterleavingExplorer.Options { TimeBudget = InterleavingExplorer.ExhaustiveBudget });
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

    /// <summary>
    /// Three actors: the secondary fault and TryToUnmap of the world above, and the CPU's page
    /// walker writing the page twice (A and D set with locked updates while mm clears the entry).
    /// Besides the secondary's checks: every D bit the walker set reached the frame (its Dirty flag
    /// after the unmap, or the entry that still maps it).
    /// </summary>
    private static InterleavingExplorer.World WorldWithHardware()
    {
        TestBed b = new TestBed(windowPages: 4, memory: 1UL << 20, cpus: 4);
        RecordingSecondaryMmu sec = b.AddSecondary();
        VirtAddr va = b.Page(1);
        b.Space.HandleFault(va, false);
        b.Space.TranslateFrame(va, out Pfn p);
        b.Mm.Frames.GetRef(p); // keep p's record (and its Dirty flag) after the unmap
        b.Mm.Frames.ClearFlags(p, FrameFlags.Dirty);
        System.Collections.Generic.List<Pfn> dirtied = new System.Collections.Generic.List<Pfn>();
        Action fault = () => sec.Fault(va, false);
        Action unmap = () => b.Mm.TryToUnmap(p);
        Action cpu = () =>
        {
            for (int k = 0; k < 2; k++)
            {
                if (b.HardwareTouch(1, true, out Pfn used))
                    dirtied.Add(used);
            }
        };
        Func<string?> check = () =>
        {
            if (sec.Violations > 0)
                return string.Join("; ", sec.Messages);
            long e = sec.Entry(1);
            if (e != 0 && !(b.Space.TranslateFrame(va, out Pfn primary) && primary.Value == (ulong)e >> 12))
                return "secondary entry " + e.ToString("x") + " does not match the primary (invariant 1)";
            foreach (Pfn f in dirtied)
            {
                bool flagged = (b.Mm.Frames.FlagsOf(f) & FrameFlags.Dirty) != 0;
                bool inEntry = b.Space.TranslateFrame(va, out Pfn now) && now == f && b.Space.Translate(va, out PageTableEntry leaf, out int _) && leaf.IsDirty;
                if (!flagged && !inEntry)
                    return "the CPU set D in the entry of frame " + f.Value + " and it was lost (neither the frame nor an entry has it)";
            }
            return null;
        };
        return new InterleavingExplorer.World(check, b, fault, unmap, cpu) { Watches = new[] { b.Machine.FreedWatch } };
    }

    [Fact]
    public void EveryInterleavingOfFaultInvalidationAndTheHardwareWalkerIsSafe()
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(WorldWithHardware, BindThread, new InterleavingExplorer.Options { TimeBudget = InterleavingExplorer.ExhaustiveBudget });
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }
}
