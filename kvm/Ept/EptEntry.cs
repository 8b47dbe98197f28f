using System.Runtime.CompilerServices;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>
/// One EPT paging-structure entry (Intel SDM Vol. 3C, 29.3.2 "EPT Translation Mechanism",
/// Tables 29-1 to 29-6): bits 2:0 read/write/execute, bits 5:3 memory type (leaves), bit 6 ignore
/// PAT (leaves), bit 7 "maps a page" (PDPTE/PDE), bit 8 accessed, bit 9 dirty (leaves; both only
/// when EPTP bit 6 enables them, SDM 29.3.5), bits 51:12 the physical address.
/// </summary>
/// <remarks>
/// A pure value: reading and writing live entries is <see cref="EptOps"/>' job. An entry is present
/// when any of bits 2:0 is set (SDM 29.3.2: "not present" if bits 2:0 are all 0; mode-based execute
/// control is not enabled, so bit 10 does not count).
/// </remarks>
public readonly struct EptEntry
{
    /// <summary>Bit 0: reads allowed.</summary>
    public const ulong Readable = 1UL << 0;
    /// <summary>Bit 1: writes allowed.</summary>
    public const ulong Writable = 1UL << 1;
    /// <summary>Bit 2: instruction fetches allowed (supervisor-mode when mode-based control is on).</summary>
    public const ulong Executable = 1UL << 2;
    /// <summary>Bits 2:0, the permission bits whose OR is "present".</summary>
    public const ulong PermissionMask = Readable | Writable | Executable;
    /// <summary>Bits 5:3 of a leaf: the EPT memory type (SDM 29.3.7.2).</summary>
    public const ulong MemoryTypeMask = 7UL << MemoryTypeShift;
    /// <summary>Position of the memory type field.</summary>
    public const int MemoryTypeShift = 3;
    /// <summary>Bit 6 of a leaf: ignore the guest PAT memory type.</summary>
    public const ulong IgnorePat = 1UL << 6;
    /// <summary>Bit 7 of a PDPTE/PDE: the entry maps a 1 GiB / 2 MiB page.</summary>
    public const ulong LargePage = 1UL << 7;
    /// <summary>Bit 8: accessed (set by the CPU on every walk through the entry).</summary>
    public const ulong Accessed = 1UL << 8;
    /// <summary>Bit 9 of a leaf: dirty (set by the CPU on a write through the entry).</summary>
    public const ulong Dirty = 1UL << 9;
    /// <summary>Bits 51:12: the physical address of the next table or of the page.</summary>
    public const ulong AddressMask = 0x000F_FFFF_FFFF_F000UL;

    /// <summary>The raw 64-bit value.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public EptEntry(ulong value) { Value = value; }

    /// <summary>The empty (not present) entry.</summary>
    public static EptEntry Empty { get { return default; } }

    /// <summary>Any of read/write/execute set.</summary>
    public bool IsPresent
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return (Value & PermissionMask) != 0; }
    }

    /// <summary>Writes allowed.</summary>
    public bool IsWritable
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return (Value & Writable) != 0; }
    }

    /// <summary>The accessed bit.</summary>
    public bool IsAccessed
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return (Value & Accessed) != 0; }
    }

    /// <summary>The dirty bit.</summary>
    public bool IsDirty
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return (Value & Dirty) != 0; }
    }

    /// <summary>The memory type of a leaf.</summary>
    public EptMemoryType MemoryType
    {
        get { return (EptMemoryType)((Value & MemoryTypeMask) >> MemoryTypeShift); }
    }

    /// <summary>True for a present entry that maps a page at <paramref name="level"/> (1 = PTE, 2 = PDE, 3 = PDPTE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLeaf(int level) { return IsPresent && (level == 1 || (Value & LargePage) != 0); }

    /// <summary>The physical address of the next-level table (non-leaf entries).</summary>
    public PhysAddr TableAddress
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return new PhysAddr(Value & AddressMask); }
    }

    /// <summary>The physical address of the page a leaf at <paramref name="level"/> maps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PhysAddr LeafAddress(int level) { return new PhysAddr(Value & AddressMask & ~(PageSizes.ForLevel(level) - 1)); }

    /// <summary>The same entry with the accessed bit clear.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public EptEntry WithoutAccessed() { return new EptEntry(Value & ~Accessed); }

    /// <summary>The same entry with <paramref name="bits"/> set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public EptEntry WithBits(ulong bits) { return new EptEntry(Value | bits); }

    /// <summary>A non-leaf entry pointing at <paramref name="table"/> with full rights (the leaf decides).</summary>
    public static EptEntry ForTable(PhysAddr table) { return new EptEntry((table.Value & AddressMask) | PermissionMask); }

    /// <summary>
    /// A leaf mapping <paramref name="page"/> at <paramref name="level"/>: read and execute always,
    /// write if <paramref name="writable"/>; memory type <paramref name="type"/> with the guest PAT
    /// ignored (host RAM is write-back whatever the guest thinks).
    /// </summary>
    public static EptEntry ForLeaf(PhysAddr page, int level, bool writable, EptMemoryType type)
    {
        ulong v = (page.Value & AddressMask) | Readable | Executable | ((ulong)type << MemoryTypeShift) | IgnorePat;
        if (writable)
            v |= Writable;
        if (level > 1)
            v |= LargePage;
        return new EptEntry(v);
    }
}
