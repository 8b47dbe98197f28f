using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Kvm.Tests;

public class AgingAndDirtyTests
{
    private static bool EptYoung(EptBed b, int page)
    {
        bool cleared = false;
        return b.Ept.AgeGuestRange(b.Gpa(page), b.Gpa(page + 1), false, ref cleared);
    }

    [Fact]
    public void HotSetYoungColdSetOldFromAccessedBitsSetByVcpus()
    {
        using EptBed b = new EptBed(pages: 64);
        for (int i = 0; i < 64; i++)
            b.Touch(i, i % 2 == 0, cpu: 1);
        // Clear young everywhere (exact path: clears and flushes, so the next access walks again).
        KvmMachine.ThreadCpu = 0;
        Assert.True(b.Ept.ClearFlushYoung(b.Space, b.Hva(0), b.Hva(64)));
        Assert.False(b.Ept.TestYoung(b.Space, b.Hva(0), b.Hva(64)));
        // Primary A bits are not set by guest accesses, so mm's answer is the EPT's answer.
        for (int i = 0; i < 64; i++)
            b.Mm.AgeFrame(Frame(b, i), exact: true);
        for (int i = 0; i < 8; i++)
            b.Touch(i, false, cpu: 1); // the hot set
        for (int i = 0; i < 64; i++)
            Assert.Equal(i < 8, b.Ept.TestYoung(b.Space, b.Hva(i), b.Hva(i + 1)));
        // Through mm's fast-only aging (lockless call): hot pages young, cold old.
        for (int i = 0; i < 64; i++)
            Assert.Equal(i < 8, b.Mm.AgeFrame(Frame(b, i), exact: false));
        // Fast clear left the vCPU's cached translations alone; the exact clear flushes them.
        for (int i = 0; i < 8; i++)
            b.Touch(i, false, cpu: 1);
        Assert.False(EptYoung(b, 0), "a cached translation sets no accessed bit (like hardware)");
    }

    [Fact]
    public void ClearYoungThenTouchAgainIsYoungAgain()
    {
        using EptBed b = new EptBed();
        Pfn f = b.Touch(4, false, cpu: 0);
        Assert.True(b.Mm.AgeFrame(f, exact: true));   // young; cleared and flushed
        Assert.False(b.Mm.AgeFrame(f, exact: true));  // nobody touched it: old
        b.Touch(4, false, cpu: 0);
        Assert.True(b.Mm.AgeFrame(f, exact: true));   // young again
        b.Touch(4, false, cpu: 0);
        Assert.False(b.Mm.TryReclaim(f));             // young: eviction keeps it
        Assert.True(b.Mm.TryReclaim(f));              // untouched since: evicted
        Assert.False(b.Leaf(4).IsPresent);
    }

    [Fact]
    public unsafe void FailedCompareExchangeCountsAsYoungAndLeavesTheEntry()
    {
        using EptBed b = new EptBed();
        b.Touch(2, false, cpu: 0);
        Assert.True(b.Leaf(2).IsAccessed);
        Assert.False(b.Leaf(2).IsDirty);
        // The vCPU writes the page between the aging walk's read of the leaf and its
        // compare-exchange: the CPU sets D with its own locked update, so the CAS must fail.
        int changes = 0;
        AccessMonitor.ThreadHook = (kind, address) =>
        {
            if ((kind == SharedAccessKind.EptCompareExchange || kind == SharedAccessKind.EptExchange) && changes++ == 0)
                System.Threading.Interlocked.Or(ref *(ulong*)address, EptEntry.Dirty);
        };
        bool young;
        try
        {
            young = b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(2), b.Hva(3), true);
        }
        finally
        {
            AccessMonitor.ThreadHook = null;
        }
        Assert.Equal(1, changes); // one update attempt, no retry (bounded, seed 001)
        Assert.True(young, "a failed compare-exchange counts as young");
        Assert.True(b.Leaf(2).IsAccessed, "a failed compare-exchange leaves the entry as the CPU left it");
        Assert.True(b.Leaf(2).IsDirty, "the dirty bit the CPU set was lost");
        // Without interference the clear succeeds, keeps D, and the next pass finds the page old.
        Assert.True(b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(2), b.Hva(3), true));
        Assert.False(b.Leaf(2).IsAccessed);
        Assert.True(b.Leaf(2).IsDirty);
        Assert.False(b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(2), b.Hva(3), true));
    }

    [Fact]
    public void DirtyBitIsCarriedToTheFrameOnZap()
    {
        using EptBed b = new EptBed();
        Pfn written = b.Touch(1, true, cpu: 0);
        Pfn read = b.Touch(2, false, cpu: 0);
        Assert.True(b.Leaf(1).IsDirty);
        Assert.False(b.Leaf(2).IsDirty);
        // Keep the records alive past the unmap so their flags can be read.
        Assert.True(b.Mm.Frames.TryGetRef(written));
        Assert.True(b.Mm.Frames.TryGetRef(read));
        b.Mm.Frames.ClearFlags(written, FrameFlags.Dirty);
        b.Mm.Frames.ClearFlags(read, FrameFlags.Dirty);
        Assert.True(b.Mm.TryToUnmap(written));
        Assert.True(b.Mm.TryToUnmap(read));
        Assert.True((b.Mm.Frames.FlagsOf(written) & FrameFlags.Dirty) != 0, "EPT dirty bit lost on zap");
        Assert.True((b.Mm.Frames.FlagsOf(read) & FrameFlags.Dirty) == 0, "clean page marked dirty");
        b.Mm.Frames.PutRef(written);
        b.Mm.Frames.PutRef(read);
    }

    private static Pfn Frame(EptBed b, int page)
    {
        Assert.True(b.PrimaryFrame(page, out Pfn f));
        return f;
    }
}
