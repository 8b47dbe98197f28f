using System.Collections.Generic;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

public class NotifierTests
{
    /// <summary>Records what the primary looked like when each callback ran.</summary>
    private sealed class OrderProbe : IMmuNotifier
    {
        private readonly TestBed _b;
        public readonly List<string> Log = new List<string>();
        public OrderProbe(TestBed b) { _b = b; }

        public void InvalidateRangeStart(in MmuNotifierRange range)
        {
            bool mapped = _b.Space.TranslateFrame(range.Start, out Pfn _);
            Log.Add("start:" + range.Event + ":primary=" + (mapped ? "mapped" : "gone") + ":flushes=" + _b.Machine.FlushCount);
        }

        public void InvalidateRangeEnd(in MmuNotifierRange range) => Log.Add("end");
        public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) { Log.Add("cfy"); return false; }
        public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) { Log.Add("cy"); return false; }
        public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) { Log.Add("ty"); return true; }
        public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) { Log.Add("fast"); return true; }
        public void Release(IAddressSpace space) => Log.Add("release");
    }

    [Fact]
    public void TryToUnmapClearsFlushesNotifiesThenDropsTheReference()
    {
        using TestBed b = new TestBed();
        OrderProbe probe = new OrderProbe(b);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.None);
        List<MmCheckpoint> steps = new List<MmCheckpoint>();
        HostMachine.ThreadCheckpoint = steps.Add;
        try
        {
            b.Space.HandleFault(b.Page(1), true);
            b.Space.TranslateFrame(b.Page(1), out Pfn f);
            steps.Clear();
            long flushes = b.Machine.FlushCount;
            int refsDuringStart = -1;
            HostMachine.ThreadCheckpoint = s => { steps.Add(s); if (s == MmCheckpoint.NotifierStartDone) refsDuringStart = b.Mm.Frames.RefCountOf(f); };
            Assert.True(b.Mm.TryToUnmap(f));
            Assert.Equal(new[] { MmCheckpoint.RmapEntryCopied, MmCheckpoint.PrimaryEntryCleared, MmCheckpoint.PrimaryTlbFlushed, MmCheckpoint.NotifierStartDone,
                                 MmCheckpoint.NotifierEndDone, MmCheckpoint.ReferenceDropped }, steps);
            Assert.Equal(new[] { "start:Clear:primary=gone:flushes=" + (flushes + 1), "end" }, probe.Log);
            Assert.True(refsDuringStart > 0, "the reference must still be held while the notifiers run");
            Assert.Equal(0, b.Mm.Frames.RefCountOf(f));
        }
        finally
        {
            HostMachine.ThreadCheckpoint = null;
        }
    }

    [Fact]
    public void UnmapAndProtectNotifyOncePerOperationAfterClearing()
    {
        using TestBed b = new TestBed();
        OrderProbe probe = new OrderProbe(b);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.None);
        for (int i = 0; i < 10; i++)
            b.Space.HandleFault(b.Page(i), true);
        b.Space.Protect(b.Page(0), b.Page(10), PageProt.User);
        b.Space.Unmap(b.Page(0), b.Page(10));
        Assert.Equal(4, probe.Log.Count);
        Assert.StartsWith("start:ProtectionChange:primary=mapped", probe.Log[0]);
        Assert.StartsWith("start:Unmap:primary=gone", probe.Log[2]);
    }

    [Fact]
    public void FastAgingAsksOnlyLocklessNotifiersAndSaysSo()
    {
        using TestBed b = new TestBed();
        OrderProbe slow = new OrderProbe(b);
        RecordingSecondaryMmu fast = b.AddSecondary(lockless: true);
        b.Space.Notifiers.Register(slow, MmuNotifierFlags.None);
        fast.Fault(b.Page(0), false);
        FastAgeResult r = b.Space.Notifiers.TestClearYoungFastOnly(b.Space, b.Page(0), b.Page(1), true);
        Assert.True(r.Young);
        Assert.False(r.Complete);
        Assert.DoesNotContain("fast", slow.Log);
        Assert.False(b.Space.Notifiers.TestClearYoungFastOnly(b.Space, b.Page(0), b.Page(1), true).Young);
        Assert.True(b.Space.Notifiers.ClearFlushYoung(b.Space, b.Page(0), b.Page(1)) == false);
        Assert.Contains("cfy", slow.Log);
    }

    [Fact]
    public void AgingIsTheOrOfPrimaryAndSecondaryAccessedBits()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        sec.Fault(b.Page(0), false); // secondary entry young, primary entry young? clear both first
        b.Space.TranslateFrame(b.Page(0), out Pfn f);
        b.Mm.AgeFrame(f, exact: true);
        Assert.False(b.Mm.AgeFrame(f, exact: false));
        sec.Access(b.Page(0), false); // only the secondary sees an access
        Assert.True(b.Mm.AgeFrame(f, exact: false));
        Assert.False(b.Mm.AgeFrame(f, exact: true));
        Assert.True(b.Mm.TryReclaim(f));
        Assert.False(b.Space.TranslateFrame(b.Page(0), out _));
        Assert.Equal(0, sec.Entry(0));
    }

    [Fact]
    public unsafe void ReclaimKeepsAPageThatASecondaryFoundYoung()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        b.Space.HandleFault(b.Page(2), false);
        b.Space.TranslateFrame(b.Page(2), out Pfn f);
        b.Mm.AgeFrame(f, exact: true);       // primary and secondary old
        sec.Access(b.Page(2), false);        // only the secondary sees the next access
        Assert.False(b.Mm.TryReclaim(f));    // young in the secondary: kept
        Assert.True(b.Space.TranslateFrame(b.Page(2), out _));
        Assert.NotEqual(0, sec.Entry(2));
        // Untouched since: evicted. The CPU writes the page right up to the moment reclaim clears
        // its entry: it sets D in the entry just before mm's clearing step (as the hardware can).
        b.Mm.Frames.GetRef(f); // keep the record to read its flags after the reclaim
        b.Mm.Frames.ClearFlags(f, FrameFlags.Dirty);
        int cpuWrites = 0;
        AccessMonitor.ThreadHook = (kind, address) =>
        {
            if ((kind == SharedAccessKind.PteExchange || kind == SharedAccessKind.PteWrite || kind == SharedAccessKind.PteCompareExchange) && cpuWrites++ == 0)
                System.Threading.Interlocked.Or(ref *(ulong*)address, PageTableEntry.Dirty);
        };
        try
        {
            Assert.True(b.Mm.TryReclaim(f));
        }
        finally
        {
            AccessMonitor.ThreadHook = null;
        }
        Assert.False(b.Space.TranslateFrame(b.Page(2), out _));
        Assert.Equal(0, sec.Entry(2));
        Assert.True(cpuWrites > 0, "reclaim never cleared the entry");
        Assert.Equal(1, b.Mm.Frames.RefCountOf(f)); // only ours: the mapping's reference went
        Assert.True((b.Mm.Frames.FlagsOf(f) & FrameFlags.Dirty) != 0,
            "the D bit the CPU set before the entry was cleared was lost: a modified page would be dropped as clean");
        b.Mm.Frames.PutRef(f);
    }

    [Fact]
    public void SecondaryDirtyBitFoundWhileZappingMakesTheFrameDirty()
    {
        using TestBed b = new TestBed();
        RecordingSecondaryMmu sec = b.AddSecondary();
        b.Space.HandleFault(b.Page(0), false);
        b.Space.TranslateFrame(b.Page(0), out Pfn f);
        b.Mm.Frames.GetRef(f); // keep the record ours after the unmap
        sec.Access(b.Page(0), true);
        Assert.True((b.Mm.Frames.FlagsOf(f) & FrameFlags.Dirty) == 0);
        b.Space.Unmap(b.Page(0), b.Page(1));
        Assert.True((b.Mm.Frames.FlagsOf(f) & FrameFlags.Dirty) != 0);
        b.Mm.Frames.PutRef(f);
    }

    [Fact]
    public void UnregisteredNotifiersAreNotCalledAndTheCheckIsCheap()
    {
        using TestBed b = new TestBed();
        Assert.False(b.Space.Notifiers.HasNotifiers);
        OrderProbe probe = new OrderProbe(b);
        b.Space.Notifiers.Register(probe, MmuNotifierFlags.None);
        Assert.True(b.Space.Notifiers.HasNotifiers);
        Assert.True(b.Space.Notifiers.Unregister(probe));
        Assert.False(b.Space.Notifiers.HasNotifiers);
        b.Space.HandleFault(b.Page(0), true);
        b.Space.Unmap(b.Page(0), b.Page(1));
        Assert.Equal(new[] { "release" }, probe.Log); // Unregister releases first, then nothing more
        Assert.False(b.Space.Notifiers.Unregister(probe));
    }
}
