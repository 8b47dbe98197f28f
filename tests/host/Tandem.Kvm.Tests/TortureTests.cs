using System;
using System.Diagnostics;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Threads acting as vCPUs fault pages in and set A/D bits with Interlocked (the TLB model's
/// hardware walk), against a thread that tears down primary mappings (unmap, reclaim, protect) and
/// a thread that ages (fast-only and exact). Checked on every access (no freed or reused frame
/// reached through a cached translation), on every invalidation (auditor: no EPT leaf maps a freed
/// frame), and at the end (every EPT leaf maps exactly what the primary maps).
/// </summary>
public class TortureTests
{
    private const long TargetOps = 1_000_000;
    private readonly ITestOutputHelper _out;
    public TortureTests(ITestOutputHelper output) { _out = output; }

    [Fact]
    public void VcpusAgainstInvalidationAndAging()
    {
        const int pages = 256;
        using EptBed b = new EptBed(pages: pages, memory: 32UL << 20, cpus: 4, strict: false);
        long ops = 0, accesses = 0, faults = 0, invalidations = 0, agings = 0;
        int stop = 0;
        Exception? error = null;
        Stopwatch clock = Stopwatch.StartNew();

        void Run(int cpu, int seed, Action<Random> step)
        {
            KvmMachine.ThreadCpu = cpu;
            Random r = new Random(seed);
            try
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    step(r);
                    if (Interlocked.Increment(ref ops) >= TargetOps || clock.Elapsed.TotalSeconds > 45)
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

        Thread[] threads =
        {
            new Thread(() => Run(1, 11, r => Vcpu(r, 1))),
            new Thread(() => Run(2, 22, r => Vcpu(r, 2))),
            new Thread(() => Run(0, 33, Invalidator)),
            new Thread(() => Run(3, 44, Ager)),
        };
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            t.Join();
        _out.WriteLine("ops " + ops + " (accesses " + accesses + ", EPT faults " + faults + ", retries " + b.Ept.FaultRetries +
            ", invalidations " + invalidations + ", agings " + agings + ") in " + clock.ElapsedMilliseconds + " ms; INVEPT " +
            b.Machine.InvEptCount + ", remote flushes " + b.Machine.RemoteFlushCount + ", TLB hits " + b.Machine.Tlb.Hits +
            ", walks " + b.Machine.Tlb.Walks + ", auditor checks " + b.Auditor!.Checks);
        Assert.True(error == null, error?.ToString());
        Assert.True(ops >= TargetOps, "only " + ops + " operations");
        Assert.True(b.Machine.Tlb.Violations == 0, string.Join("; ", b.Machine.Tlb.Messages));
        Assert.True(b.Auditor.Violations == 0, string.Join("; ", b.Auditor.Messages));
        Assert.Empty(b.Problems(strict: true));
        Assert.Equal(0, b.Ept.Sequence.InProgress);
        Assert.True(faults > 1000 && invalidations > 1000 && agings > 1000, "every actor must have run");
    }
}
