using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Tests written for the mutation check (tests/mutations/mutations.txt): each drives the window of
/// one mutation of kvm/Ept (or of the protocol it shares with mm) deterministically. The racing
/// operation runs inline at a named checkpoint of the first one, or on a second thread that waits on
/// events; a thread waiting in a grace period is seen through its platform's spin-wait pauses
/// (<see cref="PausingEptPlatform"/>), never guessed from a timeout.
/// </summary>
public unsafe class MutationKillTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly VirtAddr HugeHva = new VirtAddr(0x8000_0000);
    private const ulong HugeGfn = 0x1000;   // gpa 16 MiB: 2 MiB aligned

    /// <summary>Runs <paramref name="action"/> once, on this thread, the first time it reaches <paramref name="site"/>.</summary>
    private static void AtCheckpoint(MmCheckpoint site, Action action)
    {
        bool fired = false;
        KvmMachine.ThreadCheckpoint = s =>
        {
            if (fired || s != site)
                return;
            fired = true;
            action();
        };
    }

    private static void NoHook() => KvmMachine.ThreadCheckpoint = null;

    private static Thread Start(int cpu, Action body, Action<Exception> onError)
    {
        Thread t = new Thread(() =>
        {
            KvmMachine.ThreadCpu = cpu;
            try { body(); }
            catch (Exception e) { onError(e); }
            finally { KvmMachine.ThreadCheckpoint = null; }
        })
        { IsBackground = true };
        t.Start();
        return t;
    }

    private static string Describe(List<string> problems) => string.Join("; ", problems);

    /// <summary>
    /// A fault on its own thread that stops right after its resolve (until <c>Go</c>) and reports
    /// its first locked check (<c>Checked</c>, set whether it retried or installed).
    /// </summary>
    private sealed class ParkedFault
    {
        public readonly ManualResetEventSlim Resolved = new ManualResetEventSlim();
        public readonly ManualResetEventSlim Go = new ManualResetEventSlim();
        public readonly ManualResetEventSlim Checked = new ManualResetEventSlim();
        public FaultStatus Status = FaultStatus.NoRegion;
        public Exception? Error;
        private readonly Thread _thread;

        public ParkedFault(EptBed b, GuestPhysAddr gpa)
        {
            _thread = Start(2, () =>
            {
                bool resolved = false, checkedOnce = false;
                KvmMachine.ThreadCheckpoint = s =>
                {
                    if (s == MmCheckpoint.SecondaryResolved && !resolved)
                    {
                        resolved = true;
                        Resolved.Set();
                        if (!Go.Wait(Bound))
                            throw new TimeoutException("never let go");
                    }
                    else if (s == MmCheckpoint.SecondaryInstallDone && !checkedOnce)
                    {
                        checkedOnce = true;
                        Checked.Set();
                    }
                };
                Status = b.Ept.HandleViolation(gpa, write: false);
            }, e => { Error = e; Resolved.Set(); Checked.Set(); });
            Assert.True(Resolved.Wait(Bound), "the fault never resolved");
        }

        public void Finish()
        {
            Go.Set();
            Assert.True(_thread.Join(Bound), "the fault did not finish");
            if (Error != null)
                throw new InvalidOperationException("the fault threw", Error);
            Assert.Equal(FaultStatus.Ok, Status);
        }
    }

    /// <summary>
    /// Invariant 2: a fault resolved page P; then the host unmapped P completely (cleared, notified,
    /// reference dropped). The fault's locked check must see the teardown and start again.
    /// </summary>
    [Fact]
    public void AFaultThatResolvedBeforeATeardownRetries()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Hva(1), true));
        AtCheckpoint(MmCheckpoint.SecondaryResolved, () => Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Hva(1), b.Hva(2))));
        FaultStatus status;
        try { status = b.Ept.HandleViolation(b.Gpa(1), write: false); }
        finally { NoHook(); }
        Assert.Equal(FaultStatus.Ok, status);
        Assert.True(b.Leaf(1).IsPresent);
        List<string> problems = b.Problems(strict: true);
        Assert.True(problems.Count == 0, Describe(problems));
    }

    /// <summary>
    /// Invariant 2: a fault resolved page P and makes its locked check while the teardown of P is
    /// between InvalidateRangeStart and InvalidateRangeEnd (the sequence has not moved yet): the
    /// in-progress count must make it retry.
    /// </summary>
    [Fact]
    public void AFaultCheckedDuringAnInvalidationRetries()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Hva(1), true));
        ParkedFault fault = new ParkedFault(b, b.Gpa(1));
        AtCheckpoint(MmCheckpoint.NotifierStartDone, () =>
        {
            fault.Go.Set();
            Assert.True(fault.Checked.Wait(Bound), "the fault never made its check");
        });
        try { Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Hva(1), b.Hva(2))); }
        finally { NoHook(); }
        fault.Finish();
        Assert.True(b.Leaf(1).IsPresent);
        List<string> problems = b.Problems(strict: true);
        Assert.True(problems.Count == 0, Describe(problems));
    }

    /// <summary>
    /// Invariant 2 for large pages: a fault about to install a 2 MiB leaf makes its check while an
    /// invalidation of another 4 KiB page of the same 2 MiB is in progress. The check must cover the
    /// whole 2 MiB: it retries, and then maps what the (now split) primary maps.
    /// </summary>
    [Fact]
    public void A2MInstallChecksTheWhole2MRange()
    {
        using EptBed b = new EptBed(audit: false);
        KvmMachine.ThreadCpu = 0;
        Assert.True(b.Mm.Frames.TryAllocate(9, out Pfn block));           // a naturally aligned 2 MiB block
        Assert.True(b.Space.AddRegion(Region.Fixed(HugeHva, PageSizes.Size2M, PageProt.Write, block.Address)));
        Memslot slot = new Memslot(new Gfn(HugeGfn), 512, HugeHva, true);
        Assert.True(b.Ept.AddMemslot(slot));
        ParkedFault fault = new ParkedFault(b, new Gfn(HugeGfn + 5).Address);
        AtCheckpoint(MmCheckpoint.NotifierStartDone, () =>
        {
            fault.Go.Set();
            Assert.True(fault.Checked.Wait(Bound), "the fault never made its check");
        });
        VirtAddr page9 = HugeHva + 9 * PageSizes.Size4K;
        try { Assert.Equal(MapStatus.Ok, b.Space.Unmap(page9, page9 + PageSizes.Size4K)); }
        finally { NoHook(); }
        fault.Finish();
        GuestPhysAddr start = new Gfn(HugeGfn).Address;
        int leaves = 0;
        foreach (EptSlot s in new EptWalker<EptHostPlatform>(b.Ept.Platform, b.Ept.Root, start, new GuestPhysAddr(start.Value + PageSizes.Size2M)))
        {
            leaves++;
            for (ulong off = 0; off < s.Size; off += PageSizes.Size4K)
            {
                GuestPhysAddr gpa = new GuestPhysAddr(s.Address.Value + off);
                VirtAddr hva = slot.HostAddressOf(gpa.Gfn);
                Pfn mapped = new PhysAddr(s.Value.LeafAddress(s.Level).Value + off).Pfn;
                Assert.True(b.Space.TranslateFrame(hva, out Pfn primary),
                    "the EPT maps gpa " + gpa.Value.ToString("x") + " (a " + (s.Level == 2 ? "2 MiB" : "4 KiB") + " leaf) but the primary does not map hva " + hva.Value.ToString("x"));
                Assert.Equal(primary, mapped);
            }
        }
        Assert.Equal(1, leaves);
    }

    /// <summary>
    /// Race 2 of docs/ept.md: invalidation A has zapped page 3's leaf but not flushed yet; the host
    /// unmaps page 3 and its invalidation B finds nothing left to zap. B must flush all the same:
    /// its caller frees the frame as soon as it returns, and a CPU still caches the translation.
    /// </summary>
    [Fact]
    public void AnInvalidationThatFindsNothingToZapStillFlushes()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        Pfn p3 = b.Touch(3, write: true, cpu: 1);                   // CPU 1 caches gfn 3 and gfn 4
        b.Touch(4, write: true, cpu: 1);
        int zaps = 0;
        EptTlbModel.Outcome during = EptTlbModel.Outcome.Hit;
        int freedDuring = -1;
        KvmMachine.ThreadCheckpoint = s =>
        {
            // A's walk reached its second leaf: page 3's is zapped, nothing flushed yet.
            if (s != MmCheckpoint.SecondaryZapLeaf || ++zaps != 2)
                return;
            Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Hva(3), b.Hva(4)));   // B
            freedDuring = b.Mm.Frames.RefCountOf(p3);
            during = b.TryAccess(3, write: false, cpu: 1, out Pfn _);
        };
        try { Assert.Equal(2, b.Space.Protect(b.Hva(3), b.Hva(5), PageProt.User)); }   // A
        finally { NoHook(); }
        Assert.Equal(0, freedDuring);                                    // the scenario: B freed the frame
        Assert.True(b.Machine.Tlb.Violations == 0, string.Join("; ", b.Machine.Tlb.Messages));
        Assert.Equal(EptTlbModel.Outcome.EptViolation, during);
    }

    /// <summary>
    /// Invariant 3: the zap read a clean leaf; before it clears it, the CPU writes through it (its
    /// walk sets D). The zap must see that D and make the frame dirty.
    /// </summary>
    [Fact]
    public void ADirtyBitTheCpuSetsDuringTheZapIsKept()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        Pfn p = b.Touch(3, write: false, cpu: 1);
        Assert.False(b.Leaf(3).IsDirty);
        Assert.True(b.Mm.Frames.TryGetRef(p));       // keep the record to read its flags afterwards
        b.Mm.Frames.ClearFlags(p, FrameFlags.Dirty);
        EptTlbModel.Outcome write = EptTlbModel.Outcome.EptViolation;
        AtCheckpoint(MmCheckpoint.SecondaryLeafRead, () => write = b.TryAccess(3, write: true, cpu: 1, out Pfn _));
        try { Assert.True(b.Mm.TryToUnmap(p)); }
        finally { NoHook(); }
        Assert.Equal(EptTlbModel.Outcome.Walked, write);                // the CPU set D in the leaf
        Assert.True((b.Mm.Frames.FlagsOf(p) & FrameFlags.Dirty) != 0, "the D bit the CPU set during the zap was lost");
        b.Mm.Frames.PutRef(p);
        Assert.Equal(0, b.Machine.Tlb.Violations);
    }

    /// <summary>
    /// Invariant 4: aging read a young, clean leaf; before it clears A, the CPU writes through it.
    /// The aging compare-exchange must fail and leave the leaf as the CPU left it (A and D).
    /// </summary>
    [Fact]
    public void AgingNeverLosesWhatTheCpuOrAZapperWrote_Cpu()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        b.Touch(3, write: false, cpu: 1);
        EptTlbModel.Outcome write = EptTlbModel.Outcome.EptViolation;
        AtCheckpoint(MmCheckpoint.SecondaryLeafRead, () => write = b.TryAccess(3, write: true, cpu: 1, out Pfn _));
        try { Assert.True(b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(3), b.Hva(4), true)); }
        finally { NoHook(); }
        Assert.Equal(EptTlbModel.Outcome.Walked, write);
        EptEntry leaf = b.Leaf(3);
        Assert.True(leaf.IsDirty, "aging overwrote the D bit the CPU set");
        Assert.True(leaf.IsAccessed);
    }

    /// <summary>
    /// Invariant 1 against aging: aging read a young leaf; before it clears A, the host unmaps the
    /// page (the leaf is zapped, the frame freed). Aging must not write the leaf back.
    /// </summary>
    [Fact]
    public void AgingNeverLosesWhatTheCpuOrAZapperWrote_Zapper()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        Pfn p = b.Touch(3, write: false, cpu: 1);
        AtCheckpoint(MmCheckpoint.SecondaryLeafRead, () => Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Hva(3), b.Hva(4))));
        try { Assert.True(b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(3), b.Hva(4), true)); }
        finally { NoHook(); }
        Assert.Equal(0, b.Mm.Frames.RefCountOf(p));
        Assert.False(b.Leaf(3).IsPresent, "aging brought back a leaf that a zap had cleared");
        List<string> problems = b.Problems(strict: true);
        Assert.True(problems.Count == 0, Describe(problems));
    }

    /// <summary>
    /// Invariant 4: a leaf whose aging compare-exchange fails (the CPU wrote through it meanwhile)
    /// counts as young, and keeps its accessed bit.
    /// </summary>
    [Fact]
    public void AFailedAgingCompareExchangeCountsAsYoung()
    {
        using EptBed b = new EptBed(pages: 16, audit: false);
        KvmMachine.ThreadCpu = 0;
        b.Touch(3, write: false, cpu: 1);
        AtCheckpoint(MmCheckpoint.SecondaryLeafRead, () => b.TryAccess(3, write: true, cpu: 1, out Pfn _));
        bool young;
        try { young = b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(3), b.Hva(4), true); }
        finally { NoHook(); }
        Assert.True(young, "a failed compare-exchange counted as old");
        Assert.True(b.Leaf(3).IsAccessed);
        Assert.True(b.Leaf(3).IsDirty);
    }

    /// <summary>The EPT platform of the host with two reports: every spin-wait pause and every table freed.</summary>
    public readonly struct PausingEptPlatform : IEptPlatform
    {
        [ThreadStatic] public static Action? OnPause;
        [ThreadStatic] public static Action? OnFreeTable;
        private readonly KvmMachine _machine;
        public PausingEptPlatform(KvmMachine machine) { _machine = machine; }
        public bool AllocateTable(out PhysAddr address, out ulong* entries) => _machine.AllocateTable(out address, out entries);
        public ulong* TableAt(PhysAddr address) => _machine.TableAt(address);
        public void FreeTable(PhysAddr address)
        {
            OnFreeTable?.Invoke();
            _machine.FreeTable(address);
        }
        public void InvEptSingleContext(ulong eptPointer) => _machine.InvEpt(eptPointer);
        public void FlushRemote(ulong eptPointer, ulong cpuMask) => _machine.FlushRemote(eptPointer, cpuMask);
        public int CurrentCpu => KvmMachine.ThreadCpu % _machine.Cpus;
        public void PreemptDisable() { }

        public void PreemptEnable() { }

        public void SpinPause()
        {
            OnPause?.Invoke();
            AccessMonitor.Step(SharedAccessKind.Spin, 0);
            Thread.Yield();
        }
        public void Checkpoint(MmCheckpoint site) => KvmMachine.ThreadCheckpoint?.Invoke(site);
    }

    private sealed class PausingWorld : IDisposable
    {
        public const int Pages = 16;
        public readonly KvmMachine Machine = new KvmMachine(16UL << 20, 4);
        public readonly MemoryManager<MmHostPlatform> Mm;
        public readonly AddressSpace<MmHostPlatform> Space;
        public readonly EptMmu<PausingEptPlatform> Ept;

        public PausingWorld()
        {
            Mm = new MemoryManager<MmHostPlatform>(Machine.MmPlatform, Machine.FrameCount, 16, Machine.FrameCount);
            Mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
            Space = Mm.CreateAddressSpace()!;
            Assert.True(Space.AddRegion(Region.Anonymous(EptBed.RamBase, Pages * PageSizes.Size4K, PageProt.Write | PageProt.User)));
            Ept = EptMmu<PausingEptPlatform>.Create(new PausingEptPlatform(Machine), Space)!;
            Assert.True(Ept.AddMemslot(new Memslot(new Gfn(0), Pages, EptBed.RamBase, true)));
            Assert.True(Ept.RegisterWith(Space.Notifiers));
            for (int i = 0; i < 8; i++)
                Assert.Equal(FaultStatus.Ok, Ept.HandleViolation(new Gfn((ulong)i).Address, write: true));
        }

        public int PresentLeaves()
        {
            int n = 0;
            foreach (EptSlot _ in new EptWalker<PausingEptPlatform>(Ept.Platform, Ept.Root, new GuestPhysAddr(0), new Gfn(Pages).Address))
                n++;
            return n;
        }

        public void Dispose() => Machine.Dispose();
    }

    /// <summary>
    /// Invariant 1 at the end of a registration: when Release starts freeing the EPT's tables,
    /// every leaf is already gone (mm frees the frames as soon as the notifier is released).
    /// </summary>
    [Fact]
    public void ReleaseZapsEveryLeafBeforeTheTablesGo()
    {
        using PausingWorld w = new PausingWorld();
        KvmMachine.ThreadCpu = 0;
        Assert.Equal(8, w.PresentLeaves());
        int leavesAtFirstFree = -1;
        PausingEptPlatform.OnFreeTable = () =>
        {
            if (leavesAtFirstFree < 0)
                leavesAtFirstFree = w.PresentLeaves();   // depth first: every table is still intact here
        };
        try { Assert.True(w.Space.Notifiers.Unregister(w.Ept)); }
        finally { PausingEptPlatform.OnFreeTable = null; }
        Assert.True(w.Ept.IsReleased);
        Assert.Equal(4, Interlocked.Read(ref w.Machine.TablesFreed));
        Assert.Equal(0, leavesAtFirstFree);
    }

    /// <summary>
    /// The table-freeing rule: an aging walker is inside its walk when Release runs on another CPU.
    /// Release must wait for it (its grace period) before it frees a table; the walker watches until
    /// Release either waits for it or frees a table.
    /// </summary>
    [Fact]
    public void ReleaseFreesNoTableWhileAWalkerIsInside()
    {
        using PausingWorld w = new PausingWorld();
        ManualResetEventSlim inside = new ManualResetEventSlim();
        ManualResetEventSlim releaseWaitsOrFrees = new ManualResetEventSlim();
        long freedWhileInside = -1;
        Exception? walkerError = null, releaseError = null;
        Thread walker = Start(2, () =>
        {
            AtCheckpoint(MmCheckpoint.SecondaryWalkBegun, () =>
            {
                inside.Set();
                if (!releaseWaitsOrFrees.Wait(Bound))
                    throw new TimeoutException("Release neither waited nor freed");
                freedWhileInside = Interlocked.Read(ref w.Machine.TablesFreed);
            });
            w.Ept.TestYoung(w.Space, EptBed.RamBase, EptBed.RamBase + PausingWorld.Pages * PageSizes.Size4K);
        }, e => { walkerError = e; inside.Set(); });
        Assert.True(inside.Wait(Bound));
        Thread releaser = Start(3, () =>
        {
            PausingEptPlatform.OnPause = () => releaseWaitsOrFrees.Set();
            PausingEptPlatform.OnFreeTable = () => releaseWaitsOrFrees.Set();
            try { w.Ept.Release(w.Space); }
            finally
            {
                PausingEptPlatform.OnPause = null;
                PausingEptPlatform.OnFreeTable = null;
            }
        }, e => { releaseError = e; releaseWaitsOrFrees.Set(); });
        Assert.True(walker.Join(Bound), "the walker did not finish");
        Assert.True(releaser.Join(Bound), "Release did not finish");
        Assert.Null(walkerError);
        Assert.Null(releaseError);
        Assert.Equal(0, freedWhileInside);
        Assert.Equal(4, Interlocked.Read(ref w.Machine.TablesFreed));     // PML4, PDPT, PD, PT
    }
}
