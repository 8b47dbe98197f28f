namespace Tandem.Mm;

/// <summary>
/// Everything the portable memory manager needs from the machine. The mm types are generic over
/// <c>TPlatform : struct, IMmPlatform</c>, so in the kernel every call below is specialised into a
/// direct (usually inlined) call; the host tests plug in a platform that records and models.
/// </summary>
/// <remarks>
/// Rules for implementers:
/// <list type="bullet">
/// <item>No method may allocate or take an mm lock.</item>
/// <item><see cref="FlushTlb"/> must return only after every CPU named in the request has
/// stopped using translations for the range (local INVLPG plus IPIs that are acknowledged).</item>
/// <item><see cref="Checkpoint"/> is a no-op in the kernel; the host interleaving tests use it
/// to stop a thread between two shared-memory steps.</item>
/// </list>
/// </remarks>
public unsafe interface IMmPlatform : ILockPlatform
{
    /// <summary>A pointer through which the CPU can read and write the given physical address
    /// (the kernel's direct map; on the host an offset into a native buffer).</summary>
    byte* PhysToVirt(PhysAddr address);

    /// <summary>Index of the CPU running the caller, 0 ≤ index &lt; <see cref="CpuCount"/>.</summary>
    int CurrentCpu { get; }

    /// <summary>Number of CPUs (at most 64: CPU sets are 64-bit masks).</summary>
    int CpuCount { get; }

    /// <summary>
    /// Invalidates translations of <c>[Start, End)</c> of one address space on the current CPU
    /// (if it is in the mask) and on every other CPU in the mask (IPI shootdown), and waits for the
    /// other CPUs to acknowledge. Called once per operation, never once per page.
    /// </summary>
    void FlushTlb(in TlbFlushRequest request);


    /// <summary>
    /// Frees <paramref name="retired"/> once every CPU has passed a quiescent point, because a
    /// lockless reader may still hold it (a region-map snapshot, a notifier array). On the host
    /// this does nothing and the GC reclaims the object.
    /// </summary>
    void DeferFree(object retired);

    /// <summary>
    /// Waits until <c>Volatile.Read(ref word) != observed</c>: used by a context that faulted on a
    /// userfault region until the handler reports a fill. May return early (spurious wakeup); the
    /// caller re-checks. The kernel spins and halts; the host spins and yields.
    /// </summary>
    void WaitForChange(ref int word, int observed);

    /// <summary>
    /// A frame's last reference is gone and it is about to return to the allocator (data frames and
    /// page-table frames alike). The kernel does nothing; the host tests poison the frame so that a
    /// walker that still reads it fails loudly.
    /// </summary>
    void FrameFreed(Pfn frame);

    /// <summary>A named point between two shared-memory steps. No-op in the kernel.</summary>
    void Checkpoint(MmCheckpoint site);
}
