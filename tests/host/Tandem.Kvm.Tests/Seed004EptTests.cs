using System;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Seed 004's race on the EPT fault path, systematically: one EPT violation (sequence snapshot,
/// resolve through the primary, locked check-and-install) against one host teardown of the page
/// (clear, flush, notifier start, notifier end, drop the reference), over every interleaving of
/// their steps.
/// </summary>
public class Seed004EptTests
{
    private static void BindThread(int cpu, System.Action<MmCheckpoint>? hook)
    {
        KvmMachine.ThreadCpu = cpu;
        KvmMachine.ThreadCheckpoint = hook;
    }

    private readonly ITestOutputHelper _out;
    public Seed004EptTests(ITestOutputHelper output) { _out = output; }

    private static InterleavingExplorer.World World(bool reclaim)
    {
        EptBed b = new EptBed(pages: 4, memory: 2UL << 20, cpus: 3, strict: false, tablePages: 16);
        b.Space.HandleFault(b.Hva(1), true);
        b.PrimaryFrame(1, out Pfn p);
        Action fault = () => b.Ept.HandleViolation(b.Gpa(1), false);
        Action teardown = reclaim ? () => b.Mm.TryToUnmap(p) : () => b.Space.Unmap(b.Hva(0), b.Hva(4));
        Func<string?> check = () =>
        {
            if (b.Auditor!.Violations > 0)
                return string.Join("; ", b.Auditor.Messages);
            var problems = b.Problems(strict: true);
            return problems.Count == 0 ? null : string.Join("; ", problems);
        };
        return new InterleavingExplorer.World(check, b, fault, teardown) { Watches = new[] { b.Machine.FreedFrameWatch, b.Machine.FreedTableWatch } };
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EveryInterleavingOfEptFaultAndHostTeardownIsSafe(bool reclaim)
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => World(reclaim), BindThread);
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.Runs >= 10, "too few interleavings explored: " + r.Runs);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }
}
