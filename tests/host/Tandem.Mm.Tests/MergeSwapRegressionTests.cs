using System;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>
/// Bugs found by <see cref="OvercommitTortureTests"/> where swap meets merging or unmapping: a
/// page that came back from swap clean keeps its slot and copy in the swap cache, and the merge
/// scanner may pick that frame as the shared one, or replace it by a shared one; a swap-out
/// notifies the secondaries only after it installed the swap entry and dropped the lock.
/// </summary>
public unsafe class MergeSwapRegressionTests
{
    private static (TestBed, DictionarySwapDevice, SwapMap<HostPlatform>, MergeScanner<HostPlatform>) Bed()
    {
        TestBed b = new TestBed(windowPages: 8);
        DictionarySwapDevice d = new DictionarySwapDevice();
        SwapMap<HostPlatform> swap = b.Mm.AttachSwap(d, 64);
        MergeScanner<HostPlatform> scanner = new MergeScanner<HostPlatform>(b.Mm, 64);
        return (b, d, swap, scanner);
    }

    /// <summary>Page <paramref name="i"/> goes to swap and comes back clean (its frame keeps the slot).</summary>
    private static Pfn SwapOutAndIn(TestBed b, SwapMap<HostPlatform> swap, int i, ulong value)
    {
        Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn f));
        Assert.Equal(SwapOutResult.Evicted, b.Mm.TrySwapOut(f));
        Assert.Equal(value, SwapTests.Read(b, i, out Pfn back));
        Assert.True(swap.SlotOf(back) >= 0, "a page read back clean keeps its slot");
        return back;
    }

    /// <summary>
    /// A merged frame that is also a swap-cache frame (the candidate had come back from swap) could
    /// be swapped out with all its mappings (its slot bypassed the "mapped more than once"
    /// refusal); read back, the frame was mapped twice but no longer marked Merged, so a write
    /// through one page upgraded it in place and changed the other page. Now a swap-cache frame
    /// that another mapping or swap entry can reach is copied on write.
    /// </summary>
    [Fact]
    public void AMergedFrameSwappedOutAndBackIsStillCopiedOnWrite()
    {
        var (b, _, swap, scanner) = Bed();
        using (b)
        {
            const ulong same = 0x1234_5678_9ABC_DEF0;
            SwapTests.Write(b, 0, same);
            SwapOutAndIn(b, swap, 0, same);
            SwapTests.Write(b, 1, same);
            scanner.ScanStep(64);
            Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn merged));
            Assert.True(b.Space.TranslateFrame(b.Page(1), out Pfn other));
            Assert.Equal(merged, other);
            Assert.Equal(2, b.Mm.Frames.MapCountOf(merged));
            // Both mappings become swap entries of the frame's one slot.
            Assert.Equal(SwapOutResult.Evicted, b.Mm.TrySwapOut(merged));
            Assert.Equal(same, SwapTests.Read(b, 0, out Pfn f0));
            Assert.Equal(same, SwapTests.Read(b, 1, out Pfn f1));
            Assert.Equal(f0, f1);
            // A write to page 0 must give it a copy, never change page 1.
            SwapTests.Write(b, 0, 0x5555);
            Assert.Equal(0x5555UL, SwapTests.Read(b, 0, out Pfn after0));
            Assert.Equal(same, SwapTests.Read(b, 1, out Pfn after1));
            Assert.NotEqual(after0, after1);
            b.Space.Unmap(b.Page(0), b.Page(8));
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0, swap.CachedFrames);
        }
    }

    /// <summary>
    /// Merging replaced the mapping of a page that had come back from swap clean: the old frame
    /// stayed in the swap cache with its slot and copy, mapped by nothing and named by no swap
    /// entry, for ever (a leak of a frame, a slot and a device copy per merge).
    /// </summary>
    [Fact]
    public void MergingAwayAPageReadBackFromSwapFreesItsSlotAndFrame()
    {
        var (b, d, swap, scanner) = Bed();
        using (b)
        {
            const ulong same = 0x0F0F_0F0F_1234_0000;
            SwapTests.Write(b, 0, same);
            SwapTests.Write(b, 1, same);
            Pfn cached = SwapOutAndIn(b, swap, 1, same);
            Assert.Equal(1, swap.SlotsInUse);
            scanner.ScanStep(64);
            Assert.True(b.Space.TranslateFrame(b.Page(1), out Pfn now));
            Assert.NotEqual(cached, now);
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0, swap.CachedFrames);
            Assert.Equal(0, d.Count);
            Assert.Equal(0, b.Mm.Frames.RefCountOf(cached));
        }
    }

    /// <summary>
    /// An unmap that met a swap entry whose swap-out had not yet called the notifiers (it installs
    /// the entry, drops the page-table lock, then flushes and notifies) cleared it without
    /// notifying anyone: it returned while a secondary still mapped the old frame, so a guest read
    /// after the unmap saw the old contents instead of a zero page (and a guest write was lost).
    /// </summary>
    [Fact]
    public void AnUnmapDuringASwapOutLeavesNoSecondaryMappingBehind()
    {
        var (b, _, swap, _) = Bed();
        using (b)
        {
            RecordingSecondaryMmu sec = b.AddSecondary(lockless: true);
            SwapTests.Write(b, 0, 0x4242);
            Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(0), false));
            Assert.NotEqual(0, sec.Entry(0));
            Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn f));
            bool unmapped = false;
            long entryAfterUnmap = -1;
            HostMachine.ThreadCheckpoint = site =>
            {
                // The swap-out installed the swap entry and dropped the lock; its flush and
                // notifiers have not run yet.
                if (site != MmCheckpoint.PrimaryEntryCleared || unmapped)
                    return;
                unmapped = true;
                Assert.True(b.Space.TryGetSwapEntry(b.Page(0), out PageTableEntry _));
                b.Space.Unmap(b.Page(0), b.Page(1));
                entryAfterUnmap = sec.Entry(0);
            };
            try
            {
                b.Mm.TrySwapOut(f);
            }
            finally
            {
                HostMachine.ThreadCheckpoint = null;
            }
            Assert.True(unmapped);
            Assert.Equal(0, entryAfterUnmap);
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0UL, SwapTests.Read(b, 0, out Pfn _));
        }
    }
}
