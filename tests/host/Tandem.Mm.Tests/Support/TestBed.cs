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

    public void Dispose() => Machine.Dispose();
}
