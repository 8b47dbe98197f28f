using System;
using System.Diagnostics;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Threads acting as vCPUs fault pages in and set EPT A/D bits with locked updates (the TLB model's
/// hardware walk), against a thread that tears down primary mappings (unmap, reclaim, protect), a
/// thread that ages (fast-only and exact), and a host CPU's page walker that sets primary A/D bits
/// in the guest RAM's host mapping. Checked on every access (no freed or reused frame reached
/// through a cached translation), on every invalidation (auditor: no EPT leaf maps a freed frame),
/// on every table access (no walk into a freed mm frame or EPT table page), and at the end (every
/// EPT leaf maps exactly what the primary maps). The seed is printed; TANDEM_SEED replays it (the
/// interleaving differs from run to run); a failure is shrunk by halving the operation count.
/// </summary>
public class TortureTests
{
    private const long TargetOps = 1_000_000;
    private readonly ITestOutputHelper _out;
    public TortureTests(ITestOutputHelper output) { _out = output; }

    [Fact]
    public void VcpusAgainstInvalidationAndAging()
    {
        int seed = TestSeed.Pick(_out.WriteLine, nameof(VcpusAgainstInvalidationAndAging));
        string? failure = RunOnce(TargetOps, seed, _out.WriteLine);
        if (failure == null)
            return;
        long smallest = TargetOps;
        string smallestFailure = failure;
        for (long n = TargetOps / 2; n >= 2000; n /= 2)
        {
            string? f = RunOnce(n, seed, _ => { });
            if (f == null)
                break;
            smallest = n;
            smallestFailure = f;
        }
        Assert.Fail("seed " + seed + " failed; smallest failing run: " + smallest + " operations (" + TestSeed.Variable + "=" + seed + ")\n" + smallestFailure);
    }

    /// <summary>One run of <paramref name="targetOps"/> operations; the failure, or null.</summary>
    private static string? RunOnce(long targetOps, int seed, Action<string> log)
    {
        const int pages = 256;
        using EptBed b = new EptBed(pages: pages, memory: 32UL << 20, cpus: 5, strict: false);
        long ops = 0, accesses = 0, faults = 0, invalidations = 0, agings = 0, hostTouches = 0;
        int stop = 0;
        Exception? error = null;
        Stopwatch clock = Stopwatch.StartNew();

        void Run(int cpu, int id, Action<Random> step, bool counts = true)
        {
            KvmMachine.ThreadCpu = cpu;
            AccessMonitor.AbortSpinsAfterFailureOf = b.Machine.FreedFrameWatch;
            Random r = new Random(unchecked(seed * 31 + id));
            try
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    step(r);
                    if (counts && (Interlocked.Increment(ref ops) >= targetOps || clock.Elapsed.TotalSeconds > 45))
                        Volatile.Write(ref stop, 1);
                }
            }
            catch (Exception e)
            {
                error ??= e;
                Volatile.Write(ref stop, 1);
            }
        }

        void Vcpu(Random r, int cpu)
        {
            // A hot set of 32 pages most of the time, the whole RAM sometimes.
            int page = r.Next(8) == 0 ? r.Next(pages) : r.Next(32);
            bool write = r.Next(4) == 0;
            while (b.TryAccess(page, write, cpu, out Pfn _) == EptTlbModel.Outcome.EptViolation)
            {
                Interlocked.Increment(ref faults);
                FaultStatus s = b.Ept.HandleViolation(b.Gpa(page), write);
                if (s != FaultStatus.Ok)
                    throw new InvalidOperationException("fault: " + s);
            }
            Interlocked.Increment(ref accesses);
        }

        void Invalidator(Random r)
        {
            int page = r.Next(pages);
            switch (r.Next(8))
            {
                case 0:
                case 1:
                case 2:
                    if (b.PrimaryFrame(page, out Pfn f))
                        b.Mm.TryToUnmap(f);
                    break;
                case 3:
                case 4:
                    b.Space.Unmap(b.Hva(page), b.Hva(Math.Min(pages, page + 1 + r.Next(8))));
                    break;
                case 5:
                    b.Space.Protect(b.Hva(page), b.Hva(Math.Min(pages, page + 4)), PageProt.User);
                    break;
                default:
                    b.Space.Unmap(b.Hva(0), b.Hva(32)); // the hot set
                    break;
            }
            Interlocked.Increment(ref invalidations);
        }

        void Ager(Random r)
        {
            int page = r.Next(pages);
            if (r.Next(16) == 0)
                b.Ept.TestClearYoungFastOnly(b.Space, b.Hva(0), b.Hva(pages), true);
            else if (b.PrimaryFrame(page, out Pfn f))
                b.Mm.AgeFrame(f, exact: r.Next(2) == 0);
            Interlocked.Increment(ref agings);
        }

        void HostCpu(Random r)
        {
            // The host touching guest RAM through its own mapping (device emulation, a copy):
            // the CPU's walker sets primary A (and D) with locked updates.
            b.HostTouch(r.Next(pages), r.Next(3) == 0, out Pfn _);
            if ((Interlocked.Increment(ref hostTouches) & 15) == 0)
                Thread.Yield();
        }

        Thread[] threads =
        {
            new Thread(() => Run(1, 1, r => Vcpu(r, 1))),
            new Thread(() => Run(2, 2, r => Vcpu(r, 2))),
            new Thread(() => Run(0, 3, Invalidator)),
            new Thread(() => Run(3, 4, Ager)),
            new Thread(() => Run(4, 5, HostCpu, counts: false)),
        };
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            t.Join();
        log("ops " + ops + " (accesses " + accesses + ", EPT faults " + faults + ", retries " + b.Ept.FaultRetries +
            ", invalidations " + invalidations + ", agings " + agings + ", host walks " + hostTouches + ") in " + clock.ElapsedMilliseconds +
            " ms; INVEPT " + b.Machine.InvEptCount + ", remote flushes " + b.Machine.RemoteFlushCount + ", TLB hits " + b.Machine.Tlb.Hits +
            ", walks " + b.Machine.Tlb.Walks + ", auditor checks " + b.Auditor!.Checks + ", frames poisoned " + b.Machine.FramesPoisoned);
        if (b.Machine.FreedAccessFailures > 0)
            return "freed memory accessed:\n" + b.Machine.FreedAccessMessages;
        if (error != null)
            return error.ToString();
        if (ops < targetOps)
            return "only " + ops + " operations";
        if (b.Machine.Tlb.Violations > 0)
            return string.Join("; ", b.Machine.Tlb.Messages);
        if (b.Auditor.Violations > 0)
            return string.Join("; ", b.Auditor.Messages);
        var problems = b.Problems(strict: true);
        if (problems.Count > 0)
            return string.Join("; ", problems);
        if (b.Ept.Sequence.InProgress != 0)
            return "invalidation still in progress at the end";
        if (!(faults > targetOps / 1000 && invalidations > targetOps / 1000 && agings > targetOps / 1000 && hostTouches > 0))
            return "every actor must have run";
        return null;
    }
}
