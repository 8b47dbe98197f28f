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

    /// <summary>One merge scan; then pages 0 to <paramref name="count"/> - 1 share one frame, mapped that many times, which is returned.</summary>
    private static Pfn ScanAndGetShared(TestBed b, MergeScanner<HostPlatform> scanner, int count)
    {
        scanner.ScanStep(64);
        Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn shared));
        for (int i = 1; i < count; i++)
        {
            Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn other));
            Assert.Equal(shared, other);
        }
        Assert.Equal(count, b.Mm.Frames.MapCountOf(shared));
        return shared;
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
            Pfn merged = ScanAndGetShared(b, scanner, 2);
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
    /// A merged frame that never was in swap (no slot) is swapped out with all its mappings: once
    /// two VMs' identical pages were merged, refusing them left a working set that the resident
    /// limit could not shrink (eviction stalled, and every fault reclaimed in vain). Read back,
    /// both pages share one frame again, and a write copies it for the writer only.
    /// </summary>
    [Fact]
    public void AMergedFrameWithoutASlotIsSwappedOutWithAllItsMappings()
    {
        var (b, d, swap, scanner) = Bed();
        using (b)
        {
            const ulong same = 0x2468_ACE0_1357_9BDF;
            SwapTests.Write(b, 0, same);
            SwapTests.Write(b, 1, same);
            SwapTests.Write(b, 2, same);
            Pfn merged = ScanAndGetShared(b, scanner, 3);
            Assert.True((b.Mm.Frames.FlagsOf(merged) & FrameFlags.Merged) != 0);
            Assert.Equal(-1, swap.SlotOf(merged));
            long stores = d.Stores;
            Assert.Equal(SwapOutResult.Evicted, b.Mm.TrySwapOut(merged));
            Assert.Equal(stores + 1, d.Stores);                     // one copy for the three pages
            for (int i = 0; i < 3; i++)
                Assert.True(b.Space.TryGetSwapEntry(b.Page(i), out PageTableEntry _), "page " + i + " is not a swap entry");
            Assert.Equal(1, swap.SlotsInUse);
            Assert.Equal(same, SwapTests.Read(b, 0, out Pfn f0));
            Assert.Equal(same, SwapTests.Read(b, 2, out Pfn f2));
            Assert.Equal(f0, f2);
            SwapTests.Write(b, 2, 0x7777);
            Assert.Equal(0x7777UL, SwapTests.Read(b, 2, out Pfn after2));
            Assert.Equal(same, SwapTests.Read(b, 0, out Pfn after0));
            Assert.Equal(same, SwapTests.Read(b, 1, out Pfn _));
            Assert.NotEqual(after0, after2);
            b.Space.Unmap(b.Page(0), b.Page(8));
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0, swap.CachedFrames);
            Assert.Equal(0, d.Count);
        }
    }

    /// <summary>
    /// A page read back from swap clean keeps its slot and old copy; written again, only its
    /// primary entry's D bit knows. When the merge scanner write-protects it as the stable frame
    /// it must carry that D to the frame, or the next eviction takes the old copy for the new
    /// contents. Deterministic; kills "the merge write-protect drops D", which only the overcommit
    /// torture could catch, by chance.
    /// </summary>
    [Fact]
    public void AWrittenSwapCachePageMergedAsTheStableFrameIsStoredAnew()
    {
        var (b, d, swap, scanner) = Bed();
        using (b)
        {
            const ulong old = 0x0101_0101_0101_0101, now = 0x7E7E_0000_7E7E_0000;
            SwapTests.Write(b, 0, old);
            Pfn cached = SwapOutAndIn(b, swap, 0, old);
            SwapTests.Write(b, 0, now);                         // D in the entry only
            Assert.Equal(0, (int)(b.Mm.Frames.FlagsOf(cached) & FrameFlags.Dirty));
            SwapTests.Write(b, 1, now);
            Pfn merged = ScanAndGetShared(b, scanner, 2);
            Assert.Equal(cached, merged);                       // page 0's frame is the stable one
            long stores = d.Stores;
            Assert.Equal(SwapOutResult.Evicted, b.Mm.TrySwapOut(merged));
            Assert.Equal(stores + 1, d.Stores);                 // the new contents were stored
            Assert.Equal(now, SwapTests.Read(b, 0, out Pfn _));
            Assert.Equal(now, SwapTests.Read(b, 1, out Pfn _));
            b.Space.Unmap(b.Page(0), b.Page(8));
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0, d.Count);
        }
    }

    /// <summary>
    /// A fault that takes the frame back from the swap cache while the swap-out is storing its
    /// copy (no mm lock is held across the device call) keeps it: the end of the swap-out sees the
    /// new mapping and leaves the frame in the cache, so the page still named by a swap entry
    /// comes back as the same frame. Deterministic (the fault runs inside the store); kills
    /// "the end of a swap-out frees the frame whatever took it meanwhile", which only the torture
    /// test could catch, by chance.
    /// </summary>
    [Fact]
    public void AFaultDuringTheStoreKeepsTheFrameInTheSwapCache()
    {
        var (b, d, swap, scanner) = Bed();
        using (b)
        {
            const ulong same = 0x5A5A_0000_C3C3_1111;
            SwapTests.Write(b, 0, same);
            SwapTests.Write(b, 1, same);
            Pfn merged = ScanAndGetShared(b, scanner, 2);
            Pfn duringStore = default;
            int stores = 0;
            d.OnCall = what =>
            {
                if (what == "store" && stores++ == 0)
                    Assert.Equal(same, SwapTests.Read(b, 0, out duringStore));
            };
            SwapOutResult result = b.Mm.TrySwapOut(merged);
            d.OnCall = null;
            Assert.Equal(1, stores);
            Assert.Equal(merged, duringStore);                      // a swap-cache hit
            Assert.Equal(SwapOutResult.Remapped, result);
            Assert.True(swap.SlotOf(merged) >= 0, "the frame left the swap cache");
            Assert.Equal(1, swap.CachedFrames);
            // Page 1 is still a swap entry of the slot: it comes back as the very same frame.
            Assert.True(b.Space.TryGetSwapEntry(b.Page(1), out PageTableEntry _));
            long loads = d.Loads;
            Assert.Equal(same, SwapTests.Read(b, 1, out Pfn f1));
            Assert.Equal(merged, f1);
            Assert.Equal(loads, d.Loads);
            Assert.Equal(2, b.Mm.Frames.MapCountOf(merged));
            b.Space.Unmap(b.Page(0), b.Page(8));
            Assert.Equal(0, swap.SlotsInUse);
            Assert.Equal(0, swap.CachedFrames);
            Assert.Equal(0, d.Count);
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

    /// <summary>
    /// A write-protect that met a swap entry whose swap-out had not yet called the notifiers changed
    /// the entry's rights without notifying anyone: Protect returned while a secondary still mapped
    /// the old frame writable, so a guest could still write the page after the host made it
    /// read-only (and the write went to a frame on its way out). Now a reduction of a swap entry's
    /// rights flushes and notifies like one of a present entry.
    /// </summary>
    [Fact]
    public void AWriteProtectDuringASwapOutLeavesNoWritableSecondaryMapping()
    {
        var (b, _, _, _) = Bed();
        using (b)
        {
            RecordingSecondaryMmu sec = b.AddSecondary(lockless: true);
            SwapTests.Write(b, 0, 0x4343);
            Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(0), true));
            Assert.NotEqual(0, sec.Entry(0));
            Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn f));
            bool protectedPage = false;
            long entryAfterProtect = -1;
            HostMachine.ThreadCheckpoint = site =>
            {
                // The swap-out installed the swap entry and dropped the lock; its flush and
                // notifiers have not run yet.
                if (site != MmCheckpoint.PrimaryEntryCleared || protectedPage)
                    return;
                protectedPage = true;
                Assert.True(b.Space.TryGetSwapEntry(b.Page(0), out PageTableEntry _));
                Assert.Equal(1, b.Space.Protect(b.Page(0), b.Page(1), PageProt.Read));
                entryAfterProtect = sec.Entry(0);
            };
            try
            {
                b.Mm.TrySwapOut(f);
            }
            finally
            {
                HostMachine.ThreadCheckpoint = null;
            }
            Assert.True(protectedPage);
            Assert.Equal(0, entryAfterProtect);
            Assert.True(b.Space.TryGetSwapEntry(b.Page(0), out PageTableEntry e));
            Assert.False(e.IsWritable, "the swap entry lost the write-protect");
            Assert.Equal(0x4343UL, SwapTests.Read(b, 0, out Pfn _));
        }
    }

    /// <summary>
    /// Reclaiming the shared zero frame unmapped every page merged into it although the frame is
    /// never freed (the scanner holds it): nothing gained, and every such page refaulted, each
    /// unmap leaving a window in which a refault raced the unmap's notifiers (a secondary still
    /// read the zero frame after its owner had written the new page; see the report of
    /// OvercommitTortureTests). Now it is refused.
    /// </summary>
    [Fact]
    public void TheSharedZeroFrameIsNeverReclaimed()
    {
        var (b, _, _, scanner) = Bed();
        using (b)
        {
            SwapTests.Write(b, 0, 0);
            SwapTests.Write(b, 1, 0);
            scanner.ScanStep(64);
            Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn f));
            Assert.Equal(scanner.ZeroFrame, f);
            b.Mm.AgeFrame(f, exact: true); // clears the accessed bits the merge kept: old now
            Assert.False(b.Mm.TryReclaim(f));
            Assert.True(b.Space.TranslateFrame(b.Page(0), out Pfn still));
            Assert.Equal(scanner.ZeroFrame, still);
            Assert.Equal(2, b.Mm.Frames.MapCountOf(scanner.ZeroFrame));
        }
    }

    /// <summary>
    /// TryReclaim read the frame's flags with nothing held: a frame number that a demand fault had
    /// just allocated (flags still clear) looked like no anonymous page, so TryReclaim took the
    /// drop path (TryToUnmap), and by the time it walked the reverse map the fault had installed
    /// and its owner written the page: the contents were dropped, the page came back zero (found
    /// by the overcommit torture). Now the drop spares a frame that is anonymous when its entry is
    /// cleared. A writer unmaps, refaults, writes and checks one page while a reclaimer keeps
    /// reclaiming the frame numbers it saw there (stale ones included), for 2 s.
    /// </summary>
    [Fact]
    public void ReclaimingAStaleFrameNumberNeverDropsAPageMappedMeanwhile()
    {
        var (b, _, swap, _) = Bed();
        using (b)
        {
            long lastFrame = -1;
            int stop = 0;
            // The writer's CPU: it uses a frame only while holding this, and every TLB flush
            // waits for it (a shootdown that waits for the access in flight).
            object cpu = new object();
            b.Machine.OnFlush = _ => { lock (cpu) { } };
            // One CPU access to page 0 (faulting until it can): writes value, or returns what it read.
            ulong Access(bool write, ulong value)
            {
                while (true)
                {
                    lock (cpu)
                    {
                        if (b.HardwareTouch(0, write, out Pfn f))
                        {
                            ulong* p = (ulong*)b.Machine.Platform.PhysToVirt(f.Address);
                            if (write)
                            {
                                for (int k = 0; k < 512; k++)
                                    p[k] = value;
                                System.Threading.Interlocked.Exchange(ref lastFrame, (long)f.Value);
                            }
                            return SwapTests.Uniform(p);
                        }
                    }
                    Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(0), write));
                }
            }
            long lost = 0, rounds = 0, reclaimed = 0;
            System.Threading.Thread reclaimer = new System.Threading.Thread(() =>
            {
                HostMachine.ThreadCpu = 1;
                while (System.Threading.Volatile.Read(ref stop) == 0)
                {
                    long f = System.Threading.Interlocked.Read(ref lastFrame);
                    if (f >= HostMachine.FirstUsableFrame && b.Mm.TryReclaim(new Pfn((ulong)f)))
                        reclaimed++;
                }
            });
            reclaimer.Start();
            System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
            ulong value = 1;
            while (clock.ElapsedMilliseconds < 2000 && lost == 0)
            {
                b.Space.Unmap(b.Page(0), b.Page(1));
                Access(true, ++value);
                if (Access(false, 0) != value)
                    lost++;
                rounds++;
            }
            System.Threading.Volatile.Write(ref stop, 1);
            reclaimer.Join();
            b.Machine.OnFlush = null;
            Assert.True(lost == 0, "a written page came back with other contents after " + rounds + " rounds (" + reclaimed + " reclaims)");
            Assert.True(reclaimed > 0, "nothing was reclaimed: no coverage");
        }
    }
}
