using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// The EPT shadow of one VM: a secondary MMU over the VM's host address space (compare KVM's TDP
/// MMU). It registers as an <see cref="IMmuNotifier"/> on that address space and keeps the EPT a
/// subset of the primary page tables, as a TLB is: a guest frame is mapped in EPT only while the
/// host virtual page behind it is mapped by the primary MMU, to the same frame (invariant 1).
/// </summary>
/// <remarks>
/// <para>Concurrency (docs/ept.md, docs/locking.md "EPT shadow"):</para>
/// <list type="bullet">
/// <item>The MMU lock (<c>_mmuLock</c>) protects the invalidation sequence, the structure of the
/// tables (empty → table pointer) and leaf installs by faults. Faults hold it for the check and the
/// install only, never across the primary-MMU resolve, and never while waiting for a TLB flush.</item>
/// <item>Zapping (invalidation) and aging take no lock: leaves are read with
/// <see cref="EptOps.Read"/> and changed with <see cref="EptOps.CompareExchange"/>, because the
/// CPU sets A/D bits concurrently and a fault may turn a 2 MiB leaf into a table meanwhile.</item>
/// <item>Lifetimes. A memslot being removed stays visible to invalidations (marked invalid for
/// faults) until its leaves are zapped and flushed. Table pages are freed only by
/// <see cref="Release"/>: it refuses faults, zaps every leaf, flushes, marks the tables gone and
/// waits for a grace period (<c>_walkers</c>) that every lockless walker holds while it walks;
/// only then are the pages freed. A walker that sees the tables gone walks nothing.</item>
/// </list>
/// </remarks>
public sealed unsafe partial class EptMmu<TPlatform> : IMmuNotifier, IBitmapAgingNotifier where TPlatform : struct, IEptPlatform
{
    /// <summary>Guest-physical space covered by a 4-level EPT (SDM Vol. 3C, 29.3.2: 48-bit GPA).</summary>
    public const ulong GuestPhysLimit = 1UL << 48;

    private readonly TPlatform _platform;
    private readonly IAddressSpace _space;
    private readonly InvalidationSequence _seq = new InvalidationSequence();
    private readonly GracePeriod _walkers = new GracePeriod();
    private readonly PhysAddr _root;
    private readonly ulong _eptPointer;
    private Tandem.Mm.SpinLock _mmuLock;
    private MemslotMap _slots = MemslotMap.Empty;
    private ulong _cpuMask;
    private int _dead;
    private long _faultRetries;

    private EptMmu(TPlatform platform, IAddressSpace space, PhysAddr root)
    {
        _platform = platform;
        _space = space;
        _root = root;
        // EPTP (SDM Vol. 3C, 25.6.11): bits 2:0 memory type of the paging structures (6 = WB),
        // bits 5:3 page-walk length minus one (3 = 4 levels), bit 6 enables the accessed and
        // dirty flags (SDM 29.3.5), bits 51:12 the PML4 table.
        _eptPointer = root.Value | (ulong)EptMemoryType.WriteBack | (3UL << 3) | (1UL << 6);
    }

    /// <summary>
    /// Creates the EPT of a VM whose guest RAM lives in <paramref name="space"/>. Null when no table
    /// page is left for the root. The caller then registers it (<see cref="RegisterWith{TMm}"/>).
    /// </summary>
    public static EptMmu<TPlatform>? Create(TPlatform platform, IAddressSpace space)
    {
        if (!platform.AllocateTable(out PhysAddr root, out ulong* _))
            return null;
        return new EptMmu<TPlatform>(platform, space, root);
    }

    /// <summary>
    /// Registers this EPT on the address space's notifier list, declaring lockless (fast-only)
    /// aging: <see cref="TestClearYoungFastOnly"/> never takes or tries a lock (seed 001). False
    /// when the address space is dying.
    /// </summary>
    public bool RegisterWith<TMm>(MmuNotifierList<TMm> notifiers) where TMm : struct, IMmPlatform
    {
        return notifiers.Register(this, MmuNotifierFlags.LocklessAging);
    }

    /// <summary>True once <see cref="Release"/> ran: faults fail with <c>Dead</c>, nothing is mapped.</summary>
    public bool IsReleased { get { return Volatile.Read(ref _dead) != 0; } }

    /// <summary>The EPT pointer to load into the VMCS of every vCPU of this VM.</summary>
    public ulong EptPointer { get { return _eptPointer; } }

    /// <summary>Physical address of the EPT PML4.</summary>
    public PhysAddr Root { get { return _root; } }

    /// <summary>The address space this EPT mirrors.</summary>
    public IAddressSpace Space { get { return _space; } }

    /// <summary>The platform.</summary>
    public TPlatform Platform { get { return _platform; } }

    /// <summary>The invalidation sequence (read-only use: statistics and tests).</summary>
    public InvalidationSequence Sequence { get { return _seq; } }

    /// <summary>Number of times a fault dropped what it resolved and started again.</summary>
    public long FaultRetries { get { return Volatile.Read(ref _faultRetries); } }

    /// <summary>The current memslot map (a snapshot).</summary>
    public MemslotMap Memslots
    {
        // Acquire; pairs with the Volatile.Write in AddMemslot/RemoveMemslot/Release.
        get { return Volatile.Read(ref _slots); }
    }

    /// <summary>True while some context holds the MMU lock (for assertions and tests).</summary>
    public bool IsMmuLockHeld { get { return _mmuLock.IsHeld; } }

    /// <summary>CPUs that may hold cached translations of this EPT.</summary>
    public ulong CpuMask { get { return Volatile.Read(ref _cpuMask); } }

    /// <summary>
    /// Marks <paramref name="cpu"/> as able to cache translations of this EPT. Call before every
    /// VM entry of a vCPU of this VM on that CPU (cheap when already set).
    /// </summary>
    public void Activate(int cpu)
    {
        ulong bit = 1UL << cpu;
        if ((Volatile.Read(ref _cpuMask) & bit) != 0)
            return;
        // Full barrier before the VM entry; pairs with the Volatile.Read of _cpuMask in FlushTlbs,
        // which follows the zapping Exchange: either the flusher sees this CPU, or this CPU's first
        // walk sees the zapped entry.
        Interlocked.Or(ref _cpuMask, bit);
    }

    /// <summary>Adds a memslot (replacing the map as a whole). False if it overlaps a slot in guest space (one being removed included) or the EPT is released.</summary>
    public bool AddMemslot(Memslot slot)
    {
        LockMmu();
        MemslotMap? next = _dead != 0 || OverlapsForeignLocked(slot.BaseGfn.Value, slot.EndGfn) ? null : _slots.WithAdded(slot);
        if (next != null)
        {
            // Release: the map is complete before it is published; pairs with the Volatile.Read in Memslots.
            Volatile.Write(ref _slots, next);
        }
        UnlockMmu();
        return next != null;
    }

    /// <summary>
    /// Removes a memslot and zaps its EPT leaves (compare KVM's invalid-memslot flag). Bracketed
    /// like an invalidation of the slot's host range: the slot is first marked invalid, so faults
    /// stop finding it (one that read the old map retries on the in-progress count) while host
    /// invalidations still zap through it; only after its leaves are zapped and flushed is it
    /// unpublished. False if it is not in the map (or already being removed).
    /// </summary>
    public bool RemoveMemslot(Memslot slot)
    {
        MmuNotifierRange range = new MmuNotifierRange(_space, slot.HostBase, slot.HostEnd, MmuNotifierEvent.Unmap, true);
        LockMmu();
        MemslotMap? invalidated = _slots.WithInvalidated(slot);
        if (invalidated == null)
        {
            UnlockMmu();
            return false;
        }
        _seq.BeginUnderLock(range);
        // Release; pairs with the Volatile.Read in Memslots.
        Volatile.Write(ref _slots, invalidated);
        UnlockMmu();
        _platform.Checkpoint(MmCheckpoint.MemslotInvalidated);
        int section = _walkers.ReadLock();
        if (!_walkers.Closed)
            ZapGuestRange(slot.BaseGfn.Address, slot.GuestAddressOf(slot.HostEnd));
        _walkers.ReadUnlock(section);
        FlushTlbs();
        LockMmu();
        // Only now, zapped and flushed, may invalidations stop seeing the slot.
        MemslotMap? removed = _slots.WithRemoved(slot);
        if (removed != null)
            Volatile.Write(ref _slots, removed);
        _seq.EndUnderLock();
        UnlockMmu();
        return true;
    }

    private void LockMmu()
    {
        // Acquire (CAS); pairs with the release store in UnlockMmu.
        while (!_mmuLock.TryEnter(_platform))
            _platform.SpinPause();
    }

    private void UnlockMmu()
    {
        // Release; pairs with the CAS in LockMmu.
        _mmuLock.Exit(_platform);
    }

    /// <summary>
    /// One INVEPT (single context) here and a remote-flush request to the other CPUs that may cache
    /// this EPT. Called after the leaves were changed.
    /// </summary>
    private void FlushTlbs()
    {
        _platform.InvEptSingleContext(_eptPointer);
        // Read after the Interlocked zap (full barrier); pairs with Interlocked.Or in Activate.
        ulong others = Volatile.Read(ref _cpuMask) & ~(1UL << _platform.CurrentCpu);
        if (others != 0)
            _platform.FlushRemote(_eptPointer, others);
    }
}
