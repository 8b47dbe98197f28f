using System;
using System.Collections.Generic;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Tests;

/// <summary>A machine, mm, one VM address space with anonymous guest RAM, and its EPT over one memslot (gfn 0 → RamBase).</summary>
public sealed unsafe class EptBed : IDisposable
{
    public static readonly VirtAddr RamBase = new VirtAddr(0x4000_0000);

    public readonly KvmMachine Machine;
    public readonly MemoryManager<MmHostPlatform> Mm;
    public readonly AddressSpace<MmHostPlatform> Space;
    public readonly Region Ram;
    public readonly Memslot Slot;
    public readonly EptMmu<EptHostPlatform> Ept;
    public readonly EptAuditor? Auditor;
    public readonly int Pages;

    public EptBed(int pages = 64, ulong memory = 16UL << 20, int cpus = 4, bool audit = true, bool strict = true, int tablePages = 4096)
    {
        Pages = pages;
        Machine = new KvmMachine(memory, cpus, tablePages);
        Mm = new MemoryManager<MmHostPlatform>(Machine.MmPlatform, Machine.FrameCount, KvmMachine.FirstUsableFrame, Machine.FrameCount);
        Mm.DropAnonymousWithoutSwap = true;   // the bed models eviction without swap as dropping
        Machine.Frames = Mm.Frames;
        Space = Mm.CreateAddressSpace()!;
        Ram = Region.Anonymous(RamBase, (ulong)pages * PageSizes.Size4K, PageProt.Write | PageProt.User);
        if (!Space.AddRegion(Ram))
            throw new InvalidOperationException("ram region");
        for (int c = 0; c < cpus; c++)
            Space.Activate(c);
        Ept = EptMmu<EptHostPlatform>.Create(Machine.EptPlatform, Space)!;
        Slot = new Memslot(new Gfn(0), (ulong)pages, RamBase, true);
        if (!Ept.AddMemslot(Slot))
            throw new InvalidOperationException("memslot");
        Ept.RegisterWith(Space.Notifiers);
        if (audit)
        {
            Auditor = new EptAuditor(this, strict);
            Space.Notifiers.Register(Auditor, MmuNotifierFlags.LocklessAging);
        }
        Machine.Tlb.FrameLive = f => Mm.Frames.RefCountOf(f) > 0;
    }

    public GuestPhysAddr Gpa(int page) => new GuestPhysAddr((ulong)page * PageSizes.Size4K);

    public VirtAddr Hva(int page) => RamBase + (ulong)page * PageSizes.Size4K;

    /// <summary>A guest access by a vCPU on <paramref name="cpu"/>: EPT violations are handled and retried. Returns the frame used.</summary>
    public Pfn Touch(int page, bool write, int cpu = 0)
    {
        for (int i = 0; ; i++)
        {
            if (Machine.Tlb.Access(Ept, cpu, Gpa(page), write, out Pfn frame) != EptTlbModel.Outcome.EptViolation)
                return frame;
            FaultStatus status = Ept.HandleViolation(Gpa(page), write);
            if (status != FaultStatus.Ok)
                throw new InvalidOperationException("EPT fault failed: " + status);
            if (i > 1000)
                throw new InvalidOperationException("EPT fault livelock");
        }
    }

    public EptTlbModel.Outcome TryAccess(int page, bool write, int cpu, out Pfn frame) => Machine.Tlb.Access(Ept, cpu, Gpa(page), write, out frame);

    public EptWalker<EptHostPlatform> Leaves() => new EptWalker<EptHostPlatform>(Ept.Platform, Ept.Root, Gpa(0), Gpa(Pages));

    /// <summary>The EPT leaf of a page (Empty if none).</summary>
    public EptEntry Leaf(int page)
    {
        foreach (EptSlot s in new EptWalker<EptHostPlatform>(Ept.Platform, Ept.Root, Gpa(page), Gpa(page + 1)))
            return s.Value;
        return EptEntry.Empty;
    }

    public bool PrimaryFrame(int page, out Pfn frame) => Space.TranslateFrame(Hva(page), out frame);

    /// <summary>Invariant 1 over the whole EPT: no leaf maps a free frame; strict: every leaf maps what the primary maps now.</summary>
    public List<string> Problems(bool strict)
    {
        List<string> problems = new List<string>();
        foreach (EptSlot s in Leaves())
        {
            for (ulong off = 0; off < s.Size; off += PageSizes.Size4K)
            {
                GuestPhysAddr gpa = new GuestPhysAddr(s.Address.Value + off);
                Pfn f = new PhysAddr(s.Value.LeafAddress(s.Level).Value + off).Pfn;
                VirtAddr hva = Slot.HostAddressOf(gpa.Gfn);
                if (Mm.Frames.RefCountOf(f) <= 0)
                    problems.Add("EPT maps gpa " + gpa.Value.ToString("x") + " to freed frame " + f.Value);
                if (!strict)
                    continue;
                if (!Space.Translate(hva, out PageTableEntry pte, out int _) || !Space.TranslateFrame(hva, out Pfn primary))
                    problems.Add("EPT maps gpa " + gpa.Value.ToString("x") + " -> " + f.Value + " but the primary entry is gone");
                else if (primary != f)
                    problems.Add("EPT maps gpa " + gpa.Value.ToString("x") + " -> " + f.Value + " but the primary maps " + primary.Value);
                else if (s.Value.IsWritable && !pte.IsWritable)
                    problems.Add("EPT writable at gpa " + gpa.Value.ToString("x") + " but the primary is read-only");
            }
        }
        return problems;
    }

    /// <summary>A host CPU's page walker touching guest page <paramref name="page"/> through its host mapping (primary A, and D on a write).</summary>
    public bool HostTouch(int page, bool write, out Pfn frame)
    {
        MmHostPlatform p = Machine.MmPlatform;
        bool ok = Tandem.Testing.HardwareWalker.TouchPrimary(pa => (IntPtr)p.PhysToVirt(pa), Space.Root, Hva(page), write, out PhysAddr used);
        frame = used.Pfn;
        return ok;
    }

    /// <summary>The vCPU's hardware on <paramref name="cpu"/>: one guest access through the TLB model (walks set EPT A/D); no fault handling.</summary>
    public bool GuestTouch(int page, bool write, int cpu) => Machine.Tlb.Access(Ept, cpu, Gpa(page), write, out Pfn _) != EptTlbModel.Outcome.EptViolation;

    public void Dispose() => Machine.Dispose();
}
