using System;
using System.Collections.Concurrent;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Postcopy fill (invariant 6, seed 002) racing with eviction: a userfault region stands for the
/// destination VM's RAM. Missing-page faults go to a handler thread that fills each page from the
/// source on demand, a background thread pushes every page in order, readers fault pages in and
/// check them, and an evictor swaps filled pages out (a swap device is attached) all the while.
/// </summary>
public unsafe class PostcopyTests
{
    private readonly ITestOutputHelper _out;
    public PostcopyTests(ITestOutputHelper output) { _out = output; }

    private static readonly VirtAddr Base = new VirtAddr(0x3_0000_0000);
    private const int Pages = 128;

    private static ulong SourceValue(int page) => 0x5005_0000_0000UL + (ulong)page * 0x1_0001UL;

    private sealed class QueueHandler : IUserfaultHandler
    {
        public readonly BlockingCollection<VirtAddr> Requests = new BlockingCollection<VirtAddr>();
        public void OnMissing(IAddressSpace space, VirtAddr page, bool write) => Requests.Add(page);
    }

    private static FaultStatus Fill(AddressSpace<HostPlatform> space, int page)
    {
        byte[] data = new byte[4096];
        for (int k = 0; k < 512; k++)
            BitConverter.TryWriteBytes(new Span<byte>(data, k * 8, 8), SourceValue(page));
        return space.UserfaultCopy(Base + (ulong)page * 4096, data);
    }

    /// <summary>The page's value if all 512 words agree (read under a frame reference, so an eviction cannot free it meanwhile).</summary>
    private static ulong ReadPage(TestBed b, int page)
    {
        FaultStatus s = b.Space.ResolveForSecondary(Base + (ulong)page * 4096, false, out ResolvedPage r);
        Assert.Equal(FaultStatus.Ok, s);
        ulong* p = (ulong*)b.Machine.Platform.PhysToVirt(r.Frame.Address);
        ulong v = SwapTests.Uniform(p);
        b.Space.ReleaseResolved(r);
        return v;
    }

    /// <summary>
    /// The race below, taken step by step: a page is filled, swapped out, and then pushed again
    /// (a background push that lost the race with a fault's fill). The second fill finds the swap
    /// entry and says Exists: the page's data is the swapped one, and its slot is not leaked.
    /// </summary>
    [Fact]
    public void AFillOverASwappedOutPageIsRefused()
    {
        using TestBed b = new TestBed(memory: 32UL << 20);
        DictionarySwapDevice device = new DictionarySwapDevice();
        SwapMap<HostPlatform> swap = b.Mm.AttachSwap(device, 512);
        QueueHandler h = new QueueHandler();
        Assert.True(b.Space.AddRegion(Region.UserfaultAnonymous(Base, Pages * 4096UL, PageProt.Write, h)));
        Assert.Equal(FaultStatus.Ok, Fill(b.Space, 3));
        Assert.True(b.Space.TranslateFrame(Base + 3 * 4096UL, out Pfn f));
        Assert.True(b.Mm.TryReclaim(f));
        Assert.False(b.Space.TranslateFrame(Base + 3 * 4096UL, out _));
        Assert.Equal(1, swap.SlotsInUse);
        byte[] newer = new byte[4096];
        Array.Fill(newer, (byte)0xEE);
        Assert.Equal(FaultStatus.Exists, b.Space.UserfaultCopy(Base + 3 * 4096UL, newer));
        Assert.Equal(1, swap.SlotsInUse);
        Assert.Equal(SourceValue(3), ReadPage(b, 3));
        Assert.Empty(h.Requests);
        b.Space.Unmap(Base, Base + Pages * 4096UL);
        Assert.Equal(0, swap.SlotsInUse);
        Assert.Equal(0, device.Count);
    }

    [Fact]
    public void HandlerFillsAndBackgroundPushRaceEvictionAndEveryPageArrivesOnce()
    {
        int seed = TestSeed.Pick(_out.WriteLine, nameof(HandlerFillsAndBackgroundPushRaceEvictionAndEveryPageArrivesOnce));
        using TestBed b = new TestBed(memory: 32UL << 20);
        DictionarySwapDevice device = new DictionarySwapDevice();
        SwapMap<HostPlatform> swap = b.Mm.AttachSwap(device, 512);
        QueueHandler h = new QueueHandler();
        Assert.True(b.Space.AddRegion(Region.UserfaultAnonymous(Base, Pages * 4096UL, PageProt.Write, h)));
        int onDemand = 0, pushed = 0, exists = 0, mismatches = 0, reads = 0;
        Exception? failure = null;
        using CancellationTokenSource stop = new CancellationTokenSource();
        void Guard(Action a)
        {
            try { a(); }
            catch (Exception e) { failure ??= e; stop.Cancel(); }
        }
        Thread handler = new Thread(() => Guard(() =>
        {
            foreach (VirtAddr page in h.Requests.GetConsumingEnumerable())
            {
                FaultStatus s = Fill(b.Space, (int)((page - Base) / 4096));
                if (s == FaultStatus.Ok)
                    Interlocked.Increment(ref onDemand);
                else if (s == FaultStatus.Exists)
                    Interlocked.Increment(ref exists);
                else
                    throw new InvalidOperationException("on-demand fill failed: " + s);
            }
        }));
        Thread pusher = new Thread(() => Guard(() =>
        {
            for (int i = 0; i < Pages && !stop.IsCancellationRequested; i++)
            {
                FaultStatus s = Fill(b.Space, i);
                if (s == FaultStatus.Ok)
                    Interlocked.Increment(ref pushed);
                else if (s == FaultStatus.Exists)
                    Interlocked.Increment(ref exists);
                else
                    throw new InvalidOperationException("push failed: " + s);
                Thread.Sleep(1);                 // slower than the readers: some pages arrive on demand
            }
        }));
        Thread[] readers = new Thread[2];
        for (int r = 0; r < readers.Length; r++)
        {
            int id = r;
            readers[r] = new Thread(() => Guard(() =>
            {
                Random rnd = new Random(seed + id);
                for (int n = 0; n < 3000 && !stop.IsCancellationRequested; n++)
                {
                    int page = rnd.Next(Pages);
                    if (ReadPage(b, page) != SourceValue(page))
                        Interlocked.Increment(ref mismatches);
                    Interlocked.Increment(ref reads);
                }
            }));
        }
        Thread evictor = new Thread(() => Guard(() =>
        {
            Random rnd = new Random(seed ^ 0x5A5A);
            while (!stop.IsCancellationRequested && pusher.IsAlive)
            {
                int page = rnd.Next(Pages);
                if (b.Space.TranslateFrame(Base + (ulong)page * 4096, out Pfn f))
                    b.Mm.TryReclaim(f);
            }
        }));
        handler.Start();
        pusher.Start();
        foreach (Thread t in readers)
            t.Start();
        evictor.Start();
        Assert.True(pusher.Join(60_000), "the background push did not finish");
        foreach (Thread t in readers)
            Assert.True(t.Join(60_000), "a reader hung (a fault waited for a fill that never came)");
        Assert.True(evictor.Join(60_000));
        h.Requests.CompleteAdding();          // every page is there: no fault asks any more
        Assert.True(handler.Join(10_000));
        Assert.Null(failure);
        for (int i = 0; i < Pages; i++)
            Assert.Equal(SourceValue(i), ReadPage(b, i));
        _out.WriteLine("filled on demand " + onDemand + ", pushed " + pushed + ", already there " + exists + ", reads " + reads
            + ", swap-outs " + swap.SwapOuts + ", swap-ins " + swap.SwapIns);
        Assert.Equal(0, mismatches);
        // Every page arrived exactly once: a fill never replaced a page that was there, evicted to
        // swap meanwhile (its swap entry), or already filled.
        Assert.Equal(Pages, onDemand + pushed);
        Assert.True(onDemand > 0, "no page was filled on demand");
        Assert.True(swap.SwapOuts > 0, "the evictor never swapped a filled page out");
        b.Space.Unmap(Base, Base + Pages * 4096UL);
        Assert.Equal(0, swap.SlotsInUse);
        Assert.Equal(0, device.Count);
    }
}
