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
    public TortureTests(ITestOutputHelper output) { _out = output; }

    public static (long ops, int violations, string messages) Run(int threads, long totalOps, int pages, int seed)
    {
        using TestBed b = new TestBed(windowPages: pages, memory: 32UL << 20, cpus: threads + 1);
        RecordingSecondaryMmu fast = b.AddSecondary(lockless: true);
        RecordingSecondaryMmu slow = b.AddSecondary(lockless: false);
        const int rounds = 20;
        long perThreadPerRound = totalOps / threads / rounds;
        int structural = 0;
        Barrier barrier = new Barrier(threads, _ =>
        {
            fast.CheckQuiescent("round");
            slow.CheckQuiescent("round");
            for (int i = 0; i < pages; i++)
            {
                if (b.Space.TranslateFrame(b.Page(i), out Pfn f)
                    && (!b.Mm.Rmap.Contains(f, b.Space, b.Page(i)) || b.Mm.Frames.MapCountOf(f) != 1 || b.Mm.Frames.RefCountOf(f) != 1))
                    Interlocked.Increment(ref structural);
            }
        });
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
        foreach (Thread w in workers)
            w.Join();
        if (error != null)
            throw new Exception("worker failed", error);
        int violations = fast.Violations + slow.Violations + structural;
        string messages = string.Join("\n", fast.Messages) + string.Join("\n", slow.Messages) + (structural > 0 ? "\nstructural: " + structural : "");
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
        _out.WriteLine("operations: " + done + ", violations: " + violations);
        Assert.True(done >= ops - 100, "ran " + done);
        Assert.True(violations == 0, messages);
    }
}
