using System;
using System.Collections.Concurrent;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Tracked 2 MiB pages under concurrency, against a model of every page's contents. Each round
/// makes a fresh address space whose anonymous window (two 2 MiB spans) is backed by tracked
/// 2 MiB pages, with a lockless recording secondary MMU, a compressed swap pool attached and a
/// window of CPUs that every TLB flush waits for. Two workers own the even and the odd pages:
/// they write and read through the primary (the CPU's walker sets A/D in the 2 MiB or 4 KiB
/// leaf) and through the secondary (D only in its entry), and now and then unmap one of their
/// pages (which splits a 2 MiB page). Each works on the first span in the first half of a round
/// and on the second after, so the first goes cold while the second is used. A third thread ages
/// and evicts all the time (old 2 MiB pages are split first). At the end of a round, alone, the
/// 2 MiB pages still whole are aged and evicted (each must be split), then every page is read
/// back and the space is destroyed; after all rounds: 0 mismatches, 0 frames in use, 0 swap
/// slots, and splits by eviction both while the workers ran and at the ends of rounds. Seed fixed (TANDEM_SEED
/// replays another; the interleaving differs from run to run).
/// </summary>
public unsafe class HugePageTortureTests
{
    private readonly ITestOutputHelper _out;
    public HugePageTortureTests(ITestOutputHelper output) { _out = output; }

    private const int Span = FrameDatabase<HostPlatform>.HugeFrames;
    private const int Pages = 2 * Span;
    private const int Workers = 2;
    private static readonly VirtAddr Base = new VirtAddr(0x4000_0000);

    private static VirtAddr Va(int i) => Base + (ulong)i * 4096;

    private static void Fill(byte* p, ulong value)
    {
        for (int k = 0; k < 512; k++)
            ((ulong*)p)[k] = value;
    }

    private static bool Holds(byte* p, ulong value)
    {
        for (int k = 0; k < 512; k++)
        {
            if (((ulong*)p)[k] != value)
                return false;
        }
        return true;
    }

    [Fact]
    public void RoundsOfHugeFaultsAgingEvictionAndSplitsKeepEveryPage()
    {
        string? env = TestSeed.FromEnvironment();
        int seed = env != null ? int.Parse(env) : 11_0203;
        _out.WriteLine($"seed {seed}; replay: TANDEM_SEED={seed} dotnet test --filter {nameof(RoundsOfHugeFaultsAgingEvictionAndSplitsKeepEveryPage)}");
        int rounds = 48, opsPerWorker = 6000;
        var errors = new ConcurrentQueue<string>();
        long mismatches = 0, leftHuge = 0, concurrentSplits = 0;

        using HostMachine machine = new HostMachine(32UL << 20, Workers + 2);
        MemoryManager<HostPlatform> mm = machine.CreateManager();
        HostPlatform platform = machine.Platform;
        CompressedSwapPool<HostPlatform> pool = new CompressedSwapPool<HostPlatform>(platform, mm.Frames, 4L << 20);
        SwapMap<HostPlatform> swap = mm.AttachSwap(pool, 2 * Pages);
        object[] cpuLock = new object[Workers];
        for (int c = 0; c < Workers; c++)
            cpuLock[c] = new object();
        // A TLB flush waits for the accesses in flight (the shootdown's IPI).
        machine.OnFlush = _ =>
        {
            foreach (object l in cpuLock)
                lock (l) { }
        };
        Func<PhysAddr, IntPtr> tableAt = pa => (IntPtr)platform.PhysToVirt(pa);

        for (int round = 0; round < rounds && errors.IsEmpty; round++)
        {
            long splitsAtStart = mm.Lru.Stats.HugeSplits;
            AddressSpace<HostPlatform> space = mm.CreateAddressSpace()!;
            Region window = Region.Anonymous(Base, Pages * 4096UL, PageProt.Write | PageProt.User);
            window.HugePages = true;
            Assert.True(space.AddRegion(window));
            for (int c = 0; c < machine.Cpus; c++)
                space.Activate(c);
            RecordingSecondaryMmu sec = new RecordingSecondaryMmu(space, Base, Pages);
            Assert.True(space.Notifiers.Register(sec, MmuNotifierFlags.LocklessAging));
            ulong[] model = new ulong[Pages];
            int stop = 0;

            void Error(string m)
            {
                if (errors.Count < 10)
                    errors.Enqueue(m);
                Volatile.Write(ref stop, 1);
            }

            // Page i's bytes at p against the model, then the write (as a CPU uses a mapped frame).
            void Use(string via, int i, byte* p, bool write, ulong value)
            {
                if (!Holds(p, model[i]))
                {
                    Interlocked.Increment(ref mismatches);
                    Error($"round {round}: {via} {(write ? "write" : "read")} of page {i}: 0x{((ulong*)p)[0]:x}, model 0x{model[i]:x}");
                }
                if (write)
                {
                    Fill(p, value);
                    model[i] = value;
                }
            }

            // One access through an MMU: tryOnce uses the frame if it is mapped; else fault, and again.
            void Access(string via, int i, bool write, Func<bool> tryOnce, Func<FaultStatus> fault)
            {
                for (int attempt = 0; ; attempt++)
                {
                    if (tryOnce())
                        return;
                    FaultStatus st = fault();
                    if (st != FaultStatus.Ok && st != FaultStatus.OutOfMemory)
                    {
                        Error($"round {round}: {via} fault at page {i}: {st}");
                        return;
                    }
                    if (attempt > 100_000)
                    {
                        Error($"round {round}: {via} access to page {i} makes no progress");
                        return;
                    }
                }
            }

            // The CPU walks (setting A, and D on a write) and uses the frame while its "TLB entry"
            // is live: its CPU lock held, which every flush waits for.
            void Primary(int me, int i, bool write, ulong value) => Access("primary", i, write, () =>
            {
                lock (cpuLock[me])
                {
                    if (!HardwareWalker.TouchPrimary(tableAt, space.Root, Va(i), write, out PhysAddr pa))
                        return false;
                    Use("primary", i, platform.PhysToVirt(pa), write, value);
                    return true;
                }
            }, () => space.HandleFault(Va(i), write));

            // The frame is used under the secondary's MMU lock, which its zap waits for.
            void Secondary(int i, bool write, ulong value) => Access("secondary", i, write,
                () => sec.TryAccessLocked(Va(i), write, f => Use("secondary", i, platform.PhysToVirt(f.Address), write, value)),
                () => sec.Fault(Va(i), write));

            int done = 0;
            Thread[] workers = new Thread[Workers];
            for (int w = 0; w < Workers; w++)
            {
                int me = w;
                workers[w] = new Thread(() =>
                {
                    Random rng = new Random(seed * 31 + round * 7 + me);
                    try
                    {
                        for (int op = 0; op < opsPerWorker && Volatile.Read(ref stop) == 0; op++)
                        {
                            // The first span in the first half of the round, the second after: the
                            // first goes cold meanwhile (eviction splits it) while the second is used.
                            int span = op < opsPerWorker / 2 ? 0 : 1;
                            int i = span * Span + rng.Next(Span / Workers) * Workers + me;
                            ulong value = ((ulong)(uint)round << 48) | ((ulong)(uint)i << 24) | (uint)op;
                            int kind = rng.Next(1000);
                            if (kind >= 997 && rng.Next(64) != 0)
                                kind = 0;      // unmaps: about one in two rounds per worker
                            if (kind < 350)
                                Primary(me, i, true, value);
                            else if (kind < 600)
                                Primary(me, i, false, 0);
                            else if (kind < 800)
                                Secondary(i, true, value);
                            else if (kind < 997)
                                Secondary(i, false, 0);
                            else
                            {
                                // The owner unmaps its page: zero from then on (a 2 MiB page is split first).
                                MapStatus s = space.Unmap(Va(i), Va(i + 1));
                                if (s != MapStatus.Ok)
                                    Error($"round {round}: unmap of page {i}: {s}");
                                model[i] = 0;
                            }
                        }
                    }
                    catch (Exception e)
                    {
                        Error($"round {round}: worker {me}: {e}");
                    }
                    Interlocked.Increment(ref done);
                });
            }
            Thread chaos = new Thread(() =>
            {
                Random rng = new Random(seed * 17 + round);
                try
                {
                    while (Volatile.Read(ref done) < Workers && Volatile.Read(ref stop) == 0)
                    {
                        mm.AgingPass();
                        mm.Evict(rng.Next(1, 700));
                        Thread.Yield();
                    }
                }
                catch (Exception e)
                {
                    Error($"round {round}: reclaim thread: {e}");
                }
            });
            foreach (Thread t in workers)
                t.Start();
            chaos.Start();
            foreach (Thread t in workers)
                t.Join();
            chaos.Join();
            concurrentSplits += mm.Lru.Stats.HugeSplits - splitsAtStart;
            // Then, alone: the 2 MiB pages left (the span used last) go old as the generations
            // turn (a pass needs room in the window, which eviction of the oldest makes), and
            // eviction must split each of them (their contents are checked below, swapped back in).
            int left = CountHugeLeaves(space);
            leftHuge += left;
            long before = mm.Lru.Stats.HugeSplits;
            for (int turn = 0; turn < 2 * LruGenerations<HostPlatform>.MaxGenerations; turn++)
            {
                mm.AgingPass();
                mm.Evict(Pages);
            }
            if (CountHugeLeaves(space) != 0 || mm.Lru.Stats.HugeSplits - before != left)
                Error($"round {round}: {left} 2 MiB pages were old, {mm.Lru.Stats.HugeSplits - before} split by eviction, {CountHugeLeaves(space)} still mapped whole");
            for (int i = 0; i < Pages && errors.IsEmpty; i++)
                Primary(i % Workers, i, false, 0);
            int lruCheck = mm.Lru.Validate();
            if (lruCheck < 0)
                Error($"round {round}: LRU lists broken ({lruCheck})");
            space.Notifiers.Unregister(sec);
            for (int c = 0; c < machine.Cpus; c++)
                space.Deactivate(c);
            space.Destroy();
        }
        foreach (string e in errors)
            _out.WriteLine(e);
        Assert.True(errors.IsEmpty, string.Join("\n", errors));
        Assert.Equal(0, mismatches);
        mm.Frames.DrainCaches();
        Assert.Equal(0, mm.Lru.Listed);
        Assert.Equal(0, SwapTests.LiveDataFrames(mm));
        Assert.Equal(0, swap.SlotsInUse);
        LruStats s = mm.Lru.Stats;
        _out.WriteLine($"{rounds} rounds: splits by eviction {s.HugeSplits} ({concurrentSplits} while the workers ran, {leftHuge} of the 2 MiB pages left at the ends of rounds), evictions {s.Evictions}, swap-ins {swap.SwapIns}, swap-outs {swap.SwapOuts}");
        // How many splits happen while the workers run depends on the machine's timing (23 to 53
        // per run seen); that some do, and that the pages left whole were split, does not.
        Assert.True(concurrentSplits > 0, "no 2 MiB page was split by eviction while the workers ran");
        Assert.True(leftHuge > 0, "no 2 MiB page was left whole at the end of a round: the fault path never mapped one");
        Assert.True(swap.SwapIns > 0 && swap.SwapOuts > 0, "nothing was swapped out and back in");
    }

    /// <summary>2 MiB leaves still mapped in <paramref name="space"/> (a snapshot).</summary>
    private static int CountHugeLeaves(AddressSpace<HostPlatform> space)
    {
        int n = 0;
        for (int s = 0; s < Pages / Span; s++)
        {
            if (space.Translate(Va(s * Span), out PageTableEntry _, out int level) && level == 2)
                n++;
        }
        return n;
    }
}
