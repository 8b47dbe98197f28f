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
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => World(reclaim), KvmMachine.BindThread, new InterleavingExplorer.Options { TimeBudget = InterleavingExplorer.ExhaustiveBudget });
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.Runs >= 10, "too few interleavings explored: " + r.Runs);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }

    /// <summary>
    /// Three actors: an EPT violation, a host teardown of the page, and the vCPU's hardware
    /// accessing the page through the TLB model twice (a walk sets EPT A, and D on the write, with
    /// locked updates; a hit uses the cached translation). Checked: the model's per-access checks
    /// (no freed or reused frame reached), the EPT against the primary, no read of a freed table,
    /// and that a D bit the vCPU set in the EPT reached the frame.
    /// </summary>
    private static unsafe InterleavingExplorer.World WorldWithVcpu(bool reclaim)
    {
        EptBed b = new EptBed(pages: 4, memory: 1UL << 20, cpus: 3, strict: false, tablePages: 16);
        b.Space.HandleFault(b.Hva(1), true);
        b.PrimaryFrame(1, out Pfn p);
        // Writable but clean everywhere: only the vCPU's write below can make p dirty.
        foreach (PteSlot s in new PageTableWalker<MmHostPlatform>(b.Machine.MmPlatform, b.Space.Root, b.Hva(1), b.Hva(2)))
            PteOps.ClearBits(s.Pointer, PageTableEntry.Dirty);
        b.Mm.Frames.GetRef(p); // keep p's record (and its Dirty flag) after the teardown
        b.Mm.Frames.ClearFlags(p, FrameFlags.Dirty);
        b.Touch(1, false, cpu: 0); // the EPT maps gfn 1 (writable, clean) before the race starts
        if (!b.Leaf(1).IsWritable || b.Leaf(1).IsDirty)
            throw new InvalidOperationException("setup: the EPT leaf must be writable and clean");
        bool wrote = false;
        Action fault = () => b.Ept.HandleViolation(b.Gpa(1), false);
        Action teardown = reclaim ? () => b.Mm.TryToUnmap(p) : () => b.Space.Unmap(b.Hva(0), b.Hva(4));
        Action vcpu = () =>
        {
            if (b.TryAccess(1, true, 2, out Pfn used) != EptTlbModel.Outcome.EptViolation && used == p)
                wrote = true;
        };
        Func<string?> check = () =>
        {
            if (b.Machine.Tlb.Violations > 0)
                return string.Join("; ", b.Machine.Tlb.Messages);
            if (b.Auditor!.Violations > 0)
                return string.Join("; ", b.Auditor.Messages);
            var problems = b.Problems(strict: true);
            if (problems.Count > 0)
                return string.Join("; ", problems);
            bool stillMapped = b.PrimaryFrame(1, out Pfn now) && now == p;
            bool dirtyInEpt = stillMapped && b.Leaf(1).IsDirty;
            if (wrote && !dirtyInEpt && (b.Mm.Frames.FlagsOf(p) & FrameFlags.Dirty) == 0)
                return "the vCPU wrote frame " + p.Value + " through the EPT and its dirty bit was lost in the teardown";
            return null;
        };
        return new InterleavingExplorer.World(check, b, fault, teardown, vcpu) { Watches = new[] { b.Machine.FreedFrameWatch, b.Machine.FreedTableWatch } };
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EveryInterleavingOfEptFaultTeardownAndAVcpuIsSafe(bool reclaim)
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(() => WorldWithVcpu(reclaim), KvmMachine.BindThread, new InterleavingExplorer.Options { TimeBudget = InterleavingExplorer.ExhaustiveBudget });
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }
}
