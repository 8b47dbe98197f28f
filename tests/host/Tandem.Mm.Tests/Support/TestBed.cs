using System;
using Tandem.Mm;

namespace Tandem.Mm.Tests;

/// <summary>A machine, a memory manager and one address space with an anonymous window.</summary>
public sealed class TestBed : IDisposable
{
    public static readonly VirtAddr WindowBase = new VirtAddr(0x4000_0000);

    public readonly HostMachine Machine;
    public readonly MemoryManager<HostPlatform> Mm;
    public readonly AddressSpace<HostPlatform> Space;
    public readonly Region Window;

    public TestBed(int windowPages = 64, ulong memory = 16UL << 20, int cpus = 4, PageProt prot = PageProt.Write | PageProt.User)
    {
        Machine = new HostMachine(memory, cpus);
        Mm = Machine.CreateManager();
        Space = Mm.CreateAddressSpace()!;
        Window = Region.Anonymous(WindowBase, (ulong)windowPages * PageSizes.Size4K, prot);
        if (!Space.AddRegion(Window))
            throw new InvalidOperationException("window");
        for (int c = 0; c < cpus; c++)
            Space.Activate(c);
    }

    public VirtAddr Page(int i) => WindowBase + (ulong)i * PageSizes.Size4K;

    public RecordingSecondaryMmu AddSecondary(bool lockless = true)
    {
        RecordingSecondaryMmu s = new RecordingSecondaryMmu(Space, WindowBase, (int)((Window.End - Window.Start) >> 12));
        Space.Notifiers.Register(s, lockless ? MmuNotifierFlags.LocklessAging : MmuNotifierFlags.None);
        return s;
    }

    /// <summary>The CPU's page walker touching page <paramref name="i"/> (sets A, and D on a write); false where the CPU would fault.</summary>
    public unsafe bool HardwareTouch(int i, bool write, out Pfn frame)
    {
        HostPlatform p = Machine.Platform;
        bool ok = Tandem.Testing.HardwareWalker.TouchPrimary(pa => (IntPtr)p.PhysToVirt(pa), Space.Root, Page(i), write, out PhysAddr used);
        frame = used.Pfn;
        return ok;
    }

    public void Dispose() => Machine.Dispose();
}
