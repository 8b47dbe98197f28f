using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests.Swap;

/// <summary>
/// <see cref="CompressedSwapPool{TPlatform}"/> over a host machine: each kind of page round trips,
/// markers cost nothing, the limit refuses without side effects, frees give every frame back, and
/// concurrent users never see another's page or a corrupt one.
/// </summary>
public unsafe class CompressedSwapPoolTests
{
    private const int Page = PageContents.PageBytes;
    private readonly ITestOutputHelper _out;

    public CompressedSwapPoolTests(ITestOutputHelper output) { _out = output; }

    /// <summary>A machine, its frame database and a pool with a limit.</summary>
    internal sealed class Bed : IDisposable
    {
        public readonly HostMachine Machine;
        public readonly FrameDatabase<HostPlatform> Frames;
        public readonly CompressedSwapPool<HostPlatform> Pool;
        public readonly int FreeAtStart;

        public Bed(long limitBytes, ulong memoryBytes = 16UL << 20, int cpus = 1)
        {
            Machine = new HostMachine(memoryBytes, cpus);
            Frames = new FrameDatabase<HostPlatform>(Machine.Platform, Machine.FrameCount, HostMachine.FirstUsableFrame);
            Pool = new CompressedSwapPool<HostPlatform>(Machine.Platform, Frames, limitBytes);
            Frames.DrainCaches();
            FreeAtStart = Frames.BuddyFreeFrames;
        }

        public int FreeNow()
        {
            Frames.DrainCaches();
            return Frames.BuddyFreeFrames;
        }

        /// <summary>Frames the pool holds: every allocated usable frame (nothing else allocates here).</summary>
        public List<Pfn> PoolFrames()
        {
            List<Pfn> l = new List<Pfn>();
            for (int f = HostMachine.FirstUsableFrame; f < Machine.FrameCount; f++)
            {
                if (Frames.RefCountOf(new Pfn((ulong)f)) > 0)
                    l.Add(new Pfn((ulong)f));
            }
            return l;
        }

        public void Dispose() => Machine.Dispose();
    }

    internal static bool Store(CompressedSwapPool<HostPlatform> pool, byte[] page, out ulong handle)
    {
        fixed (byte* p = page)
            return pool.TryStore(p, out handle);
    }

    /// <summary>Loads into a guarded page; asserts no guard byte changed.</summary>
    internal static bool Load(CompressedSwapPool<HostPlatform> pool, ulong handle, byte[] into)
    {
        using CanaryBuffer b = new CanaryBuffer(Page);
        bool ok = pool.TryLoad(handle, b.Data);
        Assert.True(b.GuardsIntact(), "TryLoad wrote outside the page");
        b.Span.CopyTo(into);
        return ok;
    }

    private static byte[] Filled(ulong word)
    {
        byte[] p = new byte[Page];
        for (int i = 0; i < Page; i += 8)
            BitConverter.TryWriteBytes(p.AsSpan(i), word);
        return p;
    }

    [Fact]
    public void EveryKindRoundTripsAndIsCountedAsItsKind()
    {
        using Bed bed = new Bed(1L << 20);
        Random r = new Random(11_2200);
        byte[] random = PageContents.Make(PageKind.Random, r);
        byte[] text = PageContents.Make(PageKind.Text, r);
        byte[] sparse = PageContents.Make(PageKind.Sparse, r);
        (byte[] Page, string Kind)[] cases =
        {
            (new byte[Page], "zero"),
            (Filled(0xFFFF_FFFF_FFFF_FFFFUL), "fill61"),
            (Filled(0x0000_7F12_3456_7000UL), "fill61"),
            (Filled(0xFFFF_8000_DEAD_0000UL), "fill61"),
            (Filled(0x0FFF_FFFF_FFFF_FFFFUL), "fill61"), // bits 60-63 equal: the largest positive word
            (Filled(0xF000_0000_0000_0000UL), "fill61"),
            (Filled(0x1FFF_FFFF_FFFF_FFFFUL), "compressed"), // bits 60-63 differ, halves differ
            (Filled(0xE000_0000_0000_0000UL), "compressed"),
            (Filled(0xAAAA_AAAA_AAAA_AAAAUL), "fill32"),
            (Filled(0xDEAD_BEEF_DEAD_BEEFUL), "fill32"),
            (Filled(0xA000_0000_0000_0001UL), "compressed"), // same-filled, but no marker carries it
            (text, "compressed"),
            (sparse, "compressed"),
            (random, "raw"),
        };
        byte[] back = new byte[Page];
        List<ulong> handles = new List<ulong>();
        foreach ((byte[] page, string kind) in cases)
        {
            Assert.True(Store(bed.Pool, page, out ulong h));
            Assert.NotEqual(0UL, h);
            ulong expectKind = kind switch
            {
                "zero" => CompressedSwapPool<HostPlatform>.KindZero,
                "fill61" => CompressedSwapPool<HostPlatform>.KindFill61,
                "fill32" => CompressedSwapPool<HostPlatform>.KindFill32,
                "compressed" => CompressedSwapPool<HostPlatform>.KindCompressed,
                _ => CompressedSwapPool<HostPlatform>.KindRaw,
            };
            Assert.Equal(expectKind, h & 7);
            Assert.True(Load(bed.Pool, h, back), kind);
            Assert.Equal(page, back);
            // A load leaves the copy stored.
            Assert.True(Load(bed.Pool, h, back));
            Assert.Equal(page, back);
            handles.Add(h);
        }
        CompressedSwapPoolStatistics s = bed.Pool.ReadStatistics();
        Assert.Equal(1, s.ZeroPages);
        Assert.Equal(7, s.SameFilledPages);
        Assert.Equal(5, s.CompressedPages);
        Assert.Equal(1, s.RawPages);
        Assert.True(s.CompressedBytes > 0 && s.CompressedBytes < 5 * CompressedSwapPool<HostPlatform>.MaxBlockBytes);
        foreach (ulong h in handles)
            bed.Pool.Free(h);
        s = bed.Pool.ReadStatistics();
        Assert.Equal(0, s.ZeroPages + s.SameFilledPages + s.CompressedPages + s.RawPages + s.CompressedBytes + s.FramesInUse);
        Assert.Equal(0, s.BadHandles);
        Assert.Equal(bed.FreeAtStart, bed.FreeNow());
    }

    [Fact]
    public void ZeroAndSameFilledPagesCostNoFrames()
    {
        using Bed bed = new Bed(1L << 20);
        byte[] back = new byte[Page];
        List<ulong> handles = new List<ulong>();
        for (int i = 0; i < 10_000; i++)
        {
            byte[] page = i % 3 == 0 ? new byte[Page] : Filled((ulong)i * 0x0101_0101UL);
            Assert.True(Store(bed.Pool, page, out ulong h));
            handles.Add(h);
            if (i % 97 == 0)
            {
                Assert.True(Load(bed.Pool, h, back));
                Assert.Equal(page, back);
            }
        }
        Assert.Equal(0, bed.Pool.FramesInUse);
        Assert.Equal(bed.FreeAtStart, bed.FreeNow());
        CompressedSwapPoolStatistics s = bed.Pool.ReadStatistics();
        Assert.Equal(3334, s.ZeroPages);
        Assert.Equal(6666, s.SameFilledPages);
        foreach (ulong h in handles)
            bed.Pool.Free(h);
        s = bed.Pool.ReadStatistics();
        Assert.Equal(0, s.ZeroPages + s.SameFilledPages);
    }

    [Fact]
    public void RandomPagesAreStoredRawOneFrameEach()
    {
        using Bed bed = new Bed(64 * Page);
        Random r = new Random(11_2201);
        for (int i = 0; i < 10; i++)
        {
            Assert.True(Store(bed.Pool, PageContents.Make(PageKind.Random, r), out ulong h));
            Assert.Equal(CompressedSwapPool<HostPlatform>.KindRaw, h & 7);
        }
        Assert.Equal(10, bed.Pool.FramesInUse);
        Assert.Equal(10, bed.Pool.ReadStatistics().RawPages);
        Assert.Equal(bed.FreeAtStart - 10, bed.FreeNow());
    }

    [Fact]
    public void AFullPoolRefusesStoresNothingAndSaysSo()
    {
        const int LimitFrames = 8;
        using Bed bed = new Bed(LimitFrames * Page + Page - 1); // the limit rounds down to 8 frames
        Assert.Equal(LimitFrames, bed.Pool.LimitFrames);
        Random r = new Random(11_2202);
        List<(ulong, byte[])> stored = new List<(ulong, byte[])>();
        int refused = 0;
        for (int i = 0; i < 200; i++)
        {
            byte[] page = PageContents.Make(i % 2 == 0 ? PageKind.Random : PageKind.Text, r);
            int freeBefore = bed.FreeNow();
            long framesBefore = bed.Pool.FramesInUse;
            CompressedSwapPoolStatistics before = bed.Pool.ReadStatistics();
            if (Store(bed.Pool, page, out ulong h))
            {
                stored.Add((h, page));
                continue;
            }
            refused++;
            Assert.Equal(0UL, h);
            // Nothing was stored: no frame taken, no page counted.
            Assert.Equal(freeBefore, bed.FreeNow());
            Assert.Equal(framesBefore, bed.Pool.FramesInUse);
            CompressedSwapPoolStatistics after = bed.Pool.ReadStatistics();
            Assert.Equal(before.CompressedPages + before.RawPages, after.CompressedPages + after.RawPages);
            Assert.Equal(before.RefusedFull + 1, after.RefusedFull);
        }
        Assert.Equal(LimitFrames, bed.Pool.FramesInUse);
        Assert.True(refused > 0);
        Assert.Equal(refused, bed.Pool.RefusedFull);
        // Markers need no frame: stored even now.
        Assert.True(Store(bed.Pool, new byte[Page], out ulong zero));
        // Everything stored before is intact.
        byte[] back = new byte[Page];
        foreach ((ulong h, byte[] page) in stored)
        {
            Assert.True(Load(bed.Pool, h, back));
            Assert.Equal(page, back);
        }
        // Freeing makes room again.
        foreach ((ulong h, byte[] _) in stored)
            bed.Pool.Free(h);
        bed.Pool.Free(zero);
        Assert.Equal(0, bed.Pool.FramesInUse);
        Assert.True(Store(bed.Pool, PageContents.Make(PageKind.Random, r), out ulong again));
        bed.Pool.Free(again);
        Assert.Equal(bed.FreeAtStart, bed.FreeNow());
        _out.WriteLine($"{stored.Count} stored, {refused} refused at {LimitFrames} frames");
    }

    [Fact]
    public void AZeroLimitStoresOnlyMarkers()
    {
        using Bed bed = new Bed(0);
        Assert.True(Store(bed.Pool, new byte[Page], out _));
        Assert.False(Store(bed.Pool, PageContents.Make(PageKind.Text, new Random(1)), out _));
        Assert.Equal(1, bed.Pool.RefusedFull);
    }

    [Fact]
    public void FreeingEverythingReturnsEveryFrame()
    {
        using Bed bed = new Bed(8L << 20);
        Random r = new Random(SwapSeed.Pick(_out.WriteLine, nameof(FreeingEverythingReturnsEveryFrame), 11_2203));
        List<ulong> live = new List<ulong>();
        long peak = 0;
        for (int round = 0; round < 6; round++)
        {
            for (int i = 0; i < 800; i++)
            {
                Assert.True(Store(bed.Pool, PageContents.Make(PageContents.Kinds[r.Next(PageContents.Kinds.Length)], r), out ulong h));
                live.Add(h);
            }
            peak = Math.Max(peak, bed.Pool.FramesInUse);
            // Free a random half, so frames of every class are left partly used.
            for (int i = 0; i < live.Count / 2; i++)
            {
                int at = r.Next(live.Count);
                bed.Pool.Free(live[at]);
                live[at] = live[^1];
                live.RemoveAt(live.Count - 1);
            }
        }
        foreach (ulong h in live)
            bed.Pool.Free(h);
        CompressedSwapPoolStatistics s = bed.Pool.ReadStatistics();
        _out.WriteLine($"peak {peak} frames; after freeing all: {s.FramesInUse} frames, bad handles {s.BadHandles}");
        Assert.Equal(0, s.FramesInUse);
        Assert.Equal(0, s.CompressedPages + s.RawPages + s.CompressedBytes);
        Assert.Equal(0, s.BadHandles);
        Assert.Equal(bed.FreeAtStart, bed.FreeNow());
    }

    [Fact]
    public void CompressedPagesShareFrames()
    {
        using Bed bed = new Bed(8L << 20);
        Random r = new Random(11_2204);
        List<ulong> handles = new List<ulong>();
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(Store(bed.Pool, PageContents.Make(PageKind.Text, r), out ulong h));
            Assert.Equal(CompressedSwapPool<HostPlatform>.KindCompressed, h & 7);
            handles.Add(h);
        }
        CompressedSwapPoolStatistics s = bed.Pool.ReadStatistics();
        _out.WriteLine($"1000 text pages: {s.CompressedBytes} B of blocks in {s.FramesInUse} frames");
        // Text compresses to well under half a page: far fewer frames than pages.
        Assert.True(s.FramesInUse < 700, "frames in use " + s.FramesInUse);
        // Blocks fill at least 40 % of the frames (the rest: headers, rounding to a class, partial frames).
        Assert.True(s.CompressedBytes > s.FramesInUse * Page * 4 / 10);
    }

    [Fact]
    public void StaleForgedAndMarkerHandlesFailSafely()
    {
        using Bed bed = new Bed(1L << 20);
        Random r = new Random(11_2205);
        byte[] a = PageContents.Make(PageKind.Text, r);
        byte[] back = new byte[Page];
        Assert.True(Store(bed.Pool, a, out ulong ha));
        bed.Pool.Free(ha);
        // Freed, chunk not reused: the chunk map says so.
        Assert.False(Load(bed.Pool, ha, back));
        // Reused by another store of the same size class and chunk: the tag says so.
        Assert.True(Store(bed.Pool, a, out ulong hb));
        Assert.Equal(ha & ~(0xFFFFFUL << CompressedSwapPool<HostPlatform>.TagShift), hb & ~(0xFFFFFUL << CompressedSwapPool<HostPlatform>.TagShift));
        Assert.NotEqual(ha, hb);
        Assert.False(Load(bed.Pool, ha, back));
        Assert.True(Load(bed.Pool, hb, back));
        Assert.Equal(a, back);
        // Freeing the stale handle does not free the new copy.
        bed.Pool.Free(ha);
        Assert.True(Load(bed.Pool, hb, back));

        // A raw page: stale after free and reuse, and a raw handle is not a chunk handle.
        byte[] rnd = PageContents.Make(PageKind.Random, r);
        Assert.True(Store(bed.Pool, rnd, out ulong hr));
        bed.Pool.Free(hr);
        Assert.False(Load(bed.Pool, hr, back));
        Assert.True(Store(bed.Pool, rnd, out ulong hr2));
        Assert.False(Load(bed.Pool, hr, back));
        ulong rawAsChunk = (hr2 & ~7UL) | CompressedSwapPool<HostPlatform>.KindCompressed;
        Assert.False(Load(bed.Pool, rawAsChunk, back));
        ulong chunkAsRaw = (hb & ~7UL) | CompressedSwapPool<HostPlatform>.KindRaw;
        Assert.False(Load(bed.Pool, chunkAsRaw, back));

        // Forged handles: kinds 0, 6, 7; slots past the limit; chunks past the class; marker junk.
        ulong[] forged =
        {
            0, 6, 7, 0xFFFF_FFFF_FFFF_FFF8UL | 6, ulong.MaxValue,
            CompressedSwapPool<HostPlatform>.KindZero | 8,
            CompressedSwapPool<HostPlatform>.KindFill32 | (1UL << 40),
            CompressedSwapPool<HostPlatform>.KindCompressed | (1000UL << CompressedSwapPool<HostPlatform>.SlotShift),
            CompressedSwapPool<HostPlatform>.KindRaw | (0x1_FFFF_FFFFUL << CompressedSwapPool<HostPlatform>.SlotShift),
            (hb & ~(0xFFUL << CompressedSwapPool<HostPlatform>.ChunkShift)) | (255UL << CompressedSwapPool<HostPlatform>.ChunkShift),
        };
        foreach (ulong h in forged)
        {
            Assert.False(Load(bed.Pool, h, back), "forged handle 0x" + h.ToString("x") + " loaded");
            bed.Pool.Free(h);
        }
        for (int i = 0; i < 20_000; i++)
        {
            ulong h = (ulong)r.NextInt64() ^ ((ulong)r.Next() << 40);
            ulong kind = h & 7;
            if (kind == CompressedSwapPool<HostPlatform>.KindFill61 || kind == CompressedSwapPool<HostPlatform>.KindFill32 && (h >> 35) == 0)
                continue; // every such value is a valid marker
            Assert.False(Load(bed.Pool, h, back));
        }
        // Both live pages survived the forged frees.
        Assert.True(Load(bed.Pool, hb, back));
        Assert.Equal(a, back);
        Assert.True(Load(bed.Pool, hr2, back));
        Assert.Equal(rnd, back);
        // Freeing a marker is harmless.
        Assert.True(Store(bed.Pool, new byte[Page], out ulong hz));
        bed.Pool.Free(hz);
        Assert.True(Load(bed.Pool, hz, back));
        Assert.Equal(new byte[Page], back);
    }

    [Fact]
    public void FlippedPoolBytesGiveLoadFalseOrTheRightPageNeverAWildWrite()
    {
        using Bed bed = new Bed(8L << 20);
        Random r = new Random(SwapSeed.Pick(_out.WriteLine, nameof(FlippedPoolBytesGiveLoadFalseOrTheRightPageNeverAWildWrite), 11_2206));
        List<(ulong, byte[])> stored = new List<(ulong, byte[])>();
        for (int i = 0; i < 300; i++)
        {
            PageKind kind = i % 5 == 0 ? PageKind.Random : PageContents.Kinds[1 + r.Next(PageContents.Kinds.Length - 1)];
            byte[] page = PageContents.Make(kind, r);
            Assert.True(Store(bed.Pool, page, out ulong h));
            stored.Add((h, page));
        }
        List<Pfn> frames = bed.PoolFrames();
        Assert.Equal(bed.Pool.FramesInUse, frames.Count);
        byte[] back = new byte[Page];
        int failed = 0, intact = 0;
        for (int round = 0; round < 20; round++)
        {
            // Flip bytes all over the pool's frames: headers, blocks, raw pages, padding.
            for (int k = 0; k < 400; k++)
            {
                Pfn f = frames[r.Next(frames.Count)];
                bed.Machine.Memory[f.Address.Value + (ulong)r.Next(Page)] ^= (byte)r.Next(1, 256);
            }
            foreach ((ulong h, byte[] page) in stored)
            {
                if (Load(bed.Pool, h, back))
                {
                    Assert.Equal(page, back); // only an untouched (or padding-only) copy loads
                    intact++;
                }
                else
                {
                    failed++;
                }
            }
        }
        _out.WriteLine($"{failed} loads refused, {intact} loads intact; corrupt blocks counted {bed.Pool.ReadStatistics().CorruptBlocks}");
        Assert.True(failed > 0);
        // Frees still work on damaged chunks whose header survived; the rest count as bad handles.
        foreach ((ulong h, byte[] _) in stored)
            bed.Pool.Free(h);
    }

    [Fact]
    public void ConcurrentStoresLoadsAndFreesMatchAModel()
    {
        const int Threads = 4;
        const int OpsPerThread = 20_000;
        using Bed bed = new Bed(2L << 20, memoryBytes: 32UL << 20, cpus: Threads);
        bed.Machine.ReuseFreedFramesAtOnce = false; // per-CPU frame caches, as in the kernel
        int seed = SwapSeed.Pick(_out.WriteLine, nameof(ConcurrentStoresLoadsAndFreesMatchAModel), 11_2207);
        int mismatches = 0;
        long stores = 0, refusals = 0, loads = 0;
        Exception? error = null;
        Thread[] threads = new Thread[Threads];
        using Barrier start = new Barrier(Threads);
        for (int t = 0; t < Threads; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    HostMachine.ThreadCpu = id;
                    Random r = new Random(seed + id);
                    // The model: this thread's live handles and the pages they name.
                    List<(ulong Handle, byte[] Page)> mine = new List<(ulong, byte[])>();
                    byte[] back = new byte[Page];
                    start.SignalAndWait();
                    for (int op = 0; op < OpsPerThread; op++)
                    {
                        int what = r.Next(10);
                        if (what < 4 || mine.Count == 0)
                        {
                            PageKind kind = PageContents.Kinds[r.Next(PageContents.Kinds.Length)];
                            byte[] page = PageContents.Make(kind, r);
                            if (kind != PageKind.Zero)
                                page[0] = (byte)id; // a page mixed up between threads shows
                            Interlocked.Increment(ref stores);
                            if (Store(bed.Pool, page, out ulong h))
                                mine.Add((h, page));
                            else
                                Interlocked.Increment(ref refusals);
                        }
                        else if (what < 8)
                        {
                            (ulong h, byte[] page) = mine[r.Next(mine.Count)];
                            Interlocked.Increment(ref loads);
                            fixed (byte* p = back)
                            {
                                if (!bed.Pool.TryLoad(h, p) || !page.AsSpan().SequenceEqual(back))
                                    Interlocked.Increment(ref mismatches);
                            }
                        }
                        else
                        {
                            int at = r.Next(mine.Count);
                            bed.Pool.Free(mine[at].Handle);
                            mine[at] = mine[^1];
                            mine.RemoveAt(mine.Count - 1);
                        }
                    }
                    foreach ((ulong h, byte[] page) in mine)
                    {
                        fixed (byte* p = back)
                        {
                            if (!bed.Pool.TryLoad(h, p) || !page.AsSpan().SequenceEqual(back))
                                Interlocked.Increment(ref mismatches);
                        }
                        bed.Pool.Free(h);
                    }
                }
                catch (Exception e)
                {
                    error = e;
                }
            });
            threads[t].Start();
        }
        foreach (Thread t in threads)
            t.Join();
        Assert.Null(error);
        CompressedSwapPoolStatistics s = bed.Pool.ReadStatistics();
        _out.WriteLine($"{stores} stores ({refusals} refused: pool full), {loads} loads, {mismatches} mismatches; frames at end {s.FramesInUse}");
        Assert.Equal(0, mismatches);
        Assert.Equal(0, s.BadHandles);
        Assert.Equal(0, s.CorruptBlocks);
        Assert.Equal(refusals, s.RefusedFull);
        Assert.Equal(0, s.FramesInUse);
        Assert.Equal(0, s.ZeroPages + s.SameFilledPages + s.CompressedPages + s.RawPages + s.CompressedBytes);
        Assert.Equal(bed.FreeAtStart, bed.FreeNow());
    }
}
