namespace Tandem.Mm;

/// <summary>One batched TLB flush: a range of one address space on a set of CPUs.</summary>
public readonly struct TlbFlushRequest
{
    /// <summary>Identity of the address space (its id, usable as a PCID/ASID tag).</summary>
    public readonly int SpaceId;
    /// <summary>Physical address of the address space's PML4 (CR3 value without flags).</summary>
    public readonly PhysAddr Root;
    /// <summary>First byte of the range.</summary>
    public readonly VirtAddr Start;
    /// <summary>One past the last byte of the range.</summary>
    public readonly VirtAddr End;
    /// <summary>CPUs that may cache translations of this address space (bit i = CPU i).</summary>
    public readonly ulong CpuMask;

    /// <summary>Creates a request.</summary>
    public TlbFlushRequest(int spaceId, PhysAddr root, VirtAddr start, VirtAddr end, ulong cpuMask)
    {
        SpaceId = spaceId;
        Root = root;
        Start = start;
        End = end;
        CpuMask = cpuMask;
    }
}
