using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Vmx;
using Xunit;

namespace Tandem.Kvm.Tests;

/// <summary>
/// The VPID allocator (kvm/Vmx/VpidAllocator.cs): a live vCPU's VPID is never handed to another,
/// however many vCPUs come and go, VPID 0 never leaves it, and what is freed comes back.
/// </summary>
public class VpidAllocatorTests
{
    /// <summary>
    /// The defect this replaced: VPIDs counted up and the vCPU table was indexed by the low 8 bits,
    /// so the 256th vCPU made after a live one took the live one's slot. One vCPU stays live while
    /// 10 000 others come and go: none of them gets its VPID.
    /// </summary>
    [Fact]
    public void ALiveVpidIsNeverHandedOutAgain()
    {
        var vpids = new VpidAllocator(4096);
        ushort live = vpids.Allocate();
        Assert.NotEqual(0, live);
        for (int i = 0; i < 10_000; i++)
        {
            ushort v = vpids.Allocate();
            Assert.NotEqual(0, v);
            Assert.NotEqual(live, v);
            vpids.Free(v);
        }
        Assert.Equal(1, vpids.InUse());
    }

    /// <summary>All 4095 VPIDs can be held at once, each once; the next request gets 0 (the VM is refused), and a freed one comes back.</summary>
    [Fact]
    public void EveryVpidOnceThenZeroThenTheFreedOne()
    {
        var vpids = new VpidAllocator(4096);
        var seen = new HashSet<ushort>();
        for (int i = 1; i < 4096; i++)
        {
            ushort v = vpids.Allocate();
            Assert.InRange(v, (ushort)1, (ushort)4095);
            Assert.True(seen.Add(v), $"VPID {v} handed out twice");
        }
        Assert.Equal(0, vpids.Allocate());
        Assert.Equal(4095, vpids.InUse());
        vpids.Free(1234);
        Assert.Equal(1234, vpids.Allocate());
        Assert.Equal(0, vpids.Allocate());
    }

    /// <summary>A VPID just freed is the last to come back (a stale translation has the longest time to be gone).</summary>
    [Fact]
    public void AFreedVpidComesBackLast()
    {
        var vpids = new VpidAllocator(64);
        ushort first = vpids.Allocate();
        vpids.Free(first);
        for (int i = 0; i < 62; i++)
            Assert.NotEqual(first, vpids.Allocate());
        Assert.Equal(first, vpids.Allocate());
    }

    [Fact]
    public void ZeroOrAFreeVpidCannotBeFreed()
    {
        var vpids = new VpidAllocator(64);
        Assert.Throws<System.ArgumentOutOfRangeException>(() => vpids.Free(0));
        Assert.Throws<System.ArgumentOutOfRangeException>(() => vpids.Free(64));
        Assert.Throws<System.InvalidOperationException>(() => vpids.Free(5));
    }

    /// <summary>
    /// Four threads allocate and free at once (the VMs of several CPUs being made and released):
    /// an owner table marks each VPID's holder; a second holder of one VPID is seen at once.
    /// </summary>
    [Fact]
    public void ConcurrentAllocateAndFreeNeverShareAVpid()
    {
        var vpids = new VpidAllocator(128);              // small, so words are contended and VPIDs reused
        var owner = new int[128];
        int clashes = 0, refused = 0;
        System.Exception? failure = null;
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            int me = t + 1;
            threads[t] = new Thread(() =>
            {
                try
                {
                    Run();
                }
                catch (System.Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);   // a double free: fails the test, not the test host
                }
            });
            void Run()
            {
                var held = new Queue<ushort>();
                var random = new System.Random(me);
                for (int i = 0; i < 200_000; i++)
                {
                    if (held.Count < 40 && random.Next(3) != 0)
                    {
                        ushort v = vpids.Allocate();
                        if (v == 0)
                        {
                            Interlocked.Increment(ref refused);
                            continue;
                        }
                        if (Interlocked.CompareExchange(ref owner[v], me, 0) != 0)
                            Interlocked.Increment(ref clashes);
                        held.Enqueue(v);
                    }
                    else if (held.Count > 0)
                    {
                        ushort v = held.Dequeue();
                        Volatile.Write(ref owner[v], 0);      // before the free: the next holder finds 0
                        vpids.Free(v);
                    }
                }
                while (held.Count > 0)
                {
                    ushort v = held.Dequeue();
                    Volatile.Write(ref owner[v], 0);
                    vpids.Free(v);
                }
            }
            threads[t].Start();
        }
        foreach (var thread in threads)
            thread.Join();
        Assert.Null(failure);
        Assert.Equal(0, clashes);
        Assert.Equal(0, vpids.InUse());
    }
}
