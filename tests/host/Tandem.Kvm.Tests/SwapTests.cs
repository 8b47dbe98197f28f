using System;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Swap through the EPT (mm/Swap, docs/reclaim.md): a page written only by the guest (EPT D, never
/// the primary D) must be stored again at its next eviction, and a swap-in by an EPT fault may race
/// an eviction. The first 8 bytes of a page are the TLB model's gfn tag; the tests keep their own
/// payload in the rest.
/// </summary>
public unsafe class SwapTests
{
    private readonly ITestOutputHelper _out;
    public SwapTests(ITestOutputHelper output) { _out = output; }

    private static void FillPayload(EptBed b, Pfn f, ulong value)
    {
        ulong* p = (ulong*)b.Machine.FrameBytes(f);
        for (int k = 1; k < 512; k++)
            p[k] = value;
    }

    private static ulong Payload(EptBed b, Pfn f)
    {
        ulong* p = (ulong*)b.Machine.FrameBytes(f);
        for (int k = 2; k < 512; k++)
            if (p[k] != p[1])
                return 0xDEAD_BEEF_BAD_BAD;
        return p[1];
    }

    /// <summary>Evicts the page: the exact aging check first (young bits cleared everywhere), then the swap-out.</summary>
    private static void Evict(EptBed b, int page)
    {
        Assert.True(b.PrimaryFrame(page, out Pfn f));
        for (int i = 0; i < 3; i++)
            if (b.Mm.TryReclaim(f))
                return;
        throw new InvalidOperationException("page " + page + " was not evicted");
    }

    [Fact]
    public void AWriteThroughTheEptOnlySurvivesTheNextEviction()
    {
        using EptBed b = new EptBed(pages: 16);
        DictionarySwapDevice d = new DictionarySwapDevice();
        SwapMap<MmHostPlatform> swap = b.Mm.AttachSwap(d, 64);
        KvmMachine.ThreadCpu = 0;
        Pfn f = b.Touch(3, write: true, cpu: 1);
        FillPayload(b, f, 0x1111);
        Evict(b, 3);
        Assert.Equal(1, d.Stores);
        Assert.False(b.Leaf(3).IsPresent);
        // Read it back through the EPT: the EPT fault swaps it in through the primary.
        f = b.Touch(3, write: false, cpu: 1);
        Assert.Equal(0x1111UL, Payload(b, f));
        Assert.Equal(1, swap.SwapIns);
        Assert.True(b.Space.Translate(b.Hva(3), out PageTableEntry pte, out int _));
        Assert.False(pte.IsDirty, "a swapped-in page starts clean");
        // Write it through the EPT only: EPT D is set, the primary D never is.
        Pfn g = b.Touch(3, write: true, cpu: 1);
        Assert.Equal(f, g);
        FillPayload(b, g, 0x2222);
        Assert.True(b.Leaf(3).IsDirty);
        Assert.True(b.Space.Translate(b.Hva(3), out pte, out int _));
        Assert.False(pte.IsDirty, "no host CPU wrote the page");
        // The eviction's zap carries EPT D to the frame: the page is stored again.
        Evict(b, 3);
        Assert.Equal(2, d.Stores);
        Assert.Equal(0, swap.CleanEvictions);
        Assert.Equal(1, d.Count);
        f = b.Touch(3, write: false, cpu: 2);
        Assert.Equal(0x2222UL, Payload(b, f));
        Assert.Empty(b.Problems(strict: true));
        Assert.Empty(b.Machine.Tlb.Messages);
    }

    [Fact]
    public void AReadOnlyGuestPageIsEvictedAgainWithoutAStore()
    {
        using EptBed b = new EptBed(pages: 16);
        DictionarySwapDevice d = new DictionarySwapDevice();
        SwapMap<MmHostPlatform> swap = b.Mm.AttachSwap(d, 64);
        Pfn f = b.Touch(5, write: true, cpu: 0);
        FillPayload(b, f, 0x5555);
        Evict(b, 5);
        f = b.Touch(5, write: false, cpu: 0);
        Assert.Equal(0x5555UL, Payload(b, f));
        Evict(b, 5);
        Assert.Equal(1, d.Stores);
        Assert.Equal(1, swap.CleanEvictions);
        f = b.Touch(5, write: false, cpu: 0);
        Assert.Equal(0x5555UL, Payload(b, f));
    }

    /// <summary>
    /// Two vCPUs, each owning half of the pages, read and write them through the EPT (violations
    /// handled: swap-ins through ResolveForSecondary) while an evictor thread swaps the frames out.
    /// A guest access holds a read lock from its translation to its last byte and every EPT flush
    /// takes the write lock (the flush's IPI waits for the vCPU). Every read must match the model;
    /// no EPT leaf may map a freed frame; at the end nothing leaks.
    /// </summary>
    [Fact]
    public void SwapInThroughEptFaultsRacesEviction()
    {
        string? env = TestSeed.FromEnvironment();
        int seed = env != null ? int.Parse(env) : 20250612;
        _out.WriteLine("seed " + seed + "; replay: " + TestSeed.Variable + "=" + seed + " dotnet test --filter " + nameof(SwapInThroughEptFaultsRacesEviction));
        const int pages = 16, vcpus = 2, targetSwapOuts = 250;
        using EptBed b = new EptBed(pages: pages, cpus: vcpus + 2, audit: false);
        DictionarySwapDevice d = new DictionarySwapDevice();
        SwapMap<MmHostPlatform> swap = b.Mm.AttachSwap(d, pages * 2);
        ReaderWriterLockSlim cpuAccess = new ReaderWriterLockSlim(LockRecursionPolicy.SupportsRecursion);
        b.Machine.OnEptFlush = () => { cpuAccess.EnterWriteLock(); cpuAccess.ExitWriteLock(); };
        ulong[] model = new ulong[pages];
        long mismatches = 0, accesses = 0;
        int stop = 0;
        Exception? error = null;
        Thread[] ts = new Thread[vcpus + 1];
        for (int v = 0; v < vcpus; v++)
        {
            int me = v;
            ts[v] = new Thread(() =>
            {
                KvmMachine.ThreadCpu = me + 1;
                Random rng = new Random(seed * 10 + me);
                try
                {
                    while (Volatile.Read(ref stop) == 0)
                    {
                        int page = rng.Next(pages / vcpus) * vcpus + me;
                        bool write = rng.Next(3) == 0;
                        while (true)
                        {
                            cpuAccess.EnterReadLock();
                            bool done = false;
                            try
                            {
                                if (b.TryAccess(page, write, me + 1, out Pfn f) != EptTlbModel.Outcome.EptViolation)
                                {
                                    done = true;
                                    Interlocked.Increment(ref accesses);
                                    ulong seen = Payload(b, f);
                                    if (seen != model[page])
                                        Interlocked.Increment(ref mismatches);
                                    if (write)
                                    {
                                        model[page] = (ulong)rng.NextInt64(1, long.MaxValue);
                                        FillPayload(b, f, model[page]);
                                    }
                                }
                            }
                            finally
                            {
                                cpuAccess.ExitReadLock();
                            }
                            if (done)
                                break;
                            FaultStatus s = b.Ept.HandleViolation(b.Gpa(page), write);
                            if (s != FaultStatus.Ok)
                                throw new InvalidOperationException("EPT fault " + s);
                        }
                    }
                }
                catch (Exception e)
                {
                    error ??= e;
                }
            });
        }
        ts[vcpus] = new Thread(() =>
        {
            KvmMachine.ThreadCpu = 0;
            Random rng = new Random(seed * 10 + 99);
            try
            {
                // Until enough swap-outs happened (or 20 s passed).
                DateTime deadline = DateTime.UtcNow.AddSeconds(20);
                while (error == null && swap.SwapOuts < targetSwapOuts && DateTime.UtcNow < deadline)
                {
                    int page = rng.Next(pages);
                    if (!b.PrimaryFrame(page, out Pfn f))
                        Thread.Yield();
                    else
                    {
                        if (rng.Next(2) == 0)
                            b.Mm.TryReclaim(f);
                        else
                            b.Mm.TrySwapOut(f);
                    }
                }
            }
            catch (Exception e)
            {
                error ??= e;
            }
            finally
            {
                Volatile.Write(ref stop, 1);
            }
        });
        foreach (Thread t in ts)
            t.Start();
        foreach (Thread t in ts)
            t.Join();
        Assert.True(error == null, "a thread failed: " + error);
        KvmMachine.ThreadCpu = 0;
        for (int page = 0; page < pages; page++)
            if (Payload(b, b.Touch(page, false, cpu: 0)) != model[page])
                mismatches++;
        _out.WriteLine("accesses " + accesses + ", swap-outs " + swap.SwapOuts + ", swap-ins " + swap.SwapIns + ", cache hits " + swap.CacheHits
            + ", clean evictions " + swap.CleanEvictions + ", mismatches " + mismatches);
        Assert.Equal(0, mismatches);
        Assert.Empty(b.Machine.Tlb.Messages);
        Assert.Empty(b.Problems(strict: false));
        Assert.True(swap.SwapOuts > 0 && swap.SwapIns > 0, "the evictor and the vCPUs met");
        for (int c = 0; c < b.Machine.Cpus; c++)
            b.Space.Deactivate(c);
        b.Space.Destroy();
        Assert.Equal(0, swap.SlotsInUse);
        Assert.Equal(0, swap.CachedFrames);
        Assert.Equal(0, d.Count);
    }
}
