using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// What <see cref="EptMmu{TPlatform}"/> needs from the machine. <c>EptMmu</c> is generic over a
/// <c>struct</c> implementing this, so in the kernel every call is a direct call; the host tests
/// plug in a platform that models a caching EPT TLB.
/// </summary>
/// <remarks>
/// Rules for implementers: no method may take an EPT lock or call back into the EPT.
/// <see cref="InvEptSingleContext"/> and <see cref="FlushRemote"/> return only once the CPUs they
/// name have stopped using cached translations of the EPT pointer.
/// </remarks>
public unsafe interface IEptPlatform : ILockPlatform
{
    /// <summary>
    /// Allocates one zeroed 4 KiB page for an EPT table: its host physical address (what goes in
    /// entries and the EPTP) and a pointer through which the kernel reads and writes it.
    /// False when memory is exhausted.
    /// </summary>
    bool AllocateTable(out PhysAddr address, out ulong* entries);

    /// <summary>The pointer through which the table page at <paramref name="address"/> is accessed.</summary>
    ulong* TableAt(PhysAddr address);

    /// <summary>
    /// Frees a table page now. <c>EptMmu</c> calls it only after its own grace period (no lockless
    /// walker can still hold the page) and after the INVEPT that ends every hardware walk through it.
    /// </summary>
    void FreeTable(PhysAddr address);

    /// <summary>INVEPT type 1 (single context) for <paramref name="eptPointer"/> on the current CPU (SDM Vol. 3C, 30.3 "INVEPT").</summary>
    void InvEptSingleContext(ulong eptPointer);

    /// <summary>
    /// Makes every CPU in <paramref name="cpuMask"/> (never the current one) drop its cached
    /// translations of <paramref name="eptPointer"/>: a remote-flush request (IPI, VM exit, INVEPT
    /// there) that waits for the acknowledgements.
    /// </summary>
    void FlushRemote(ulong eptPointer, ulong cpuMask);

    /// <summary>Index of the CPU running the caller (0..63).</summary>
    int CurrentCpu { get; }


    /// <summary>A named point between two shared-memory steps; no-op in the kernel, used by host interleaving tests.</summary>
    void Checkpoint(MmCheckpoint site);
}
