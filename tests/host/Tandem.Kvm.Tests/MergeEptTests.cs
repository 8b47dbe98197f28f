using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests;

/// <summary>
/// Page merging seen through EPT (docs/reclaim.md, "Page merging"): two VMs over one memory
/// manager (the EptBed's VM and a second one built the same way), the merge scanner, and guest
/// accesses through the caching-TLB model. VM 1 runs on CPUs 0-1, VM 2 on CPUs 2-3 (the model's
/// per-CPU caches are keyed by guest frame only).
/// </summary>
public unsafe class MergeEptTests
{
    private readonly ITestOutputHelper _out;

    public MergeEptTests(ITestOutputHelper output) { _out = output; }

    private sealed class SecondVm
    {
        public readonly AddressSpace<MmHostPlatform> Space;
        public readonly EptMmu<EptHostPlatform> Ept;
        public readonly Memslot Slot;

        public SecondVm(EptBed b)
        {
            Space = b.Mm.CreateAddressSpace()!;
            Assert.True(Space.AddRegion(Region.Anonymous(EptBed.RamBase, (ulong)b.Pages * PageSizes.Size4K, PageProt.Write | PageProt.User)));
            for (int c = 0; c < b.Machine.Cpus; c++)
                Space.Activate(c);
            Ept = EptMmu<EptHostPlatform>.Create(b.Machine.EptPlatform, Space)!;
            Slot = new Memslot(new Gfn(0), (ulong)b.Pages, EptBed.RamBase, true);
            Assert.True(Ept.AddMemslot(Slot));
            Ept.RegisterWith(Space.Notifiers);
        }

        public Pfn Touch(EptBed b, int page, bool write, int cpu)
        {
            GuestPhysAddr gpa = b.Gpa(page);
            for (int i = 0; ; i++)
            {
                if (b.Machine.Tlb.Access(Ept, cpu, gpa, write, out Pfn frame) != EptTlbModel.Outcome.EptViolation)
                    return frame;
                Assert.Equal(FaultStatus.Ok, Ept.HandleViolation(gpa, write));
                Assert.True(i < 1000, "EPT fault livelock");
            }
        }
    }

    /// <summary>The invariant of merging: no EPT leaf with write access maps a merged frame.</summary>
    private static List<string> WritableMerged(EptBed b, EptMmu<EptHostPlatform> ept)
    {
        List<string> problems = new List<string>();
        foreach (EptSlot s in new EptWalker<EptHostPlatform>(ept.Platform, ept.Root, b.Gpa(0), b.Gpa(b.Pages)))
        {
            if (s.Level != 1 || !s.Value.IsWritable)
                continue;
            Pfn f = s.Value.LeafAddress(1).Pfn;
            if ((b.Mm.Frames.FlagsOf(f) & FrameFlags.Merged) != 0)
                problems.Add("EPT leaf at gpa " + s.Address.Value.ToString("x") + " is writable and maps merged frame " + f.Value);
        }
        return problems;
    }

    private static void Fill(EptBed b, Pfn frame, byte value)
    {
        // Bytes 8.. (the TLB model keeps its gfn tag in the first word).
        new Span<byte>(b.Machine.FrameBytes(frame) + 8, 4096 - 8).Fill(value);
    }

    [Fact]
    public void GuestWriteThroughEptBreaksSharingAndTheOtherVmKeepsTheOldContents()
    {
        KvmMachine.ThreadCpu = 0;
        using EptBed b = new EptBed(pages: 8);
        SecondVm vm2 = new SecondVm(b);
        MergeScanner<MmHostPlatform> scanner = new MergeScanner<MmHostPlatform>(b.Mm, 256);
        for (int i = 0; i < b.Pages; i++)
        {
            Fill(b, b.Touch(i, true, 0), (byte)(i + 1));
            Fill(b, vm2.Touch(b, i, true, 2), (byte)(i + 1));
        }
        scanner.ScanStep(4 * b.Pages);
        Assert.Equal(b.Pages, scanner.Stats.Merges);
        Assert.True(b.PrimaryFrame(3, out Pfn shared));
        Assert.True(vm2.Space.TranslateFrame(b.Hva(3), out Pfn shared2));
        Assert.Equal(shared, shared2);
        // Both guests read it through EPT: read-only leaves of the shared frame.
        Assert.Equal(shared, b.Touch(3, false, 0));
        Assert.Equal(shared, vm2.Touch(b, 3, false, 2));
        Assert.False(b.Leaf(3).IsWritable);
        Assert.Empty(WritableMerged(b, b.Ept));
        Assert.Empty(WritableMerged(b, vm2.Ept));
        // VM 1 writes: EPT violation -> ResolveForSecondary(write) -> copy-on-write.
        Pfn mine = b.Touch(3, true, 0);
        Assert.NotEqual(shared, mine);
        Assert.True(b.Leaf(3).IsWritable);
        Assert.Equal(0, (int)(b.Mm.Frames.FlagsOf(mine) & (FrameFlags.Merged | FrameFlags.CopyOnWrite)));
        Fill(b, mine, 0xEE);
        // VM 2 still sees the shared frame and the old contents.
        Assert.Equal(shared, vm2.Touch(b, 3, false, 2));
        Assert.Equal(4, b.Machine.FrameBytes(shared)[100]);
        Assert.Equal(1, b.Mm.Frames.MapCountOf(shared));
        Assert.Equal(1, scanner.Stats.CowBreaks);
        Assert.Empty(b.Problems(true));
        Assert.Empty(WritableMerged(b, b.Ept));
        Assert.Empty(WritableMerged(b, vm2.Ept));
        Assert.True(b.Machine.Tlb.Violations == 0, string.Join("\n", b.Machine.Tlb.Messages));
    }

    /// <summary>
    /// Merging while guests write: vCPUs of both VMs read and write (the model tags each page with
    /// its guest frame, so the same page of both VMs has the same contents and keeps merging), the
    /// scanner merges and, after every step, checks that no EPT leaf with write access maps a merged
    /// frame. The TLB model checks every access (no freed frame, no foreign data).
    /// </summary>
    [Fact]
    public void MergingWhileGuestsWriteNeverLeavesAWritableMappingOfAMergedFrame()
    {
        int seed = Tandem.Testing.TestSeed.FromEnvironment() is string s ? int.Parse(s) : 777;
        _out.WriteLine("seed " + seed + "; replay: TANDEM_SEED=" + seed + " dotnet test --filter " + nameof(MergingWhileGuestsWriteNeverLeavesAWritableMappingOfAMergedFrame));
        KvmMachine.ThreadCpu = 0;
        using EptBed b = new EptBed(pages: 64, strict: false);
        SecondVm vm2 = new SecondVm(b);
        MergeScanner<MmHostPlatform> scanner = new MergeScanner<MmHostPlatform>(b.Mm, 256);
        ConcurrentQueue<string> errors = new();
        int stop = 0;
        void Vcpu(int cpu)
        {
            KvmMachine.ThreadCpu = cpu;
            Random rng = new Random(seed * 17 + cpu);
            try
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    int page = rng.Next(b.Pages);
                    bool write = rng.Next(4) == 0;
                    if (cpu < 2)
                        b.Touch(page, write, cpu);
                    else
                        vm2.Touch(b, page, write, cpu);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e.ToString());
                Volatile.Write(ref stop, 1);
            }
        }
        Thread[] vcpus = new Thread[4];
        for (int c = 0; c < 4; c++)
        {
            int cpu = c;
            vcpus[c] = new Thread(() => Vcpu(cpu));
            vcpus[c].Start();
        }
        Thread scan = new Thread(() =>
        {
            KvmMachine.ThreadCpu = 0;
            try
            {
                for (int step = 0; step < 600 && Volatile.Read(ref stop) == 0; step++)
                {
                    scanner.ScanStep(16);
                    // Between steps no merge is in flight: every merged frame is read-only everywhere.
                    foreach (string p in WritableMerged(b, b.Ept))
                        errors.Enqueue(p);
                    foreach (string p in WritableMerged(b, vm2.Ept))
                        errors.Enqueue(p);
                    Thread.Yield();
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e.ToString());
                Volatile.Write(ref stop, 1);
            }
        });
        scan.Start();
        scan.Join();
        Volatile.Write(ref stop, 1);
        foreach (Thread t in vcpus)
            t.Join();
        MergeStats st = scanner.Stats;
        _out.WriteLine("merges " + st.Merges + " (zero " + st.ZeroMerges + "), cow breaks " + st.CowBreaks + ", aborted " + st.AbortedChanged
            + ", mismatches " + st.CompareMismatches + ", tlb hits " + b.Machine.Tlb.Hits + ", walks " + b.Machine.Tlb.Walks);
        Assert.True(errors.IsEmpty, string.Join("\n", errors));
        Assert.True(b.Machine.Tlb.Violations == 0, string.Join("\n", b.Machine.Tlb.Messages));
        Assert.Empty(b.Problems(false));
        Assert.True(st.Merges > 0 && st.CowBreaks > 0, "no merge or no copy-on-write: no coverage");
    }
}
