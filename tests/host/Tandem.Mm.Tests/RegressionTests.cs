using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>
/// One regression test per defect of issue 7 on the mm side (the EPT side is in the kvm tests).
/// Each drives the exact window the defect lived in, by running the racing operation inline at a
/// named checkpoint of the first one (or on a second thread where the first must wait for it).
/// </summary>
public unsafe class RegressionTests
{
    /// <summary>Runs <paramref name="action"/> once, on this thread, the first time it reaches <paramref name="site"/>.</summary>
    private static void AtCheckpoint(MmCheckpoint site, Action action)
    {
        bool fired = false;
        HostMachine.ThreadCheckpoint = s =>
        {
            if (fired || s != site)
                return;
            fired = true;
            action();
        };
    }

    private static void NoHook() => HostMachine.ThreadCheckpoint = null;

    /// <summary>Runs <paramref name="body"/> on a background thread; false if it did not finish in time (it may hang: that is the failure).</summary>
    internal static bool Finishes<T>(Func<T> body, TimeSpan timeout, out T result)
    {
        T value = default!;
        Exception? error = null;
        Thread t = new Thread(() =>
        {
            try { value = body(); }
            catch (Exception e) { error = e; }
        })
        { IsBackground = true };
        t.Start();
        bool done = t.Join(timeout);
        if (error != null)
            throw new InvalidOperationException("the body threw", error);
        result = value;
        return done;
    }

    private static void DeactivateEverywhere<T>(AddressSpace<T> space) where T : struct, IMmPlatform
    {
        for (int c = 0; c < 64; c++)
            space.Deactivate(c);
    }

    private static int FreeFrames(TestBed b)
    {
        b.Mm.Frames.DrainCaches();
        return b.Mm.Frames.BuddyFreeFrames;
    }

    private static ulong* PrimarySlot<T>(AddressSpace<T> space, T platform, VirtAddr va) where T : struct, IMmPlatform
    {
        PageTableWalker<T> w = new PageTableWalker<T>(platform, space.Root, va, va + 1);
        w.MoveNext();
        Assert.Equal(1, w.Current.Level);
        return w.Current.Pointer;
    }

    /// <summary>
    /// Defect 2: a fault into a dying space installed a PTE and an rmap entry after the teardown's
    /// unmap had passed, and the page leaked. Now every install checks the dead flag under the
    /// page-table lock, and the fault fails with Dead.
    /// </summary>
    [Fact]
    public void Defect2_AFaultRacingDestroyInstallsNothingAndLeaksNothing()
    {
        using TestBed b = new TestBed();
        int free0 = FreeFrames(b);
        for (int i = 0; i < 4; i++)
            Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(i), true));
        DeactivateEverywhere(b.Space);
        FaultStatus late = FaultStatus.Ok;
        AtCheckpoint(MmCheckpoint.ReferenceDropped, () => late = b.Space.HandleFault(b.Page(10), true));
        try { b.Space.Destroy(); }
        finally { NoHook(); }
        Assert.Equal(FaultStatus.Dead, late);
        Assert.Equal(0, b.Mm.Rmap.Used);
        Assert.Equal(free0 + 1, FreeFrames(b)); // + the root table
    }

    /// <summary>
    /// Defect 2: AgeFrame copied (space, va) out of the rmap and walked that space with nothing
    /// keeping it alive. The space died, a new space reused its root, and the walk cleared the
    /// accessed bit of the new space's live entry without its lock. Now the walker takes a user
    /// reference first (and skips a space whose last reference is gone).
    /// </summary>
    [Fact]
    public void Defect2_AgingNeverWalksTheTablesOfASpaceThatDied()
    {
        using TestBed b = new TestBed();
        HostPlatform platform = b.Machine.Platform;
        VirtAddr va = b.Page(3);
        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn frame));
        Assert.Equal(MapStatus.Ok, b.Space.MapFrame(va, frame, PageProt.Write | PageProt.User));
        b.Mm.Frames.PutRef(frame);
        AddressSpace<HostPlatform>? other = null;
        ulong* otherSlot = null;
        AtCheckpoint(MmCheckpoint.RmapEntryCopied, () =>
        {
            DeactivateEverywhere(b.Space);
            b.Space.Destroy();
            other = b.Mm.CreateAddressSpace();
            Assert.NotNull(other);
            Assert.True(other!.AddRegion(Region.Anonymous(TestBed.WindowBase, 64 * PageSizes.Size4K, PageProt.Write | PageProt.User)));
            Assert.Equal(MapStatus.Ok, other.MapFrame(va, frame, PageProt.Write | PageProt.User));
            otherSlot = PrimarySlot(other, platform, va);
            PteOps.SetBits(otherSlot, PageTableEntry.Accessed);
        });
        try { b.Mm.AgeFrame(frame, exact: false); }
        finally { NoHook(); }
        Assert.NotNull(other);
        Assert.Equal(b.Space.Root, other!.Root);   // the scenario: the dead space's root was reused
        Assert.True(PteOps.Read(otherSlot).IsAccessed, "aging cleared the accessed bit of another space's live entry");
    }

    /// <summary>Defect 2: Destroy of a space still loaded on a CPU is refused before anything changes.</summary>
    [Fact]
    public void Defect2_DestroyRefusesASpaceStillLoadedOnACpu()
    {
        using TestBed b = new TestBed();
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(0), true));
        Assert.Throws<InvalidOperationException>(() => b.Space.Destroy());
        Assert.False(b.Space.IsDying);
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(1), true));
    }

    /// <summary>
    /// Defect 5: Unmap and Protect did not bounds-check. Above 2^48 the walk wrapped to low
    /// addresses while the notifier range did not; a wrapped Unmap threw while holding _ptLock and
    /// every later fault hung. Now a bad range is refused before any lock, and faults go on.
    /// </summary>
    [Fact]
    public void Defect5_RangesOutsideTheUserHalfAreRefusedBeforeAnyLock()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(0), true));
        VirtAddr wrap = new VirtAddr((1UL << 48) + b.Page(0).Value);
        Assert.Throws<ArgumentException>(() => b.Space.Protect(wrap, wrap + PageSizes.Size4K, PageProt.Read));
        Assert.Throws<ArgumentException>(() => b.Space.Unmap(wrap, wrap + PageSizes.Size4K));
        Assert.Throws<ArgumentException>(() => b.Space.Unmap(new VirtAddr(AddressSpace<HostPlatform>.UserTop - 4096), new VirtAddr(AddressSpace<HostPlatform>.UserTop + 4096)));
        Assert.Throws<ArgumentException>(() => b.Space.Unmap(b.Page(2), b.Page(1)));
        Assert.Throws<ArgumentException>(() => b.Space.Protect(b.Page(0) + 1, b.Page(1), PageProt.Read));
        Assert.Throws<ArgumentException>(() => b.Space.SplitHuge(wrap));
        // Nothing changed: the primary entry is still writable, and so is the secondary's.
        Assert.True(b.Space.Translate(b.Page(0), out PageTableEntry pte, out int _) && pte.IsWritable);
        Assert.NotEqual(0, sec.Entry(0) & RecordingSecondaryMmu.W);
        // No lock was left held: a fault completes.
        Assert.True(Finishes(() => b.Space.HandleFault(b.Page(5), true), TimeSpan.FromSeconds(10), out FaultStatus fault),
            "a fault hung after a refused range (a page-table lock left held)");
        Assert.Equal(FaultStatus.Ok, fault);
        Assert.Equal(0, sec.Violations);
    }

    private sealed class ReleaseProbe : IMmuNotifier
    {
        public int Releases;
        public Action? OnRelease;
        public void InvalidateRangeStart(in MmuNotifierRange range) { }
        public void InvalidateRangeEnd(in MmuNotifierRange range) { }
        public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;
        public void Release(IAddressSpace space)
        {
            Interlocked.Increment(ref Releases);
            Action? a = OnRelease;
            OnRelease = null;
            a?.Invoke();
        }
    }

    /// <summary>Minor: two Unregisters (or Unregister and the space's death) both called Release. Now exactly one does.</summary>
    [Fact]
    public void Minor_ReleaseRunsOnceWhenTwoUnregistersRace()
    {
        using TestBed b = new TestBed();
        ReleaseProbe probe = new ReleaseProbe();
        Assert.True(b.Space.Notifiers.Register(probe, MmuNotifierFlags.None));
        bool second = true;
        probe.OnRelease = () => second = b.Space.Notifiers.Unregister(probe);
        // A second Release would run inside the first one's grace-period section and could never
        // finish its wait: bound the whole call so that mistake fails instead of hanging.
        Assert.True(Finishes(() => b.Space.Notifiers.Unregister(probe), TimeSpan.FromSeconds(30), out bool first),
            "Unregister hung (a second Release ran and waited for the first)");
        Assert.True(first);
        Assert.False(second);
        Assert.Equal(1, probe.Releases);
        Assert.False(b.Space.Notifiers.HasNotifiers);

        ReleaseProbe dying = new ReleaseProbe();
        Assert.True(b.Space.Notifiers.Register(dying, MmuNotifierFlags.None));
        DeactivateEverywhere(b.Space);
        dying.OnRelease = () => Assert.False(b.Space.Notifiers.Unregister(dying));
        b.Space.Destroy();
        Assert.Equal(1, dying.Releases);
        Assert.False(b.Space.Notifiers.Register(new ReleaseProbe(), MmuNotifierFlags.None)); // dying: refused
    }

    /// <summary>
    /// Minor: fast aging dropped <see cref="FastAgeResult.Complete"/>, so a page that only a slow
    /// (not lockless) secondary had seen looked old. An incomplete answer now counts as young.
    /// </summary>
    [Fact]
    public void Minor_FastAgingCountsAnIncompleteAnswerAsYoung()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu slow = b.AddSecondary(lockless: false);
        Assert.Equal(FaultStatus.Ok, slow.Fault(b.Page(0), false));
        Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn f));
        Assert.False(b.Space.Translate(b.Page(0), out PageTableEntry pte, out int _) && pte.IsAccessed);
        Assert.True(b.Mm.AgeFrame(f, exact: false));
    }

    /// <summary>
    /// Minor: AgeFrame walked the rmap by index while it changed (O(n²), and a removal made it skip
    /// a mapping). The cursor walk visits every mapping that stays, exactly once.
    /// </summary>
    [Fact]
    public void Minor_AgingVisitsEveryMappingWhileTheReverseMapChanges()
    {
        using TestBed b = new TestBed();
        HostPlatform platform = b.Machine.Platform;
        Assert.True(b.Mm.Frames.AllocateFrame(out Pfn frame));
        VirtAddr[] vas = { b.Page(1), b.Page(2), b.Page(3), b.Page(4) };
        foreach (VirtAddr va in vas)
        {
            Assert.Equal(MapStatus.Ok, b.Space.MapFrame(va, frame, PageProt.Write | PageProt.User));
            PteOps.SetBits(PrimarySlot(b.Space, platform, va), PageTableEntry.Accessed);
        }
        b.Mm.Frames.PutRef(frame);
        // The list is newest first: the walk meets page 4 first; it goes away under the walk.
        AtCheckpoint(MmCheckpoint.RmapEntryCopied, () => b.Space.Unmap(vas[3], vas[3] + PageSizes.Size4K));
        try { Assert.True(b.Mm.AgeFrame(frame, exact: false)); }
        finally { NoHook(); }
        for (int i = 0; i < 3; i++)
            Assert.False(PteOps.Read(PrimarySlot(b.Space, platform, vas[i])).IsAccessed, "aging skipped the mapping at page " + (i + 1));
    }

    /// <summary>Hand-over-hand: a callback leaves only once another invalidation is inside, so one always is.</summary>
    private sealed class BatonNotifier : IMmuNotifier
    {
        public int Inside;
        public volatile bool Stop;
        public long Passes;
        public void InvalidateRangeStart(in MmuNotifierRange range)
        {
            int me = Interlocked.Increment(ref Inside);
            SpinWait spin = default;
            while (!Stop && me < 2 && Volatile.Read(ref Inside) < 2)
                spin.SpinOnce(-1);
            Interlocked.Increment(ref Passes);
            Interlocked.Decrement(ref Inside);
        }
        public void InvalidateRangeEnd(in MmuNotifierRange range) { }
        public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;
        public void Release(IAddressSpace space) { }
    }

    /// <summary>
    /// Minor: Register and Unregister waited for one global in-flight count to reach 0, so a steady
    /// stream of overlapping invalidations starved them (in the report, Register had not returned
    /// after 5 s). Now they wait only for the invalidations that began before them: with two
    /// threads keeping an invalidation in its callbacks at every moment, both still return.
    /// </summary>
    [Fact]
    public void Minor_RegistrationIsNotStarvedByOverlappingInvalidations()
    {
        using TestBed b = new TestBed();
        BatonNotifier baton = new BatonNotifier();
        Assert.True(b.Space.Notifiers.Register(baton, MmuNotifierFlags.None));
        Thread[] hammers = new Thread[2];
        for (int t = 0; t < 2; t++)
        {
            int page = t;
            hammers[t] = new Thread(() =>
            {
                while (!baton.Stop)
                    b.Space.Notifiers.Invalidate(new MmuNotifierRange(b.Space, b.Page(page), b.Page(page + 1), MmuNotifierEvent.Clear, true));
            })
            { IsBackground = true };
            hammers[t].Start();
        }
        try
        {
            SpinWait.SpinUntil(() => Volatile.Read(ref baton.Passes) > 100, TimeSpan.FromSeconds(10));
            ReleaseProbe fresh = new ReleaseProbe();
            Assert.True(Finishes(() => b.Space.Notifiers.Register(fresh, MmuNotifierFlags.None), TimeSpan.FromSeconds(10), out bool registered),
                "Register starved behind a stream of overlapping invalidations");
            Assert.True(registered);
            Assert.True(Finishes(() => b.Space.Notifiers.Unregister(fresh), TimeSpan.FromSeconds(10), out bool unregistered),
                "Unregister starved behind a stream of overlapping invalidations");
            Assert.True(unregistered);
        }
        finally
        {
            baton.Stop = true;
            foreach (Thread t in hammers)
                t.Join();
        }
    }
}
