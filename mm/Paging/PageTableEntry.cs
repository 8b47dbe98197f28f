using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>
/// One entry of an x86-64 4-level page table, any level. Intel SDM Vol. 3A, 4.5.4: Table 4-15
/// (PML4E), 4-16 (PDPTE mapping a 1 GiB page), 4-17 (PDPTE referencing a PD), 4-18 (PDE mapping a
/// 2 MiB page), 4-19 (PDE referencing a PT), 4-20 (PTE mapping a 4 KiB page). Pure value: reading
/// or writing a live entry goes through <see cref="PteOps"/>.
/// </summary>
public readonly struct PageTableEntry
{
    /// <summary>Bit 0, P: the entry is present (all tables).</summary>
    public const ulong Present = 1UL << 0;
    /// <summary>Bit 1, R/W: writes allowed (all tables).</summary>
    public const ulong Writable = 1UL << 1;
    /// <summary>Bit 2, U/S: user-mode accesses allowed (all tables).</summary>
    public const ulong User = 1UL << 2;
    /// <summary>Bit 3, PWT: page-level write-through.</summary>
    public const ulong WriteThrough = 1UL << 3;
    /// <summary>Bit 4, PCD: page-level cache disable.</summary>
    public const ulong CacheDisable = 1UL << 4;
    /// <summary>Bit 5, A: accessed; set by the CPU on any access (all tables).</summary>
    public const ulong Accessed = 1UL << 5;
    /// <summary>Bit 6, D: dirty; set by the CPU on a write (leaf entries only, Tables 4-16/4-18/4-20).</summary>
    public const ulong Dirty = 1UL << 6;
    /// <summary>Bit 7, PS: page size; the PDPTE/PDE maps a 1 GiB/2 MiB page (Tables 4-16, 4-18). In a PTE this bit is PAT.</summary>
    public const ulong PageSize = 1UL << 7;
    /// <summary>Bit 7 of a PTE, PAT (Table 4-20).</summary>
    public const ulong Pat4K = 1UL << 7;
    /// <summary>Bit 8, G: global translation (leaf entries with CR4.PGE).</summary>
    public const ulong Global = 1UL << 8;
    /// <summary>Bit 9, ignored by the CPU: Tandem's "special" bit: the frame is not refcounted and not in the reverse map (fixed mappings; compare Linux's _PAGE_SPECIAL).</summary>
    public const ulong Special = 1UL << 9;
    /// <summary>Bit 12 of a 1 GiB/2 MiB leaf, PAT (Tables 4-16, 4-18).</summary>
    public const ulong PatLarge = 1UL << 12;
    /// <summary>Bit 63, XD: execute disable (with IA32_EFER.NXE = 1).</summary>
    public const ulong NoExecute = 1UL << 63;
    /// <summary>Bits 51:12: physical address of a 4 KiB page or of the next table (M = 52).</summary>
    public const ulong AddressMask4K = 0x000F_FFFF_FFFF_F000UL;
    /// <summary>Bits 51:21: physical address of a 2 MiB page (Table 4-18).</summary>
    public const ulong AddressMask2M = 0x000F_FFFF_FFE0_0000UL;
    /// <summary>Bits 51:30: physical address of a 1 GiB page (Table 4-16).</summary>
    public const ulong AddressMask1G = 0x000F_FFFF_C000_0000UL;

    /// <summary>
    /// Bit 10 of a non-present entry (P = 0): Tandem's swap-entry marker. SDM Vol. 3A, 4.5.4 and
    /// Figure 4-11 ("Ignored" in every bit of an entry whose P flag is 0): the CPU ignores all other
    /// bits of a not-present entry, so software may keep anything there. A swap entry is
    /// <c>P = 0 | R/W, U/S, XD = the rights the page had | bit 10 = 1 | bits 51:12 = swap slot</c>
    /// (compare Linux's swp_entry_t in a non-present PTE). It exists only at level 1 (4 KiB).
    /// </summary>
    public const ulong SwapMarker = 1UL << 10;
    /// <summary>Bits 51:12 of a swap entry: the swap slot index.</summary>
    public const ulong SwapSlotMask = AddressMask4K;
    /// <summary>The rights a swap entry keeps (restored when the page comes back).</summary>
    public const ulong SwapRightsMask = Writable | User | NoExecute;

    /// <summary>A non-present swap entry for <paramref name="slot"/> keeping the rights (R/W, U/S, XD) of <paramref name="rights"/>.</summary>
    public static PageTableEntry ForSwap(int slot, PageTableEntry rights)
    {
        return new PageTableEntry((((ulong)(uint)slot << 12) & SwapSlotMask) | SwapMarker | (rights.Raw & SwapRightsMask));
    }

    /// <summary>P is clear and the swap marker is set: the entry records a swap slot.</summary>
    public bool IsSwap { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & (Present | SwapMarker)) == SwapMarker; } }

    /// <summary>The swap slot of a swap entry.</summary>
    public int SwapSlot { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (int)((Raw & SwapSlotMask) >> 12); } }

    /// <summary>The present 4 KiB leaf that replaces this swap entry: <paramref name="frame"/> with the rights the entry kept; A and D clear.</summary>
    public PageTableEntry SwapRestored(PhysAddr frame)
    {
        return new PageTableEntry(Present | (Raw & SwapRightsMask) | (frame.Value & AddressMask4K));
    }

    /// <summary>The raw 64-bit value.</summary>
    public readonly ulong Raw;

    /// <summary>Wraps a raw value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PageTableEntry(ulong raw) { Raw = raw; }

    /// <summary>The all-zero, non-present entry.</summary>
    public static PageTableEntry Empty { get { return default; } }

    /// <summary>An entry referencing the next-level table at <paramref name="table"/> (Tables 4-15, 4-17, 4-19).
    /// Upper levels are permissive; the leaf decides the rights.</summary>
    public static PageTableEntry ForTable(PhysAddr table)
    {
        return new PageTableEntry((table.Value & AddressMask4K) | Present | Writable | User);
    }

    /// <summary>A leaf entry at <paramref name="level"/> (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB) mapping <paramref name="frame"/>.</summary>
    public static PageTableEntry ForLeaf(PhysAddr frame, int level, PageProt prot)
    {
        ulong raw = Present | ProtBits(prot);
        if (level == 1)
            raw |= frame.Value & AddressMask4K;
        else
            raw |= (frame.Value & (level == 2 ? AddressMask2M : AddressMask1G)) | PageSize;
        return new PageTableEntry(raw);
    }

    /// <summary>The R/W, U/S and XD bits for <paramref name="prot"/>.</summary>
    public static ulong ProtBits(PageProt prot)
    {
        ulong raw = 0;
        if ((prot & PageProt.Write) != 0)
            raw |= Writable;
        if ((prot & PageProt.User) != 0)
            raw |= User;
        if ((prot & PageProt.Execute) == 0)
            raw |= NoExecute;
        return raw;
    }

    /// <summary>P is set.</summary>
    public bool IsPresent { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & Present) != 0; } }
    /// <summary>R/W is set.</summary>
    public bool IsWritable { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & Writable) != 0; } }
    /// <summary>U/S is set.</summary>
    public bool IsUser { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & User) != 0; } }
    /// <summary>A is set.</summary>
    public bool IsAccessed { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & Accessed) != 0; } }
    /// <summary>D is set.</summary>
    public bool IsDirty { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & Dirty) != 0; } }
    /// <summary>XD is set.</summary>
    public bool IsNoExecute { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & NoExecute) != 0; } }
    /// <summary>The software "special" bit is set (untracked frame).</summary>
    public bool IsSpecial { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return (Raw & Special) != 0; } }

    /// <summary>True when the entry maps a page at <paramref name="level"/> (PS at levels 2-3; always at level 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLeaf(int level) { return IsPresent && (level == 1 || ((level == 2 || level == 3) && (Raw & PageSize) != 0)); }

    /// <summary>The next-level table of a non-leaf present entry.</summary>
    public PhysAddr TableAddress { [MethodImpl(MethodImplOptions.AggressiveInlining)] get { return new PhysAddr(Raw & AddressMask4K); } }

    /// <summary>The first byte of the page mapped by a leaf at <paramref name="level"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PhysAddr LeafAddress(int level)
    {
        ulong mask = level == 1 ? AddressMask4K : level == 2 ? AddressMask2M : AddressMask1G;
        return new PhysAddr(Raw & mask);
    }

    /// <summary>Copy with P set or cleared.</summary>
    public PageTableEntry WithPresent(bool on) { return With(Present, on); }
    /// <summary>Copy with R/W set or cleared.</summary>
    public PageTableEntry WithWritable(bool on) { return With(Writable, on); }
    /// <summary>Copy with A set or cleared.</summary>
    public PageTableEntry WithAccessed(bool on) { return With(Accessed, on); }
    /// <summary>Copy with D set or cleared.</summary>
    public PageTableEntry WithDirty(bool on) { return With(Dirty, on); }
    /// <summary>Copy with XD set or cleared.</summary>
    public PageTableEntry WithNoExecute(bool on) { return With(NoExecute, on); }
    /// <summary>Copy with the software special bit set or cleared.</summary>
    public PageTableEntry WithSpecial(bool on) { return With(Special, on); }

    /// <summary>Copy whose R/W, U/S and XD bits are those of <paramref name="prot"/>.</summary>
    public PageTableEntry WithProt(PageProt prot)
    {
        return new PageTableEntry((Raw & ~(Writable | User | NoExecute)) | ProtBits(prot));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PageTableEntry With(ulong bit, bool on) { return new PageTableEntry(on ? Raw | bit : Raw & ~bit); }
}
