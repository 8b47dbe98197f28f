using System;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

public class LifecycleTests
{
    private readonly ITestOutputHelper _out;
    public LifecycleTests(ITestOutputHelper output) { _out = output; }

    [Fact]
    public void RecordingChecksHoldThroughEveryPrimaryOperation()
    {
        using EptBed b = new EptBed(pages: 64, strict: true);
        for (int i = 0; i < 64; i++)
            b.Touch(i, i % 3 == 0, cpu: i % 4);
        KvmMachine.ThreadCpu = 0;
        b.Space.Unmap(b.Hva(10), b.Hva(20));
        b.Space.Protect(b.Hva(20), b.Hva(30), PageProt.User);
        for (int i = 0; i < 40; i++)
            b.Touch(i, false, cpu: 3);
        Assert.True(b.PrimaryFrame(35, out Pfn f));
        b.Mm.TryToUnmap(f);
        for (int i = 0; i < 64; i++)
            b.Touch(i, i >= 30, cpu: 2);
        b.Space.Unmap(b.Hva(0), b.Hva(64));
        Assert.True(b.Auditor!.Checks >= 8, "checks: " + b.Auditor.Checks);
        Assert.Empty(b.Problems(strict: true));
        Assert.True(b.Auditor.Violations == 0, string.Join("; ", b.Auditor.Messages));
        Assert.Equal(0L, b.Machine.Tlb.Violations);
    }

    [Fact]
    public void RemovingAMemslotZapsItAndFaultsThenFail()
    {
        using EptBed b = new EptBed();
        b.Touch(1, true);
        Assert.True(b.Ept.RemoveMemslot(b.Slot));
        Assert.False(b.Leaf(1).IsPresent);
        Assert.Equal(EptTlbModel.Outcome.EptViolation, b.TryAccess(1, false, 0, out Pfn _));
        Assert.Equal(FaultStatus.NoRegion, b.Ept.HandleViolation(b.Gpa(1), false));
        Assert.Equal(0, b.Ept.Sequence.InProgress);
    }

    [Fact]
    public void AddressSpaceDeathReleasesEverythingAndFreesEveryTable()
    {
        using EptBed b = new EptBed(pages: 64);
        for (int i = 0; i < 64; i++)
            b.Touch(i, true, cpu: 1);
        int tables = b.Machine.TablesAllocated;
        Assert.Equal(4, tables); // PML4, PDPT, PD, PT
        KvmMachine.ThreadCpu = 0;
        DeactivateEverywhere(b.Space);
        b.Space.Destroy();
        Assert.Equal((long)tables, b.Machine.TablesFreed);
        Assert.Equal(0, b.Machine.Tlb.CachedCount(1));
        Assert.Equal(FaultStatus.Dead, b.Ept.HandleViolation(b.Gpa(1), false));
    }

    /// <summary>The test beds load the space on every CPU; Destroy requires it loaded nowhere.</summary>
    private static void DeactivateEverywhere(AddressSpace<MmHostPlatform> space)
    {
        for (int c = 0; c < 64; c++)
            space.Deactivate(c);
    }

    /// <summary>The test bed itself: a freed EPT table page is poisoned, is the next one
    /// allocated, and an EptOps access inside it fails naming the walker; the same for mm frames.</summary>
    [Fact]
    public unsafe void FreedTablesArePoisonedReusedAtOnceAndAnAccessToOneFails()
    {
        using EptBed b = new EptBed(pages: 4);
        Assert.True(b.Machine.AllocateTable(out PhysAddr t, out ulong* entries));
        b.Machine.FreeTable(t);
        Assert.Equal(Poison.EptEntry, entries[0]);
        Assert.True(b.Machine.AllocateTable(out PhysAddr again, out ulong* _));
        Assert.Equal(t, again);
        Assert.Equal(0UL, entries[0]);
        b.Machine.FreeTable(again);
        FreedMemoryAccessException e = Assert.Throws<FreedMemoryAccessException>(() => EptOps.Read(entries + 3));
        Assert.Contains("LifecycleTests", e.Message);
        Assert.Equal(1, b.Machine.FreedTableWatch.Failures);

        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn f));
        b.Mm.Frames.PutRef(f);
        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn f2));
        Assert.Equal(f, f2);
        b.Mm.Frames.PutRef(f2);
        ulong* frame = (ulong*)b.Machine.FrameBytes(f);
        Assert.Equal(Poison.PrimaryEntry, frame[0]);
        Assert.Throws<FreedMemoryAccessException>(() => PteOps.Read(frame));
        Assert.Equal(1, b.Machine.FreedFrameWatch.Failures);
    }


    /// <summary>
    /// Unregistering the EPT (Release zaps the whole guest-physical space and frees its table
    /// pages) against a lockless aging walk of the guest RAM, over every schedule with one
    /// preemption (Release alone is thousands of steps: every entry it reads is one). Freed table
    /// pages are poisoned and reused at once; a walker that reads one fails, naming itself.
    /// </summary>
    private static InterleavingExplorer.World UnregisterWorld()
    {
        EptBed b = new EptBed(pages: 4, memory: 1UL << 20, cpus: 4, audit: false, tablePages: 16);
        for (int i = 0; i < 4; i++)
            b.Touch(i, false, cpu: 0);
        Action unregister = () => b.Space.Notifiers.Unregister(b.Ept);
        Action age = () => b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(0), b.Hva(4), true);
        Func<string?> check = () =>
        {
            if (b.Machine.TablesFreed == 0)
                return "Unregister freed no table";
            return b.Machine.Tlb.Violations > 0 ? string.Join("; ", b.Machine.Tlb.Messages) : null;
        };
        return new InterleavingExplorer.World(check, b, unregister, age) { Watches = new[] { b.Machine.FreedFrameWatch, b.Machine.FreedTableWatch } };
    }

    [Fact]
    public void NoWalkerReadsAFreedEptTableWhenTheEptIsUnregistered()
    {
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(UnregisterWorld, KvmMachine.BindThread, new InterleavingExplorer.Options { PreemptionBound = 1, TimeBudget = InterleavingExplorer.ExhaustiveBudget });
        _out.WriteLine(r.ToString());
        Assert.True(r.Complete, "exploration incomplete: " + r);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
    }
}
