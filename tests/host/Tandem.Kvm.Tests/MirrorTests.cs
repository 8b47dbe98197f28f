using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Invariant 7 (seed 003): mirrors follow the same protocol. VM A (the bed's EPT over its guest
/// RAM), VM B (its own EPT, whose foreign memslot maps A's RAM at the same guest frames) and the
/// inspector (<see cref="MirrorView{TPlatform}"/> over A's RAM) must show the same page at every
/// address, and none of them may map a frame that A's primary page tables no longer map.
/// A's vCPUs run on CPUs 0-1 and B's on CPUs 2-3 (the TLB model tags entries by guest frame only).
/// </summary>
public class MirrorTests
{
    private readonly ITestOutputHelper _out;
    public MirrorTests(ITestOutputHelper output) { _out = output; }

    private const int DataOffset = 8; // word 0 of a page is the TLB model's guest-frame tag

    /// <summary>A, B sharing A's RAM through a foreign memslot, and the inspector.</summary>
    private sealed unsafe class Mirrors : IDisposable
    {
        public readonly EptBed A;
        public readonly AddressSpace<MmHostPlatform> SpaceB;
        public readonly EptMmu<EptHostPlatform> EptB;
        public readonly ForeignMemslot<EptHostPlatform> Shared;
        public readonly MirrorView<MmHostPlatform> View;

        public Mirrors(int pages, bool audit = true, ulong memory = 16UL << 20)
        {
            A = new EptBed(pages: pages, memory: memory, audit: audit);
            SpaceB = A.Mm.CreateAddressSpace()!;
            EptB = EptMmu<EptHostPlatform>.Create(A.Machine.EptPlatform, SpaceB)!;
            EptB.RegisterWith(SpaceB.Notifiers);
            Shared = EptB.AddForeignMemslot(new Memslot(new Gfn(0), (ulong)pages, EptBed.RamBase, true), A.Space, A.Space.Notifiers)!;
            View = MirrorView<MmHostPlatform>.Create(A.Machine.MmPlatform, A.Space, A.Space.Notifiers, EptBed.RamBase, pages)!;
        }

        /// <summary>A guest access of B (CPU 2 or 3), faults handled. Returns the frame used.</summary>
        public Pfn TouchB(int page, bool write, int cpu = 2)
        {
            for (int i = 0; ; i++)
            {
                if (A.Machine.Tlb.Access(EptB, cpu, A.Gpa(page), write, out Pfn frame) != EptTlbModel.Outcome.EptViolation)
                    return frame;
                FaultStatus status = EptB.HandleViolation(A.Gpa(page), write);
                if (status != FaultStatus.Ok)
                    throw new InvalidOperationException("B's EPT fault failed: " + status);
                if (i > 1000)
                    throw new InvalidOperationException("B's EPT fault livelock");
            }
        }

        public ulong* Data(Pfn frame) => (ulong*)(A.Machine.FrameBytes(frame) + DataOffset);

        public ulong ReadView(int page)
        {
            Span<byte> b = stackalloc byte[8];
            FaultStatus s = View.TryRead(A.Hva(page) + DataOffset, b);
            if (s != FaultStatus.Ok)
                throw new InvalidOperationException("view read failed: " + s);
            return BitConverter.ToUInt64(b);
        }

        /// <summary>B's EPT leaf for a page (Empty if none).</summary>
        public EptEntry LeafB(int page)
        {
            foreach (EptSlot s in new EptWalker<EptHostPlatform>(EptB.Platform, EptB.Root, A.Gpa(page), A.Gpa(page + 1)))
                return s.Value;
            return EptEntry.Empty;
        }

        /// <summary>
        /// Invariant 7 at a quiescent point (or for a page no one else may unmap now): every view
        /// that maps a page maps the frame the primary maps there; A's EPT checked by the bed.
        /// </summary>
        public List<string> Problems(int pages)
        {
            List<string> problems = A.Problems(strict: true);
            for (int p = 0; p < pages; p++)
                problems.AddRange(PageProblems(p));
            return problems;
        }

        public List<string> PageProblems(int p)
        {
            List<string> problems = new List<string>();
            bool mapped = A.Space.TranslateFrame(A.Hva(p), out Pfn primary);
            if (View.TryGetMapped(A.Hva(p), out Pfn v) && (!mapped || v != primary))
                problems.Add("inspector maps page " + p + " -> " + v.Value + ", primary " + (mapped ? primary.Value.ToString() : "none"));
            EptEntry leaf = LeafB(p);
            if (leaf.IsPresent)
            {
                Pfn b = leaf.LeafAddress(1).Pfn;
                if (!mapped || b != primary)
                    problems.Add("B's EPT maps page " + p + " -> " + b.Value + ", primary " + (mapped ? primary.Value.ToString() : "none"));
            }
            return problems;
        }

        public void Dispose() => A.Dispose();
    }

    [Fact]
    public unsafe void InspectorSeesGuestWritesAndFollowsUnmapProtectAgeAndEviction()
    {
        using Mirrors m = new Mirrors(pages: 8);
        KvmMachine.ThreadCpu = 0;
        // A's guest writes page 1 through its EPT; the inspector sees it.
        Pfn f = m.A.Touch(1, true, cpu: 0);
        *m.Data(f) = 0x1111;
        Assert.Equal(0x1111UL, m.ReadView(1));
        Assert.True(m.View.TryGetMapped(m.A.Hva(1), out Pfn v) && v == f);
        Assert.Equal(1L, m.View.PagesPopulated);

        // Protect (read-only): the view is zapped, re-resolves, sees the same page.
        m.A.Space.Protect(m.A.Hva(1), m.A.Hva(2), PageProt.User);
        Assert.False(m.View.TryGetMapped(m.A.Hva(1), out _));
        Assert.Equal(0x1111UL, m.ReadView(1));
        m.A.Space.Protect(m.A.Hva(1), m.A.Hva(2), PageProt.User | PageProt.Write);

        // Aging: the inspector's read made the page young; the exact check sees it, then clears it.
        m.A.Mm.AgeFrame(f, true);                      // clear every young bit
        Assert.False(m.A.Mm.AgeFrame(f, true));
        Assert.Equal(0x1111UL, m.ReadView(1));         // the inspector reads: young again
        Assert.True(m.View.TestYoung(m.A.Space, m.A.Hva(1), m.A.Hva(2)));
        Assert.True(m.A.Space.Notifiers.TestClearYoungFastOnly(m.A.Space, m.A.Hva(1), m.A.Hva(2), false).Complete);
        Assert.False(m.A.Mm.TryReclaim(f));            // kept: the view saw it young
        // Evicted now (no MMU saw it young since): every view drops it; the refault is a new page.
        Assert.True(m.A.Mm.TryReclaim(f));
        Assert.False(m.View.TryGetMapped(m.A.Hva(1), out _));
        Assert.Empty(m.Problems(8));
        Pfn g = m.A.Touch(1, true, cpu: 1);
        *m.Data(g) = 0x2222;
        Assert.Equal(0x2222UL, m.ReadView(1));
        Assert.Equal(0x2222UL, *m.Data(m.TouchB(1, false)));

        // TryToUnmap: the view re-resolves to the demand-zero page the next access faults in.
        m.A.Mm.TryToUnmap(g);
        Assert.Empty(m.Problems(8));
        Assert.Equal(0UL, m.ReadView(1));

        // Unmap: the same.
        Pfn h = m.A.Touch(2, true, cpu: 0);
        *m.Data(h) = 0x3333;
        Assert.Equal(0x3333UL, m.ReadView(2));
        m.A.Space.Unmap(m.A.Hva(2), m.A.Hva(3));
        Assert.False(m.View.TryGetMapped(m.A.Hva(2), out _));
        Assert.Empty(m.Problems(8));
        Assert.Equal(0UL, m.ReadView(2));
        Assert.True(m.View.Invalidations >= 4, "invalidations: " + m.View.Invalidations);
        Assert.Equal(0L, m.A.Machine.Tlb.Violations);
        Assert.Equal(FaultStatus.NoRegion, m.View.TryRead(m.A.Hva(8), new byte[1]));
    }

    /// <summary>
    /// One driver thread, seeded: A writes pages through its EPT, B writes and reads them through its
    /// foreign memslot, the inspector reads them, and the host evicts (TryReclaim), unmaps
    /// (TryToUnmap, Unmap), protects and ages. After every step each view agrees with a model of the
    /// page contents (an evicted page of this swapless mm comes back zero), and no view maps a frame
    /// the primary does not map at that address.
    /// </summary>
    [Fact]
    public unsafe void EveryViewAgreesWithTheModelAtEveryStep()
    {
        const int pages = 16;
        int seed = FixedSeed(20240611, nameof(EveryViewAgreesWithTheModelAtEveryStep));
        Random rng = new Random(seed);
        using Mirrors m = new Mirrors(pages);
        ulong[] model = new ulong[pages];
        int mismatches = 0;
        List<string> log = new List<string>();
        KvmMachine.ThreadCpu = 0;
        for (int step = 0; step < 4000; step++)
        {
            int p = rng.Next(pages);
            ulong value = ((ulong)(uint)(step + 1) << 8) | (uint)p;
            int op = rng.Next(10);
            ulong seen = 0;
            bool read = op >= 2 && op <= 4;
            switch (op)
            {
                case 0: *m.Data(m.A.Touch(p, true, cpu: rng.Next(2))) = value; model[p] = value; break;
                case 1: *m.Data(m.TouchB(p, true, cpu: 2 + rng.Next(2))) = value; model[p] = value; break;
                case 2: seen = *m.Data(m.TouchB(p, false, cpu: 2 + rng.Next(2))); break;
                case 3: seen = m.ReadView(p); break;
                case 4: seen = *m.Data(m.A.Touch(p, false, cpu: rng.Next(2))); break;
                case 5:
                    if (m.A.PrimaryFrame(p, out Pfn f) && m.A.Mm.TryReclaim(f))
                        model[p] = 0;
                    break;
                case 6:
                    if (m.A.PrimaryFrame(p, out Pfn g) && m.A.Mm.TryToUnmap(g))
                        model[p] = 0;
                    break;
                case 7: m.A.Space.Unmap(m.A.Hva(p), m.A.Hva(p + 1)); model[p] = 0; break;
                case 8:
                    m.A.Space.Protect(m.A.Hva(p), m.A.Hva(p + 1), PageProt.User);
                    if (m.ReadView(p) != model[p] || *m.Data(m.TouchB(p, false, 3)) != model[p])
                        mismatches++;
                    m.A.Space.Protect(m.A.Hva(p), m.A.Hva(p + 1), PageProt.User | PageProt.Write);
                    break;
                default: m.A.Mm.AgingPass(); break;
            }
            if (read && seen != model[p])
            {
                mismatches++;
                if (log.Count < 10)
                    log.Add("step " + step + " op " + op + " page " + p + ": saw " + seen.ToString("x") + ", model " + model[p].ToString("x"));
            }
            List<string> problems = m.Problems(pages);
            if (problems.Count > 0)
                Assert.Fail("seed " + seed + ", step " + step + " (op " + op + "): " + string.Join("; ", problems));
            // Cross-check: whichever views map the page now see the model's contents.
            if (m.View.TryGetMapped(m.A.Hva(p), out Pfn vf) && *m.Data(vf) != model[p])
                mismatches++;
        }
        _out.WriteLine("populated " + m.View.PagesPopulated + ", view invalidations " + m.View.Invalidations + ", foreign invalidations " + m.Shared.Invalidations + ", TLB violations " + m.A.Machine.Tlb.Violations);
        Assert.True(mismatches == 0, "seed " + seed + ": " + mismatches + " mismatches: " + string.Join("; ", log));
        Assert.Equal(0L, m.A.Machine.Tlb.Violations);
        Assert.True(m.View.Invalidations > 100 && m.Shared.Invalidations > 100);
    }

    /// <summary>
    /// Real threads, seeded: A's vCPU and B's vCPU write pages (each write is stamped with its page
    /// number), the inspector and B read them, and the host evicts, unmaps and protects. Every word a
    /// view reads is 0 or a stamp of that page (a view mapping a stale, freed or reused frame shows
    /// another page's stamp or the free poison); after each unmap of the evictor, no view maps the
    /// frame unless the primary maps it there again; at the end every view matches the primary.
    /// </summary>
    [Fact]
    public unsafe void WritesThroughOneViewWhileTheHostEvictsAreSeenConsistentlyByTheOthers()
    {
        const int pages = 24;
        int seed = FixedSeed(7031, nameof(WritesThroughOneViewWhileTheHostEvictsAreSeenConsistentlyByTheOthers));
        using Mirrors m = new Mirrors(pages, audit: false);
        int bad = 0;
        bool stop = false;
        Barrier start = new Barrier(4);
        List<string> messages = new List<string>();
        object gate = new object();
        void Fail(string s) { lock (gate) { bad++; if (messages.Count < 10) messages.Add(s); } }
        void CheckWords(int p, ulong* words, int count, string who)
        {
            for (int i = 0; i < count; i++)
            {
                ulong w = Volatile.Read(ref words[i]);
                if (w != 0 && (w >> 32) != (ulong)p + 1)
                    Fail(who + " read page " + p + " word " + i + " = " + w.ToString("x"));
            }
        }
        void Writer(int cpu, bool viaB, int iterations, int s)
        {
            KvmMachine.ThreadCpu = cpu;
            Random rng = new Random(s);
            start.SignalAndWait();
            for (int i = 0; !Volatile.Read(ref stop); i++)
            {
                int p = rng.Next(pages);
                Pfn f = viaB ? m.TouchB(p, true, cpu) : m.A.Touch(p, true, cpu);
                // The model of a guest store: it lands only in the frame still mapped there (hold a
                // reference so the frame cannot be recycled under the store).
                if (!m.A.Mm.Frames.TryGetRef(f))
                    continue;
                if (m.A.Space.TranslateFrame(m.A.Hva(p), out Pfn now) && now == f)
                {
                    ulong* d = m.Data(f);
                    for (int w = 0; w < 7; w++)
                        Volatile.Write(ref d[w], ((ulong)p + 1) << 32 | (uint)i);
                }
                m.A.Mm.Frames.PutRef(f);
                if (!viaB && rng.Next(4) == 0)
                {
                    Pfn r = m.TouchB(p, false, 3);
                    if (m.A.Mm.Frames.TryGetRef(r))
                    {
                        // The model reads after the touch, not through B's EPT: meanwhile the
                        // evictor may have unmapped r, freed it and had it reused for another page
                        // (the reference taken now holds the reuse, not p's frame). Only a frame B
                        // still maps at p, with the reference held, must hold p's words.
                        EptEntry leaf = m.LeafB(p);
                        if (leaf.IsPresent && leaf.LeafAddress(1).Pfn == r)
                            CheckWords(p, m.Data(r), 7, "B");
                        m.A.Mm.Frames.PutRef(r);
                    }
                }
            }
        }
        void Inspector(int iterations, int s)
        {
            KvmMachine.ThreadCpu = 3;
            Random rng = new Random(s);
            byte[] buf = new byte[56];
            start.SignalAndWait();
            for (int i = 0; !Volatile.Read(ref stop); i++)
            {
                int p = rng.Next(pages);
                FaultStatus st = m.View.TryRead(m.A.Hva(p) + DataOffset, buf);
                if (st != FaultStatus.Ok)
                {
                    Fail("view read " + st);
                    continue;
                }
                fixed (byte* b = buf)
                    CheckWords(p, (ulong*)b, 7, "inspector");
            }
        }
        void Evictor(int iterations, int s)
        {
            KvmMachine.ThreadCpu = 1;
            Random rng = new Random(s);
            start.SignalAndWait();
            for (int i = 0; i < iterations;)
            {
                int p = rng.Next(pages);
                if (!m.A.PrimaryFrame(p, out Pfn f))
                {
                    Thread.Yield();
                    continue;
                }
                i++;
                switch (rng.Next(4))
                {
                    case 0: m.A.Mm.TryToUnmap(f); break;
                    case 1: m.A.Mm.TryReclaim(f); break;
                    case 2: m.A.Space.Unmap(m.A.Hva(p), m.A.Hva(p + 1)); break;
                    default:
                        m.A.Space.Protect(m.A.Hva(p), m.A.Hva(p + 1), PageProt.User);
                        m.A.Space.Protect(m.A.Hva(p), m.A.Hva(p + 1), PageProt.User | PageProt.Write);
                        break;
                }
                // The invalidation completed, and only faults (installs) run concurrently: a view
                // that maps f at p now must have re-resolved it from a primary that maps it there.
                bool viewHasF = m.View.TryGetMapped(m.A.Hva(p), out Pfn v) && v == f;
                EptEntry leaf = m.LeafB(p);
                bool bHasF = leaf.IsPresent && leaf.LeafAddress(1).Pfn == f;
                if ((viewHasF || bHasF) && !(m.A.Space.TranslateFrame(m.A.Hva(p), out Pfn now) && now == f))
                    Fail("after the invalidation of page " + p + " a view still maps frame " + f.Value + " (inspector " + viewHasF + ", B " + bHasF + ")");
            }
        }
        Thread[] threads =
        {
            new Thread(() => Writer(0, false, 20000, seed + 1)),
            new Thread(() => Writer(2, true, 20000, seed + 2)),
            new Thread(() => Inspector(40000, seed + 3)),
            new Thread(() => { Evictor(5000, seed + 4); Volatile.Write(ref stop, true); }),
        };
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            t.Join();
        KvmMachine.ThreadCpu = 0;
        _out.WriteLine("populated " + m.View.PagesPopulated + ", view invalidations " + m.View.Invalidations + ", view retries " + m.View.Retries + ", foreign invalidations " + m.Shared.Invalidations + ", foreign retries " + m.Shared.Retries);
        Assert.True(bad == 0, "seed " + seed + ": " + bad + " problems: " + string.Join("; ", messages));
        Assert.Empty(m.Problems(pages));
        Assert.Equal(0L, m.A.Machine.Tlb.Violations);
        Assert.Equal(0, m.A.Machine.FreedAccessFailures);
        Assert.Equal(0, m.View.Sequence.InProgress);
        Assert.Equal(0, m.Shared.Sequence.InProgress);
    }

    /// <summary>
    /// Seed 004's race for the inspector: one read through the view (snapshot, resolve, locked check
    /// and install, copy) against TryToUnmap of the page, over every interleaving within the bound.
    /// In every schedule the view ends mapping nothing or what the primary maps, and the bytes it
    /// copied are the old page's or the new (zero) page's, never a freed frame's poison; in some
    /// schedule the invalidation lands between resolve and install and the view retries.
    /// </summary>
    [Fact]
    public void AnInvalidationBetweenResolveAndInstallMakesTheViewRetry()
    {
        int retried = 0;
        InterleavingExplorer.World World()
        {
            Mirrors m = new Mirrors(pages: 4, audit: false, memory: 2UL << 20);
            KvmMachine.ThreadCpu = 0;
            VirtAddr va = m.A.Hva(1);
            unsafe { *m.Data(m.A.Touch(1, true, cpu: 0)) = 0xABCD; }
            m.A.PrimaryFrame(1, out Pfn p);
            byte[] buf = new byte[8];
            FaultStatus status = FaultStatus.Ok;
            Action read = () => status = m.View.TryRead(va + DataOffset, buf);
            Action unmap = () => m.A.Mm.TryToUnmap(p);
            Func<string?> check = () =>
            {
                if (m.View.Retries > 0)
                    Interlocked.Increment(ref retried);
                if (status != FaultStatus.Ok)
                    return "view read failed: " + status;
                ulong seen = BitConverter.ToUInt64(buf);
                if (seen != 0xABCD && seen != 0)
                    return "view read " + seen.ToString("x") + " (neither the old page nor the new one)";
                List<string> problems = m.PageProblems(1);
                return problems.Count == 0 ? null : string.Join("; ", problems);
            };
            return new InterleavingExplorer.World(check, m, read, unmap) { Watches = new[] { m.A.Machine.FreedFrameWatch } };
        }
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(World, KvmMachine.BindThread);
        _out.WriteLine(r + "; schedules with a retry: " + retried);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
        Assert.True(r.Runs >= 20, "too few interleavings: " + r.Runs);
        Assert.True(retried > 0, "no schedule made the view retry");
    }

    /// <summary>The same race for B's foreign memslot: a fault of B against TryToUnmap of A's page.</summary>
    [Fact]
    public void AnInvalidationBetweenResolveAndInstallMakesTheForeignFaultRetry()
    {
        int retried = 0;
        InterleavingExplorer.World World()
        {
            Mirrors m = new Mirrors(pages: 4, audit: false, memory: 2UL << 20);
            KvmMachine.ThreadCpu = 0;
            m.A.Touch(1, true, cpu: 0);
            m.A.PrimaryFrame(1, out Pfn p);
            Action fault = () => m.EptB.HandleViolation(m.A.Gpa(1), false);
            Action unmap = () => m.A.Mm.TryToUnmap(p);
            Func<string?> check = () =>
            {
                if (m.Shared.Retries > 0)
                    Interlocked.Increment(ref retried);
                List<string> problems = m.PageProblems(1);
                return problems.Count == 0 ? null : string.Join("; ", problems);
            };
            return new InterleavingExplorer.World(check, m, fault, unmap) { Watches = new[] { m.A.Machine.FreedFrameWatch, m.A.Machine.FreedTableWatch } };
        }
        InterleavingExplorer.Result r = InterleavingExplorer.Explore(World, KvmMachine.BindThread);
        _out.WriteLine(r + "; schedules with a retry: " + retried);
        Assert.True(r.FirstFailure == null, r.FirstFailure);
        Assert.True(retried > 0, "no schedule made the foreign fault retry");
    }

    [Fact]
    public unsafe void DestroyingTheSourceReleasesEveryViewAndLeaksNoFrame()
    {
        using Mirrors m = new Mirrors(pages: 8);
        KvmMachine.ThreadCpu = 0;
        int freeBefore = m.A.Mm.Frames.BuddyFreeFrames;
        for (int p = 0; p < 8; p++)
        {
            *m.Data(m.A.Touch(p, true, cpu: 0)) = (ulong)p + 1;
            Assert.Equal((ulong)p + 1, m.ReadView(p));
            Assert.Equal((ulong)p + 1, *m.Data(m.TouchB(p, false)));
        }
        Pfn[] frames = new Pfn[8];
        for (int p = 0; p < 8; p++)
            Assert.True(m.A.PrimaryFrame(p, out frames[p]));
        m.A.Machine.ReuseFreedFramesAtOnce = true;
        for (int c = 0; c < 64; c++)
            m.A.Space.Deactivate(c);
        m.A.Space.Destroy();
        Assert.True(m.View.IsReleased);
        Assert.True(m.Shared.IsReleased);
        Assert.True(m.A.Ept.IsReleased);
        Assert.False(m.EptB.IsReleased);                 // B itself lives on
        for (int p = 0; p < 8; p++)
        {
            Assert.False(m.View.TryGetMapped(m.A.Hva(p), out _));
            Assert.False(m.LeafB(p).IsPresent);
            // No view holds a reference: every frame of A's RAM is free again.
            Assert.True(m.A.Mm.Frames.RefCountOf(frames[p]) <= 0, "frame " + frames[p].Value + " still referenced");
        }
        Assert.Equal(FaultStatus.Dead, m.View.TryRead(m.A.Hva(0), new byte[8]));
        Assert.Equal(FaultStatus.Dead, m.EptB.HandleViolation(m.A.Gpa(0), false));
        Assert.True(m.EptB.RemoveForeignMemslot(m.Shared, m.A.Space.Notifiers));
        Assert.Equal(FaultStatus.NoRegion, m.EptB.HandleViolation(m.A.Gpa(0), false));
        Assert.Null(MirrorView<MmHostPlatform>.Create(m.A.Machine.MmPlatform, m.A.Space, m.A.Space.Notifiers, EptBed.RamBase, 8));
        Assert.Equal(0L, m.A.Machine.Tlb.Violations);
    }

    [Fact]
    public unsafe void DestroyingAViewUnregistersItAndTheOthersStay()
    {
        using Mirrors m = new Mirrors(pages: 8);
        KvmMachine.ThreadCpu = 0;
        *m.Data(m.A.Touch(3, true, cpu: 0)) = 42;
        Assert.Equal(42UL, m.ReadView(3));
        int before = m.A.Space.Notifiers.Snapshot!.Items.Length;
        Assert.True(m.View.Destroy());
        Assert.True(m.View.IsReleased);
        Assert.False(m.View.TryGetMapped(m.A.Hva(3), out _));
        Assert.Equal(before - 1, m.A.Space.Notifiers.Snapshot!.Items.Length);
        Assert.False(m.View.Destroy());
        Assert.Equal(FaultStatus.Dead, m.View.TryRead(m.A.Hva(3), new byte[8]));
        // Removing B's foreign slot unregisters it and zaps its leaves; A's own EPT is untouched.
        Assert.Equal(42UL, *m.Data(m.TouchB(3, false)));
        Assert.True(m.EptB.RemoveForeignMemslot(m.Shared, m.A.Space.Notifiers));
        Assert.False(m.LeafB(3).IsPresent);
        Assert.Equal(before - 2, m.A.Space.Notifiers.Snapshot!.Items.Length);
        Assert.Equal(FaultStatus.NoRegion, m.EptB.HandleViolation(m.A.Gpa(3), false));
        Assert.Equal(42UL, *m.Data(m.A.Touch(3, false, cpu: 1)));
        // A frame the views referenced only through the primary: evicting it frees it.
        Assert.True(m.A.PrimaryFrame(3, out Pfn f));
        Assert.True(m.A.Mm.TryToUnmap(f));
        Assert.True(m.A.Mm.Frames.RefCountOf(f) <= 0);
        // A foreign slot may not overlap B's own slots, and vice versa.
        Assert.True(m.EptB.AddMemslot(new Memslot(new Gfn(100), 4, new VirtAddr(0x8000_0000), true)));
        Assert.Null(m.EptB.AddForeignMemslot(new Memslot(new Gfn(102), 4, EptBed.RamBase, true), m.A.Space, m.A.Space.Notifiers));
        ForeignMemslot<EptHostPlatform>? again = m.EptB.AddForeignMemslot(new Memslot(new Gfn(0), 8, EptBed.RamBase, true), m.A.Space, m.A.Space.Notifiers);
        Assert.NotNull(again);
        Assert.False(m.EptB.AddMemslot(new Memslot(new Gfn(4), 1, new VirtAddr(0x9000_0000), true)));
        // B's own teardown zaps the foreign leaves too (dirty bits to A's frames) and frees its tables.
        m.TouchB(5, true);
        Assert.True(m.LeafB(5).IsPresent);
        Assert.True(m.SpaceB.Notifiers.Unregister(m.EptB));
        Assert.True(m.EptB.IsReleased);
        Assert.True(m.A.PrimaryFrame(5, out Pfn five));
        Assert.True((m.A.Mm.Frames.FlagsOf(five) & FrameFlags.Dirty) != 0);
        Assert.True(m.EptB.RemoveForeignMemslot(again!, m.A.Space.Notifiers));
        Assert.Equal(0L, m.A.Machine.Tlb.Violations);
    }

    private int FixedSeed(int seed, string test)
    {
        string? env = TestSeed.FromEnvironment();
        int s = env != null ? int.Parse(env) : seed;
        _out.WriteLine("seed " + s + (env != null ? " (from " + TestSeed.Variable + ")" : " (fixed)") + "; replay: " + TestSeed.Variable + "=" + s + " dotnet test --filter " + test);
        return s;
    }
}
