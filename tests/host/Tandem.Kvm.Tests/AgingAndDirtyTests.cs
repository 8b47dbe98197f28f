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

    /// <summary>
    /// The span call (<see cref="IBitmapAgingNotifier"/>): one walk answers per page exactly as the
    /// per-page fast-only calls do, clears A only on asked pages, and leaves unasked ones alone.
    /// Kills "the bitmap call answers for pages it was not asked about" and "it does not clear".
    /// </summary>
    [Fact]
    public unsafe void TheBitmapCallAnswersPerPageAndClearsOnlyAskedPages()
    {
        using EptBed b = new EptBed(pages: 64);
        int[] touched = { 1, 3, 4, 10, 63 };
        foreach (int i in touched)
            b.Touch(i, false, cpu: 0);
        ulong* ask = stackalloc ulong[1];
        ulong* young = stackalloc ulong[1];
        ask[0] = ~(1UL << 4);                          // every page but 4
        young[0] = 0;
        b.Ept.TestClearYoungFastOnlyBitmap(b.Space, b.Hva(0), 64, ask, young);
        Assert.Equal((1UL << 1) | (1UL << 3) | (1UL << 10) | (1UL << 63), young[0]);
        foreach (int i in touched)
            Assert.Equal(i == 4, b.Leaf(i).IsAccessed);
        // A second call finds nothing young; page 4, asked now, is.
        ask[0] = ulong.MaxValue;
        young[0] = 0;
        b.Ept.TestClearYoungFastOnlyBitmap(b.Space, b.Hva(0), 64, ask, young);
        Assert.Equal(1UL << 4, young[0]);
        Assert.False(b.Leaf(4).IsAccessed);
        // A span that starts inside the slot: bit i stands for page start + i.
        b.Touch(12, false, cpu: 0);
        young[0] = 0;
        b.Ept.TestClearYoungFastOnlyBitmap(b.Space, b.Hva(8), 8, ask, young);
        Assert.Equal(1UL << 4, young[0]);
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
