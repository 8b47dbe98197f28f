using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The VM the aging benchmarks run on: 1 GiB of anonymous guest RAM (262,144 host pages) seen
/// through <see cref="Aliases"/> memslots at distinct guest-physical ranges (KVM allows aliased
/// slots), every page faulted in through <see cref="EptMmu{TPlatform}.HandleViolation"/> in every
/// slot, so the EPT holds <see cref="Aliases"/> × 262,144 4 KiB leaves. One aging pass over the
/// host range therefore touches that many leaves, which is what makes one pass (one iteration)
/// last well over 100 ms while each pass still starts from a fresh young pattern: the pattern is
/// restored in the iteration setup, outside the timed region. A further memslot of
/// <see cref="FaultPages"/> pages beyond the aged range is the concurrent faulter's.
/// </summary>
public sealed unsafe class AgingVm : IDisposable
{
    public const int RamPages = 262144;
    public const int ChunkPages = 512;
    public const int FaultPages = 8192;
    public static readonly VirtAddr RamBase = new VirtAddr(0x40_0000_0000);

    public readonly BenchMachine Machine;
    public readonly MemoryManager<BenchMmPlatform> Mm;
    public readonly AddressSpace<BenchMmPlatform> Space;
    public readonly EptMmu<BenchEptPlatform> Ept;
    public readonly int Aliases;
    /// <summary>The leaf tables in the order an aging pass visits them (2 MiB of host range at a time, then slot by slot).</summary>
    public readonly ulong** Tables;
    public readonly int TableCount;
    public readonly ulong FaultGfnBase;

    public AgingVm(int aliases)
    {
        Aliases = aliases;
        ulong frames = RamPages + FaultPages + 4096;
        int tablePages = (aliases + 1) * (RamPages / 512 + 2) + 64;
        Machine = new BenchMachine(frames * PageSizes.Size4K, cpus: 2, tablePages);
        Mm = new MemoryManager<BenchMmPlatform>(Machine.MmPlatform, Machine.FrameCount, 16, Machine.FrameCount);
        Mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        Space = Mm.CreateAddressSpace() ?? throw new InvalidOperationException("address space");
        ulong ramBytes = (ulong)(RamPages + FaultPages) * PageSizes.Size4K;
        if (!Space.AddRegion(Region.Anonymous(RamBase, ramBytes, PageProt.Write | PageProt.User)))
            throw new InvalidOperationException("ram region");
        Space.Activate(0);
        Space.Activate(1);
        Ept = EptMmu<BenchEptPlatform>.Create(Machine.EptPlatform, Space) ?? throw new InvalidOperationException("ept");
        for (int k = 0; k < aliases; k++)
        {
            if (!Ept.AddMemslot(new Memslot(new Gfn(AliasGfn(k, 0)), RamPages, RamBase, true)))
                throw new InvalidOperationException("memslot");
        }
        FaultGfnBase = AliasGfn(aliases, 0);
        if (!Ept.AddMemslot(new Memslot(new Gfn(FaultGfnBase), FaultPages, RamBase + (ulong)RamPages * PageSizes.Size4K, true)))
            throw new InvalidOperationException("fault memslot");
        Ept.RegisterWith(Space.Notifiers);
        Ept.Activate(0);
        Ept.Activate(1);

        // Fill in pass order so the leaf tables lie in memory in the order the pass reads them.
        TableCount = aliases * (RamPages / ChunkPages);
        Tables = (ulong**)NativeMemory.Alloc((nuint)TableCount, (nuint)sizeof(ulong*));
        int t = 0;
        for (int c = 0; c < RamPages / ChunkPages; c++)
        {
            for (int k = 0; k < aliases; k++)
            {
                for (int i = 0; i < ChunkPages; i++)
                    Fault(new Gfn(AliasGfn(k, c * ChunkPages + i)));
                Tables[t++] = LeafTable(AliasGfn(k, c * ChunkPages));
            }
        }
        for (int i = 0; i < FaultPages; i++)
            Fault(new Gfn(FaultGfnBase + (ulong)i));
    }

    /// <summary>Guest frame of host page <paramref name="page"/> in alias slot <paramref name="k"/> (slots 1 GiB apart).</summary>
    public static ulong AliasGfn(int k, int page) => ((ulong)k << 18) + (ulong)page;

    public long Leaves => (long)TableCount * 512;

    public VirtAddr Hva(int page) => RamBase + (ulong)page * PageSizes.Size4K;

    public GuestPhysAddr FaultGpa(int i) => new Gfn(FaultGfnBase + (ulong)(i % FaultPages)).Address;

    private void Fault(Gfn gfn)
    {
        FaultStatus s = Ept.HandleViolation(gfn.Address, true);
        if (s != FaultStatus.Ok)
            throw new InvalidOperationException("fill: EPT fault failed: " + s);
    }

    private ulong* LeafTable(ulong gfn)
    {
        GuestPhysAddr start = new Gfn(gfn).Address;
        int n = 0;
        ulong* first = null;
        foreach (EptSlot s in new EptWalker<BenchEptPlatform>(Ept.Platform, Ept.Root, start, new GuestPhysAddr(start.Value + PageSizes.Size2M)))
        {
            if (s.Level != 1 || s.Pointer != (n == 0 ? s.Pointer : first + n))
                throw new InvalidOperationException("fill: expected one table of 4 KiB leaves");
            if (n == 0)
                first = s.Pointer;
            n++;
        }
        if (n != 512 || ((ulong)first & 4095) != 0)
            throw new InvalidOperationException("fill: expected 512 leaves, got " + n);
        return first;
    }

    /// <summary>
    /// Every <paramref name="every"/>-th leaf (in pass order) accessed, the others not, as vCPUs
    /// would leave them. Plain stores: nothing else writes these leaves while it runs.
    /// </summary>
    public void SetYoung(int every)
    {
        int phase = 0;
        for (int t = 0; t < TableCount; t++)
        {
            ulong* p = Tables[t];
            for (int i = 0; i < 512; i++)
            {
                ulong v = p[i];
                p[i] = phase == 0 ? v | EptEntry.Accessed : v & ~EptEntry.Accessed;
                if (++phase == every)
                    phase = 0;
            }
        }
    }

    /// <summary>Number of accessed leaves (checks that a pass did its job).</summary>
    public long CountYoung()
    {
        long n = 0;
        for (int t = 0; t < TableCount; t++)
        {
            for (int i = 0; i < 512; i++)
                n += (long)((Tables[t][i] & EptEntry.Accessed) >> 8);
        }
        return n;
    }

    /// <summary>
    /// The aging pass: the fast-only (lockless) notifier call once per 2 MiB of the host range, as a
    /// primary-MMU aging walk issues it (one call per page-middle directory).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool AgePass()
    {
        bool young = false;
        for (int c = 0; c < RamPages; c += ChunkPages)
            young |= Ept.TestClearYoungFastOnly(Space, Hva(c), Hva(c + ChunkPages), true);
        return young;
    }

    /// <summary>
    /// Contrast: the same pass the way a shadow MMU without lockless aging does it, each call under
    /// the VM's MMU lock: the lock EptMmu's fault path takes for its check and install.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool AgePassUnderMmuLock()
    {
        bool young = false;
        for (int c = 0; c < RamPages; c += ChunkPages)
        {
            MmuLock<BenchEptPlatform>.Lock(Ept);
            young |= Ept.ClearYoung(Space, Hva(c), Hva(c + ChunkPages));
            MmuLock<BenchEptPlatform>.Unlock(Ept);
        }
        return young;
    }

    /// <summary>Number of 2 MiB chunks of the host range (one aging notifier call each).</summary>
    public const int Chunks = RamPages / ChunkPages;

    /// <summary>The aging notifier call for chunk <paramref name="c"/> (2 MiB of host range, every alias slot).</summary>
    public void AgeChunk(int c) => Ept.TestClearYoungFastOnly(Space, Hva(c * ChunkPages), Hva((c + 1) * ChunkPages), true);

    /// <summary>The same call under the VM's MMU lock (the contrast).</summary>
    public void AgeChunkUnderMmuLock(int c)
    {
        MmuLock<BenchEptPlatform>.Lock(Ept);
        Ept.ClearYoung(Space, Hva(c * ChunkPages), Hva((c + 1) * ChunkPages));
        MmuLock<BenchEptPlatform>.Unlock(Ept);
    }

    /// <summary>The floor over the leaves <see cref="AgeChunk"/> would visit.</summary>
    public void FloorChunk(int c)
    {
        ulong** tables = Tables + (long)c * Aliases;
        for (int t = 0; t < Aliases; t++)
        {
            ulong* p = tables[t];
            for (int i = 0; i < 512; i++)
            {
                if ((Volatile.Read(ref p[i]) & EptEntry.Accessed) != 0)
                    Interlocked.And(ref p[i], ~EptEntry.Accessed);
            }
        }
    }

    /// <summary>The atomic AND loop over the leaves <see cref="AgeChunk"/> would visit.</summary>
    public void AndChunk(int c)
    {
        ulong** tables = Tables + (long)c * Aliases;
        for (int t = 0; t < Aliases; t++)
        {
            ulong* p = tables[t];
            for (int i = 0; i < 512; i++)
                Interlocked.And(ref p[i], ~EptEntry.Accessed);
        }
    }

    /// <summary>The floor of a correct lockless pass: a plain scan of the same leaves, one atomic AND per accessed leaf.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void FloorScanAndClear()
    {
        ulong** tables = Tables;
        for (int t = 0; t < TableCount; t++)
        {
            ulong* p = tables[t];
            for (int i = 0; i < 512; i++)
            {
                if ((Volatile.Read(ref p[i]) & EptEntry.Accessed) != 0)
                    Interlocked.And(ref p[i], ~EptEntry.Accessed);
            }
        }
    }

    /// <summary>The floor when every leaf is accessed: one atomic AND per leaf, nothing else.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void AtomicAndLoop()
    {
        ulong** tables = Tables;
        for (int t = 0; t < TableCount; t++)
        {
            ulong* p = tables[t];
            for (int i = 0; i < 512; i++)
                Interlocked.And(ref p[i], ~EptEntry.Accessed);
        }
    }

    public void Dispose()
    {
        NativeMemory.Free(Tables);
        Machine.Dispose();
    }
}

/// <summary>
/// EptMmu's own MMU lock, reached through its private LockMmu/UnlockMmu (the benchmark's global-lock
/// contrast must contend on exactly the lock the fault path takes; kvm/ exposes no such entry point).
/// </summary>
internal static class MmuLock<TPlatform> where TPlatform : struct, IEptPlatform
{
    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "LockMmu")]
    public static extern void Lock(EptMmu<TPlatform> ept);

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "UnlockMmu")]
    public static extern void Unlock(EptMmu<TPlatform> ept);
}
