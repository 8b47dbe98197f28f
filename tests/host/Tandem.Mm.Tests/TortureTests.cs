using System;
using System.Threading;
using Tandem.Mm;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Faults (primary and secondary), guest accesses, unmaps, protection changes, TryToUnmap, aging
/// and reclaim from several threads against two recording secondary MMUs. Threads stop at a
/// barrier every round; the checker then requires every secondary entry to match the primary.
/// </summary>
public class TortureTests
{
    private readonly ITestOutputHelper _out;
    [ThreadStatic] private static long lastChurnRegistrations;
    public TortureTests(ITestOutputHelper output) { _out = output; }

    public static (long ops, int violations, string messages) Run(int threads, long totalOps, int pages, int seed, bool churn = true)
    {
        using TestBed b = new TestBed(windowPages: pages, memory: 32UL << 20, cpus: threads + 2);
        RecordingSecondaryMmu fast = b.AddSecondary(lockless: true);
        RecordingSecondaryMmu slow = b.AddSecondary(lockless: false);
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
        if (churn)
        {
            churner = new Thread(() =>
            {
                HostMachine.ThreadCpu = threads + 1;
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
        structural += churnViolations;
        lastChurnRegistrations = churnRegistrations;
        if (error != null)
            throw new Exception("worker failed", error);
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
        var (done, violations, messages) = Run(threads: 3, totalOps: ops, pages: 128, seed: 7);
        _out.WriteLine("operations: " + done + ", violations: " + violations + ", churned registrations: " + lastChurnRegistrations);
        Assert.True(done >= ops - 100, "ran " + done);
        Assert.True(violations == 0, messages);
    }
}
