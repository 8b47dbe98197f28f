using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>
/// Tests written for the mutation check (tests/mutations/mutations.txt): each drives the window of
/// one mutation of mm/ deterministically, with named checkpoints (the racing operation runs inline
/// where the first one reports the checkpoint) or with threads and events. Where a test has to know
/// that a thread is waiting in a grace period, its platform reports every spin-wait pause
/// (<see cref="PausePlatform"/>): a wait is then seen, never guessed from a timeout.
/// </summary>
public unsafe class MutationKillTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

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

    private static ulong* PrimarySlot<T>(AddressSpace<T> space, T platform, VirtAddr va) where T : struct, IMmPlatform
    {
        PageTableWalker<T> w = new PageTableWalker<T>(platform, space.Root, va, va + 1);
        w.MoveNext();
        Assert.Equal(1, w.Current.Level);
        return w.Current.Pointer;
    }

    private static Thread Start(Action body, Action<Exception> onError)
    {
        Thread t = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { onError(e); }
        })
        { IsBackground = true };
        t.Start();
        return t;
    }

    /// <summary>
    /// The host platform, but every spin-wait pause of a thread that set <see cref="OnPause"/> is
    /// reported to it: a thread waiting in a grace period (or on a lock) is seen waiting.
    /// </summary>
    public readonly struct PausePlatform : IMmPlatform
    {
        [ThreadStatic] public static Action? OnPause;
        private readonly HostPlatform _inner;
        public PausePlatform(HostMachine machine) { _inner = new HostPlatform(machine); }
        public byte* PhysToVirt(PhysAddr address) => _inner.PhysToVirt(address);
        public int CurrentCpu => _inner.CurrentCpu;
        public int CpuCount => _inner.CpuCount;
        public void FlushTlb(in TlbFlushRequest request) => _inner.FlushTlb(request);
        public void DeferFree(object retired) => _inner.DeferFree(retired);
        public void WaitForChange(ref int word, int observed) => _inner.WaitForChange(ref word, observed);
        public void FrameFreed(Pfn frame) => _inner.FrameFreed(frame);

        public void PreemptDisable() { }

        public void PreemptEnable() { }
        public void Checkpoint(MmCheckpoint site) => _inner.Checkpoint(site);
        public void SpinPause()
        {
            OnPause?.Invoke();
            _inner.SpinPause();
        }
    }

    /// <summary>A notifier whose callbacks can be held inside (a callback "in flight") and released.</summary>
    private sealed class GateNotifier : IMmuNotifier
    {
        public readonly ManualResetEventSlim Entered = new ManualResetEventSlim();
        public readonly ManualResetEventSlim Leave = new ManualResetEventSlim();
        public int Inside;
        public int Releases;
        public bool HoldStart;
        public bool HoldRelease;

        private void Hold()
        {
            Volatile.Write(ref Inside, 1);
            Entered.Set();
            if (!Leave.Wait(Bound))
                throw new TimeoutException("the gate was never opened");
            Volatile.Write(ref Inside, 0);
        }

        public void InvalidateRangeStart(in MmuNotifierRange range)
        {
            if (HoldStart)
                Hold();
        }
        public void InvalidateRangeEnd(in MmuNotifierRange range) { }
        public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
        public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;
        public void Release(IAddressSpace space)
        {
            int n = Interlocked.Increment(ref Releases);
            if (HoldRelease && n == 1)
                Hold();
            else if (n > 1)
                Leave.Set();    // a second Release: let the first go, so the mistake fails instead of hanging
        }
    }

    private sealed class PauseWorld : IDisposable
    {
        public readonly HostMachine Machine = new HostMachine(16UL << 20, 4);
        public readonly MemoryManager<PausePlatform> Mm;
        public readonly AddressSpace<PausePlatform> Space;

        public PauseWorld()
        {
            Mm = new MemoryManager<PausePlatform>(new PausePlatform(Machine), Machine.FrameCount, 16, Machine.FrameCount);
            Mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
            Space = Mm.CreateAddressSpace()!;
            Assert.True(Space.AddRegion(Region.Anonymous(TestBed.WindowBase, 64 * PageSizes.Size4K, PageProt.Write | PageProt.User)));
        }

        public VirtAddr Page(int i) => TestBed.WindowBase + (ulong)i * PageSizes.Size4K;

        public MmuNotifierRange Range(int page) => new MmuNotifierRange(Space, Page(page), Page(page + 1), MmuNotifierEvent.Clear, true);

        public void Dispose() => Machine.Dispose();
    }

    /// <summary>
    /// Runs <paramref name="waiter"/> on a thread that reports its spin-wait pauses, while
    /// <paramref name="gate"/> holds a callback inside. As soon as the waiter either pauses (it waits
    /// for the callback: right) or returns, the gate opens. Returns whether the gate's callback was
    /// still inside when the waiter returned.
    /// </summary>
    private static bool ReturnedWhileInside(GateNotifier gate, Action waiter)
    {
        ManualResetEventSlim waitingOrDone = new ManualResetEventSlim();
        int insideAtReturn = -1;
        Exception? error = null;
        Thread t = Start(() =>
        {
            PausePlatform.OnPause = () => waitingOrDone.Set();
            try
            {
                waiter();
                insideAtReturn = Volatile.Read(ref gate.Inside);
            }
            finally
            {
                PausePlatform.OnPause = null;
                waitingOrDone.Set();
            }
        }, e => error = e);
        Assert.True(waitingOrDone.Wait(Bound), "the waiter neither returned nor waited");
        gate.Leave.Set();
        Assert.True(t.Join(Bound), "the waiter did not finish after the callback left");
        if (error != null)
            throw new InvalidOperationException("the waiter threw", error);
        return insideAtReturn == 1;
    }

    /// <summary>
    /// Invariant 1, TryToUnmap: the primary entry is cleared before the notifiers run. A secondary
    /// fault right after the notifiers ended (the latest point at which it cannot be zapped any more)
    /// must not find the old page: it faults a new one in, which the primary maps too.
    /// </summary>
    [Fact]
    public void NotifyComesAfterTheClear()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(1), true));
        Assert.True(b.Space.TranslateFrame(b.Page(1), out Pfn p));
        AtCheckpoint(MmCheckpoint.NotifierEndDone, () => Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(1), false)));
        try { Assert.True(b.Mm.TryToUnmap(p)); }
        finally { NoHook(); }
        sec.CheckQuiescent("after TryToUnmap");
        Assert.True(sec.Violations == 0, string.Join("; ", sec.Messages));
        Assert.NotEqual(0L, sec.Entry(1));
        Assert.NotEqual((ulong)p.Value, (ulong)sec.Entry(1) >> 12);
    }

    /// <summary>
    /// Invariant 1, Unmap: a frame's reference is dropped only after the notifiers ran. While the
    /// secondary still maps the frame (after the primary flush, before the notifiers), the frame
    /// must be live.
    /// </summary>
    [Fact]
    public void TheReferenceOutlivesTheNotifiers()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(1), true));
        Assert.True(b.Space.TranslateFrame(b.Page(1), out Pfn p));
        int countWhileMapped = -1;
        long entryWhileMapped = 0;
        AtCheckpoint(MmCheckpoint.PrimaryTlbFlushed, () =>
        {
            entryWhileMapped = sec.Entry(1);
            countWhileMapped = b.Mm.Frames.RefCountOf(p);
        });
        try { Assert.Equal(MapStatus.Ok, b.Space.Unmap(b.Page(1), b.Page(2))); }
        finally { NoHook(); }
        Assert.Equal((ulong)p.Value, (ulong)entryWhileMapped >> 12);   // the secondary still mapped it
        Assert.True(countWhileMapped > 0, "the frame was freed while a secondary still mapped it");
        Assert.Equal(0L, sec.Entry(1));
        Assert.Equal(0, b.Mm.Frames.RefCountOf(p));
        Assert.True(sec.Violations == 0, string.Join("; ", sec.Messages));
    }

    /// <summary>
    /// Invariant 3: a D bit the CPU sets in the entry up to the moment it is cleared reaches the
    /// frame. The CPU writes through the entry at the last shared-memory step before the clear (the
    /// step that clears it: an exchange, or the store of a read-then-store).
    /// </summary>
    [Fact]
    public void ADirtyBitTheCpuSetsBeforeTheClearIsKept()
    {
        using TestBed b = new TestBed();
        HostPlatform platform = b.Machine.Platform;
        VirtAddr va = b.Page(4);
        Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(va, false));
        Assert.True(b.Space.TranslateFrame(va, out Pfn p));
        ulong* slot = PrimarySlot(b.Space, platform, va);
        Assert.False(PteOps.Read(slot).IsDirty);
        Assert.True(b.Mm.Frames.TryGetRef(p));      // keep the record to read its flags afterwards
        b.Mm.Frames.ClearFlags(p, FrameFlags.Dirty);
        bool wrote = false;
        AccessMonitor.ThreadHook = (kind, address) =>
        {
            if (wrote || address != (ulong)slot || (kind != SharedAccessKind.PteExchange && kind != SharedAccessKind.PteWrite))
                return;
            // The CPU's locked A/D update of the present entry, just before the clearing step.
            ulong e = Volatile.Read(ref *slot);
            Assert.True(new PageTableEntry(e).IsPresent);
            Assert.Equal(e, Interlocked.CompareExchange(ref *slot, e | PageTableEntry.Accessed | PageTableEntry.Dirty, e));
            wrote = true;
        };
        try { Assert.Equal(MapStatus.Ok, b.Space.Unmap(va, va + PageSizes.Size4K)); }
        finally { AccessMonitor.ThreadHook = null; }
        Assert.True(wrote);
        Assert.True((b.Mm.Frames.FlagsOf(p) & FrameFlags.Dirty) != 0, "the D bit the CPU set before the clear was lost");
        b.Mm.Frames.PutRef(p);
    }

    /// <summary>
    /// Notifier lifetime: Register returns only after every invalidation that was already running
    /// (and so may have read the snapshot without the new notifier) has finished.
    /// </summary>
    [Fact]
    public void RegisterWaitsForInvalidationsAlreadyInFlight()
    {
        using PauseWorld w = new PauseWorld();
        GateNotifier gate = new GateNotifier { HoldStart = true };
        Assert.True(w.Space.Notifiers.Register(gate, MmuNotifierFlags.None));
        Exception? error = null;
        Thread invalidation = Start(() => w.Space.Notifiers.Invalidate(w.Range(3)), e => error = e);
        Assert.True(gate.Entered.Wait(Bound));
        GateNotifier fresh = new GateNotifier();
        bool early = ReturnedWhileInside(gate, () => Assert.True(w.Space.Notifiers.Register(fresh, MmuNotifierFlags.None)));
        Assert.True(invalidation.Join(Bound));
        Assert.Null(error);
        Assert.False(early, "Register returned while an invalidation that began before it was still running");
    }

    /// <summary>Notifier lifetime: after Unregister returns, no callback of the notifier is running.</summary>
    [Fact]
    public void UnregisterWaitsForCallbacksAlreadyRunning()
    {
        using PauseWorld w = new PauseWorld();
        GateNotifier gate = new GateNotifier { HoldStart = true };
        Assert.True(w.Space.Notifiers.Register(gate, MmuNotifierFlags.None));
        Exception? error = null;
        Thread invalidation = Start(() => w.Space.Notifiers.Invalidate(w.Range(3)), e => error = e);
        Assert.True(gate.Entered.Wait(Bound));
        bool early = ReturnedWhileInside(gate, () => Assert.True(w.Space.Notifiers.Unregister(gate)));
        Assert.True(invalidation.Join(Bound));
        Assert.Null(error);
        Assert.False(early, "Unregister returned while a callback of the notifier was still running");
        Assert.Equal(1, gate.Releases);
    }

    /// <summary>
    /// Invariant 1 at address-space death: an Unregister is inside the notifier's Release (its
    /// mappings not yet dropped) when the space dies. The teardown must wait for that Release before
    /// it unmaps and frees the pages.
    /// </summary>
    [Fact]
    public void DestroyWaitsForAConcurrentUnregistersRelease()
    {
        using PauseWorld w = new PauseWorld();
        for (int i = 0; i < 4; i++)
            Assert.Equal(FaultStatus.Ok, w.Space.HandleFault(w.Page(i), true));
        GateNotifier gate = new GateNotifier { HoldRelease = true };
        Assert.True(w.Space.Notifiers.Register(gate, MmuNotifierFlags.None));
        Exception? error = null;
        Thread unregister = Start(() => Assert.True(w.Space.Notifiers.Unregister(gate)), e => error = e);
        Assert.True(gate.Entered.Wait(Bound));
        bool early = ReturnedWhileInside(gate, () => w.Space.Destroy());
        Assert.True(unregister.Join(Bound));
        Assert.Null(error);
        Assert.False(early, "the address space was torn down while a notifier was still in its Release");
        Assert.Equal(1, gate.Releases);
        Assert.Equal(0, w.Mm.Rmap.Used);
    }

    /// <summary>
    /// Notifier lifetime: Release runs exactly once. One Unregister is inside Release when a second
    /// Unregister of the same notifier comes: the second must return false at once.
    /// </summary>
    [Fact]
    public void ReleaseRunsOnceWhenTwoUnregistersOverlap()
    {
        using TestBed b = new TestBed();
        GateNotifier gate = new GateNotifier { HoldRelease = true };
        Assert.True(b.Space.Notifiers.Register(gate, MmuNotifierFlags.None));
        Exception? error = null;
        bool first = false;
        Thread unregister = Start(() => first = b.Space.Notifiers.Unregister(gate), e => error = e);
        Assert.True(gate.Entered.Wait(Bound));
        bool second = b.Space.Notifiers.Unregister(gate);
        gate.Leave.Set();
        Assert.True(unregister.Join(Bound));
        Assert.Null(error);
        Assert.True(first);
        Assert.False(second, "a second Unregister claimed the Release too");
        Assert.Equal(1, gate.Releases);
        Assert.False(b.Space.Notifiers.HasNotifiers);
    }

    private readonly struct CallbackPause : ISpinPause
    {
        private readonly Action _body;
        public CallbackPause(Action body) { _body = body; }
        public void SpinPause() => _body();
    }

    /// <summary>
    /// Invariant 5 (no starvation): a grace period waits for the sections that began before it, not
    /// for those that begin while it waits. Here a new section begins before the oldest one ends, at
    /// every pause of the synchronizer, so one is always open: it must still return.
    /// </summary>
    [Fact]
    public void AGracePeriodDoesNotWaitForSectionsThatBeganAfterIt()
    {
        GracePeriod g = new GracePeriod();
        Queue<int> open = new Queue<int>();
        open.Enqueue(g.ReadLock());
        int pauses = 0;
        g.Synchronize(new CallbackPause(() =>
        {
            if (++pauses > 64)
                throw new InvalidOperationException("Synchronize keeps waiting for sections that began after it");
            open.Enqueue(g.ReadLock());
            g.ReadUnlock(open.Dequeue());
        }));
        Assert.True(pauses >= 1, "Synchronize did not wait for the section that began before it");
        Assert.True(g.HasReaders);
        while (open.Count > 0)
            g.ReadUnlock(open.Dequeue());
        Assert.False(g.HasReaders);
    }
}
