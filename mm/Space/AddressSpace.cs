using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// An address space: 4-level primary page tables, a region map, the notifiers of the secondary MMUs
/// that mirror it, and the set of CPUs that may cache its translations.
/// </summary>
/// <remarks>
/// Locks (docs/locking.md): <c>_regionLock</c> (region-map writers) → <c>_ptLock</c> (page-table
/// contents) → reverse-map lock → per-CPU frame cache → zone lock. No lock of this type is held
/// while a notifier runs. Page-table pages are freed only by <see cref="Destroy"/>, so lockless
/// walks are safe while the address space lives.
/// </remarks>
public sealed unsafe partial class AddressSpace<TPlatform> : IAddressSpace where TPlatform : struct, IMmPlatform
{
    private readonly MemoryManager<TPlatform> _mm;
    private readonly TPlatform _platform;
    private readonly int _id;
    private SpinLock _ptLock;
    private SpinLock _regionLock;
    private RegionMap _regions = RegionMap.Empty;
    private ulong _cpuMask;
    private int _userfaultEvents;
    private int _dead;

    /// <summary>Physical address of the PML4 (the CR3 value without flags).</summary>
    public readonly PhysAddr Root;

    /// <summary>The notifiers of the secondary MMUs that follow this address space (O(1) from here).</summary>
    public readonly MmuNotifierList<TPlatform> Notifiers;

    internal AddressSpace(MemoryManager<TPlatform> mm, int id, Pfn root)
    {
        _mm = mm;
        _platform = mm.Platform;
        _id = id;
        Root = root.Address;
        mm.Frames.SetFlags(root, FrameFlags.PageTable);
        ZeroFrame(root);
        Notifiers = new MmuNotifierList<TPlatform>(_platform, this);
    }

    /// <inheritdoc/>
    public int Id { get { return _id; } }

    /// <summary>The memory manager this address space belongs to.</summary>
    public MemoryManager<TPlatform> Manager { get { return _mm; } }

    /// <summary>The current region map (a snapshot; never changes after it was read).</summary>
    public RegionMap Regions
    {
        // Acquire; pairs with the Volatile.Write in AddRegion/RemoveRegion.
        get { return Volatile.Read(ref _regions); }
    }

    /// <summary>CPUs that may hold translations of this address space.</summary>
    public ulong CpuMask { get { return Volatile.Read(ref _cpuMask); } }

    /// <summary>Marks <paramref name="cpu"/> as using this address space (call before loading CR3 there).</summary>
    public void Activate(int cpu)
    {
        // Full barrier before the CPU loads CR3; pairs with the Volatile.Read of _cpuMask in
        // FlushRange, which comes after the Interlocked clear of the entry: either the flusher
        // sees this CPU, or this CPU's first walk sees the cleared entry.
        Interlocked.Or(ref _cpuMask, 1UL << cpu);
    }

    /// <summary>Removes <paramref name="cpu"/> from the mask (after it loaded another CR3 and flushed).</summary>
    public void Deactivate(int cpu)
    {
        // Atomic RMW against concurrent Activate on other CPUs.
        Interlocked.And(ref _cpuMask, ~(1UL << cpu));
    }

    /// <summary>Reads the leaf that translates <paramref name="address"/> without locks.
    /// False when nothing is mapped.</summary>
    public bool Translate(VirtAddr address, out PageTableEntry leaf, out int level)
    {
        PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, address, address + 1);
        w.MoveNext();
        PteSlot s = w.Current;
        leaf = s.Value;
        level = s.Level;
        return s.Value.IsPresent;
    }

    /// <summary>The 4 KiB frame that <paramref name="address"/> translates to now, if any.</summary>
    public bool TranslateFrame(VirtAddr address, out Pfn frame)
    {
        if (!Translate(address, out PageTableEntry leaf, out int level))
        {
            frame = default;
            return false;
        }
        ulong offset = address.Value & (PageSizes.ForLevel(level) - 1);
        frame = new PhysAddr(leaf.LeafAddress(level).Value + offset).Pfn;
        return true;
    }

    private void FlushRange(VirtAddr start, VirtAddr end)
    {
        // The mask is read after the Interlocked clear of the entries (full barrier); pairs with
        // Interlocked.Or in Activate.
        _platform.FlushTlb(new TlbFlushRequest(_id, Root, start, end, Volatile.Read(ref _cpuMask)));
    }

    private void ZeroFrame(Pfn frame)
    {
        new System.Span<byte>(_platform.PhysToVirt(frame.Address), (int)PageSizes.Size4K).Clear();
    }

    /// <summary>
    /// Tears the address space down: notifiers get <see cref="IMmuNotifier.Release"/>, every
    /// mapping goes, the page-table pages are freed. The object must not be used afterwards.
    /// </summary>
    public void Destroy()
    {
        if (Interlocked.Exchange(ref _dead, 1) != 0)
            return;
        Notifiers.ReleaseAll(this);
        Unmap(new VirtAddr(0), new VirtAddr(UserTop));
        _regionLock.Enter(_platform);
        RegionMap old = _regions;
        Volatile.Write(ref _regions, RegionMap.Empty);
        _regionLock.Exit();
        _platform.DeferFree(old);
        FreeTable(Root, 4);
    }

    /// <summary>End of the lower canonical half: regions live below it.</summary>
    public const ulong UserTop = 1UL << 47;

    private void FreeTable(PhysAddr table, int level)
    {
        ulong* entries = (ulong*)_platform.PhysToVirt(table);
        if (level > 1)
        {
            for (int i = 0; i < 512; i++)
            {
                PageTableEntry e = PteOps.Read(entries + i);
                if (e.IsPresent && !e.IsLeaf(level))
                    FreeTable(e.TableAddress, level - 1);
            }
        }
        _mm.Frames.ClearFlags(table.Pfn, FrameFlags.PageTable);
        _mm.Frames.PutRef(table.Pfn);
    }
}
