using System;
using System.Threading;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Faults (primary and secondary), guest accesses, unmaps, protection changes, TryToUnmap, aging
/// and reclaim from several threads against two recording secondary MMUs, while a hardware thread
/// (the CPU's page walker) sets primary A/D bits with locked updates. Threads stop at a barrier
/// every round; the checker then requires every secondary entry to match the primary. Freed frames
/// are poisoned and reused at once; any walk into one fails. The seed is printed; TANDEM_SEED
/// replays it (the thread interleaving differs from run to run); a failure is shrunk by halving
/// the number of operations while it still fails.
/// </summary>
public class TortureTests
{
    private readonly ITestOutputHelper _out;
    [ThreadStatic] private static long lastChurnRegistrations;
    [ThreadStatic] private static long lastHardwareTouches;
    public TortureTests(ITestOutputHelper output) { _out = output; }

    public static (long ops, int violations, string messages) Run(int threads, long totalOps, int pages, int seed, bool churn = true)
    {
        using TestBed b = new TestBed(windowPages: pages, memory: 32UL << 20, cpus: threads + 2);
        RecordingSecondaryMmu fast = b.AddSecondary(lockless: true);
        RecordingSecondaryMmu slow = b.AddSecondary(lockless: false);
        MemoryWatch freed = b.Machine.FreedWatch;
        const int rounds = 20;
        long perThreadPerRound = totalOps / threads / rounds;
        int structural = 0;
        object churnGate = new object();
        Barrier barrier = new Barrier(threads, _ =>
        {
            // Quiescent: the workers wait at the barrier, the churner between two iterations.
            lock (churnGate)
                CheckRound();
        });
        void CheckRound()
        {
            fast.CheckQuiescent("round");
            slow.CheckQuiescent("round");
            for (int i = 0; i < pages; i++)
            {
                if (b.Space.TranslateFrame(b.Page(i), out Pfn f)
                    && (!b.Mm.Rmap.Contains(f, b.Space, b.Page(i)) || b.Mm.Frames.MapCountOf(f) != 1 || b.Mm.Frames.RefCountOf(f) != 1))
                    Interlocked.Increment(ref structural);
            }
        }
        long done = 0;
        Exception? error = null;
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            workers[t] = new Thread(() =>
            {
                HostMachine.ThreadCpu = me + 1;
                AccessMonitor.AbortSpinsAfterFailureOf = freed;
                Random rng = new Random(seed * 100 + me);
                try
                {
                    for (int r = 0; r < rounds; r++)
                    {
                        for (long k = 0; k < perThreadPerRound; k++)
                            OneOp(b, rng.Next(2) == 0 ? fast : slow, rng, pages);
                        Interlocked.Add(ref done, perThreadPerRound);
                        barrier.SignalAndWait();
                    }
                }
                catch (Exception e)
                {
                    error ??= e;
                    barrier.RemoveParticipant();
                }
            });
            workers[t].Start();
        }
        // Registration churn: a third secondary MMU registers, populates a few pages, and
        // unregisters, over and over, while the workers tear mappings down (section 4.3 of
        // docs/locking.md). Its own per-callback checks count as violations.
        int churnViolations = 0;
        System.Collections.Concurrent.ConcurrentQueue<string> churnMessages = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long churnRegistrations = 0;
        Thread? churner = null;
        bool stop = false;
        // The CPU's page walker: reads and writes random pages of the window through the primary
        // tables, setting A (and D) with locked updates, until the workers are done.
        long touches = 0;
        Exception? hardwareError = null;
        Thread hardware = new Thread(() =>
        {
            HostMachine.ThreadCpu = threads + 2;
            AccessMonitor.AbortSpinsAfterFailureOf = freed;
            Random rng = new Random(seed * 100 + 99);
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    b.HardwareTouch(rng.Next(pages), rng.Next(3) == 0, out Pfn _);
                    if ((++touches & 15) == 0)
                        Thread.Yield(); // leave the two cores to the workers now and then
                }
            }
            catch (Exception e)
            {
                hardwareError = e;
            }
        });
        hardware.Start();
        if (churn)
        {
            churner = new Thread(() =>
            {
                HostMachine.ThreadCpu = threads + 1;
                AccessMonitor.AbortSpinsAfterFailureOf = freed;
                Random rng = new Random(seed);
                while (!Volatile.Read(ref stop))
                {
                    lock (churnGate)
                        ChurnOnce(rng);
                }
            });
            churner.Start();
        }
        void ChurnOnce(Random rng)
        {
            RecordingSecondaryMmu extra = new RecordingSecondaryMmu(b.Space, TestBed.WindowBase, pages);
            b.Space.Notifiers.Register(extra, MmuNotifierFlags.None);
            for (int k = 0; k < 16; k++)
                extra.Fault(b.Page(rng.Next(pages)), rng.Next(2) == 0);
            b.Space.Notifiers.Unregister(extra);
            Interlocked.Add(ref churnViolations, extra.Violations);
            foreach (string m in extra.Messages)
            {
                if (churnMessages.Count < 10)
                    churnMessages.Enqueue("churn: " + m);
            }
            Interlocked.Increment(ref churnRegistrations);
        }
        foreach (Thread w in workers)
            w.Join();
        Volatile.Write(ref stop, true);
        churner?.Join();
        hardware.Join();
        structural += churnViolations;
        lastChurnRegistrations = churnRegistrations;
        lastHardwareTouches = touches;
        if (freed.Failures > 0)
            return (done, freed.Failures, "freed page-table frame accessed:\n" + freed.AllFailures);
        if (error != null)
            throw new Exception("worker failed", error);
        if (hardwareError != null)
            throw new Exception("hardware walker failed", hardwareError);
        int violations = fast.Violations + slow.Violations + structural;
        string messages = string.Join("\n", fast.Messages) + string.Join("\n", slow.Messages) + (structural > 0 ? "\nstructural: " + structural : "") + "\n" + string.Join("\n", churnMessages);
        return (done, violations, messages);
    }

    private static void OneOp(TestBed b, RecordingSecondaryMmu sec, Random rng, int pages)
    {
        int i = rng.Next(pages);
        VirtAddr va = b.Page(i);
        int dice = rng.Next(100);
        if (dice < 30)
            sec.Fault(va, rng.Next(2) == 0);
        else if (dice < 45)
            sec.Access(va, rng.Next(3) == 0);
        else if (dice < 58)
            b.Space.HandleFault(va, rng.Next(2) == 0);
        else if (dice < 68)
            b.Space.Unmap(va, b.Page(Math.Min(pages, i + 1 + rng.Next(4))));
        else if (dice < 76)
            b.Space.Protect(va, b.Page(Math.Min(pages, i + 1 + rng.Next(4))), rng.Next(2) == 0 ? PageProt.User : PageProt.User | PageProt.Write);
        else if (dice < 86)
        {
            if (b.Space.TranslateFrame(va, out Pfn f))
                b.Mm.TryToUnmap(f);
        }
        else if (dice < 96)
        {
            if (b.Space.TranslateFrame(va, out Pfn f))
                b.Mm.AgeFrame(f, exact: false);
        }
        else
        {
            if (b.Space.TranslateFrame(va, out Pfn f))
                b.Mm.TryReclaim(f);
        }
    }

    [Fact]
    public void AMillionConcurrentOperationsWithoutViolation()
    {
        long ops = 1_000_000;
        string? env = Environment.GetEnvironmentVariable("TANDEM_TORTURE_OPS");
        if (env != null)
            ops = long.Parse(env);
        int seed = TestSeed.Pick(_out.WriteLine, nameof(AMillionConcurrentOperationsWithoutViolation));
        var (done, violations, messages) = RunOrThrow(ops, seed);
        _out.WriteLine("operations: " + done + ", violations: " + violations + ", churned registrations: " + lastChurnRegistrations + ", hardware walks: " + lastHardwareTouches);
        if (violations != 0)
        {
            // Shrink: the same seed with half the operations, while it still fails (best effort:
            // the interleaving is not part of the seed).
            long smallest = ops;
            string smallestMessages = messages;
            for (long n = ops / 2; n >= 1000; n /= 2)
            {
                var (_, v, m) = RunOrThrow(n, seed);
                if (v == 0)
                    break;
                smallest = n;
                smallestMessages = m;
            }
            Assert.Fail("seed " + seed + ": " + violations + " violations; smallest failing run: TANDEM_TORTURE_OPS=" + smallest + " " + TestSeed.Variable + "=" + seed + "\n" + smallestMessages);
        }
        Assert.True(done >= ops - 100, "ran " + done);
    }

    private static (long, int, string) RunOrThrow(long ops, int seed)
    {
        try
        {
            return Run(threads: 3, totalOps: ops, pages: 128, seed: seed);
        }
        catch (Exception e)
        {
            return (0, 1, "seed " + seed + ": " + e);
        }
    }
}
