using System;

namespace Tandem.Kvm.Mmio;

/// <summary>
/// Software walk of the guest's own page tables, guest-virtual (linear) → guest-physical, for the
/// paging modes of SDM Vol. 3A, chapter 4: none, 32-bit (4 KiB and, with CR4.PSE, 4 MiB pages),
/// PAE (4 KiB and 2 MiB) and 4-level (4 KiB, 2 MiB, 1 GiB). 5-level paging is refused.
/// </summary>
/// <remarks>
/// Rules for using this: the walker reads the tables through the caller's reader and
/// never writes them: it sets no accessed or dirty bits (the hardware walk that led to the exit
/// has set them for the faulting access) and it consults no TLB. The PAE PDPTEs are read from
/// memory at CR3 rather than from the PDPTE registers the CPU loaded with CR3. SMEP, SMAP and
/// protection keys are not checked. A linear address in 32-bit modes must already be truncated
/// to 32 bits by the caller.
/// </remarks>
public static class GuestWalker
{
    private const ulong Present = 1UL << 0;
    private const ulong Writable = 1UL << 1;
    private const ulong User = 1UL << 2;
    private const ulong PageSize = 1UL << 7;
    private const ulong ExecuteDisable = 1UL << 63;

    /// <summary>
    /// Translates <paramref name="linear"/> for an access of <paramref name="access"/> kind into
    /// <paramref name="gpa"/>; <paramref name="pageSize"/> is the size of the page that maps it
    /// (4 KiB, 2 MiB, 4 MiB or 1 GiB; 4 KiB with paging off).
    /// </summary>
    public static GuestWalkStatus Translate<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong linear,
        GuestAccessKind access, out ulong gpa, out ulong pageSize)
        where TMemory : struct, IGuestPhysicalReader
    {
        gpa = 0;
        pageSize = 1UL << 12;
        if ((paging.Cr0 & GuestPagingState.Cr0Pg) == 0)
        {
            gpa = linear;
            return GuestWalkStatus.Ok;
        }
        if ((paging.Cr4 & GuestPagingState.Cr4Pae) == 0)
            return Walk32(ref memory, paging, linear, access, out gpa, out pageSize);
        if ((paging.Efer & GuestPagingState.EferLma) == 0)
            return WalkPae(ref memory, paging, linear, access, out gpa, out pageSize);
        if ((paging.Cr4 & GuestPagingState.Cr4La57) != 0)
            return GuestWalkStatus.Unsupported;
        if ((ulong)((long)(linear << 16) >> 16) != linear)
            return GuestWalkStatus.NonCanonical; // bits 63:47 must copy bit 47 (SDM 3.3.7.1)
        return Walk64(ref memory, paging, paging.Cr3 & 0x000F_FFFF_FFFF_F000UL & AddressMask(paging), 4, linear, access, out gpa, out pageSize);
    }

    /// <summary>Bits 51:12 of an entry that can hold an address below MAXPHYADDR.</summary>
    private static ulong AddressMask(in GuestPagingState paging)
    {
        int bits = paging.MaxPhysAddrBits == 0 ? 52 : paging.MaxPhysAddrBits;
        return ((1UL << bits) - 1) & ~0xFFFUL;
    }

    /// <summary>Reserved bits of every PAE / 4-level entry: 51:MAXPHYADDR, and XD without EFER.NXE (SDM 4.4.2, 4.5.4).</summary>
    private static ulong CommonReserved(in GuestPagingState paging)
    {
        int bits = paging.MaxPhysAddrBits == 0 ? 52 : paging.MaxPhysAddrBits;
        ulong reserved = bits >= 52 ? 0 : ((1UL << 52) - 1) & ~((1UL << bits) - 1);
        if ((paging.Efer & GuestPagingState.EferNxe) == 0)
            reserved |= ExecuteDisable;
        return reserved;
    }

    /// <summary>4-level paging (SDM 4.5): PML4 → PDPT (1 GiB leaf) → PD (2 MiB leaf) → PT.</summary>
    private static GuestWalkStatus Walk64<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong table, int level,
        ulong linear, GuestAccessKind access, out ulong gpa, out ulong pageSize)
        where TMemory : struct, IGuestPhysicalReader
    {
        gpa = 0;
        pageSize = 0;
        ulong allowed = Writable | User;
        bool executeDisabled = false;
        ulong reservedCommon = CommonReserved(paging);
        ulong mask = AddressMask(paging);
        while (true)
        {
            int shift = 12 + 9 * (level - 1);
            ulong entryAddress = table + ((linear >> shift) & 511) * 8;
            if (!ReadEntry64(ref memory, entryAddress, out ulong entry))
                return GuestWalkStatus.MemoryError;
            if ((entry & Present) == 0)
                return GuestWalkStatus.NotPresent;
            ulong reserved = reservedCommon;
            bool leaf = level == 1 || (level <= 3 && (entry & PageSize) != 0);
            if (level == 4 && (entry & PageSize) != 0)
                return GuestWalkStatus.ReservedBit; // PS is reserved in a PML4E
            if (leaf && level > 1)
                reserved |= ((1UL << shift) - 1) & ~0x1FFFUL; // 2 MiB: bits 20:13; 1 GiB: bits 29:13 (bit 12 is PAT)
            if ((entry & reserved) != 0)
                return GuestWalkStatus.ReservedBit;
            allowed &= entry;
            executeDisabled |= (entry & ExecuteDisable) != 0;
            if (leaf)
            {
                pageSize = 1UL << shift;
                gpa = (entry & mask & ~(pageSize - 1)) | (linear & (pageSize - 1));
                return CheckAccess(paging, allowed, executeDisabled, access);
            }
            table = entry & mask;
            level--;
        }
    }

    /// <summary>PAE paging (SDM 4.4): PDPTE (from CR3 bits 31:5) → PD (2 MiB leaf) → PT.</summary>
    private static GuestWalkStatus WalkPae<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong linear,
        GuestAccessKind access, out ulong gpa, out ulong pageSize)
        where TMemory : struct, IGuestPhysicalReader
    {
        gpa = 0;
        pageSize = 0;
        linear &= 0xFFFF_FFFFUL;
        ulong pdpteAddress = (paging.Cr3 & 0xFFFF_FFE0UL) + ((linear >> 30) & 3) * 8;
        if (!ReadEntry64(ref memory, pdpteAddress, out ulong pdpte))
            return GuestWalkStatus.MemoryError;
        if ((pdpte & Present) == 0)
            return GuestWalkStatus.NotPresent;
        // PDPTE reserved bits (SDM Table 4-8): 2:1, 8:5, 63:MAXPHYADDR.
        if ((pdpte & (0x1E6UL | (CommonReserved(paging) | ExecuteDisable))) != 0)
            return GuestWalkStatus.ReservedBit;
        return Walk64(ref memory, paging, pdpte & AddressMask(paging), 2, linear, access, out gpa, out pageSize);
    }

    /// <summary>32-bit paging (SDM 4.3): PD (4 MiB leaf with CR4.PSE) → PT, 4-byte entries.</summary>
    private static GuestWalkStatus Walk32<TMemory>(ref TMemory memory, in GuestPagingState paging, ulong linear,
        GuestAccessKind access, out ulong gpa, out ulong pageSize)
        where TMemory : struct, IGuestPhysicalReader
    {
        gpa = 0;
        pageSize = 0;
        linear &= 0xFFFF_FFFFUL;
        ulong pdeAddress = (paging.Cr3 & 0xFFFF_F000UL) + ((linear >> 22) & 1023) * 4;
        if (!ReadEntry32(ref memory, pdeAddress, out uint pde))
            return GuestWalkStatus.MemoryError;
        if ((pde & Present) == 0)
            return GuestWalkStatus.NotPresent;
        ulong allowed = pde & (Writable | User);
        if ((paging.Cr4 & GuestPagingState.Cr4Pse) != 0 && (pde & PageSize) != 0)
        {
            // 4 MiB page (SDM Table 4-4): bits 31:22 are address bits 31:22, bits 20:13 are
            // address bits 39:32 (PSE-36); bit 21 and the bits above MAXPHYADDR are reserved.
            int bits = paging.MaxPhysAddrBits == 0 ? 52 : paging.MaxPhysAddrBits;
            int highBits = Math.Min(bits, 40) - 32;
            ulong high = (pde >> 13) & 0xFF;
            if ((pde & (1U << 21)) != 0 || (high >> highBits) != 0)
                return GuestWalkStatus.ReservedBit;
            pageSize = 1UL << 22;
            gpa = (high << 32) | (pde & 0xFFC0_0000UL) | (linear & 0x3F_FFFFUL);
            return CheckAccess(paging, allowed, false, access);
        }
        ulong pteAddress = (pde & 0xFFFF_F000UL) + ((linear >> 12) & 1023) * 4;
        if (!ReadEntry32(ref memory, pteAddress, out uint pte))
            return GuestWalkStatus.MemoryError;
        if ((pte & Present) == 0)
            return GuestWalkStatus.NotPresent;
        allowed &= pte;
        pageSize = 1UL << 12;
        gpa = (pte & 0xFFFF_F000UL) | (linear & 0xFFFUL);
        return CheckAccess(paging, allowed, false, access);
    }

    /// <summary>Access rights from the R/W, U/S and XD bits of every level (SDM 4.6).</summary>
    private static GuestWalkStatus CheckAccess(in GuestPagingState paging, ulong allowed, bool executeDisabled, GuestAccessKind access)
    {
        bool user = paging.Cpl == 3;
        if (user && (allowed & User) == 0)
            return GuestWalkStatus.UserProtected;
        if (access == GuestAccessKind.Write && (allowed & Writable) == 0 && (user || (paging.Cr0 & GuestPagingState.Cr0Wp) != 0))
            return GuestWalkStatus.WriteProtected;
        if (access == GuestAccessKind.Fetch && executeDisabled && (paging.Efer & GuestPagingState.EferNxe) != 0)
            return GuestWalkStatus.NoExecute;
        return GuestWalkStatus.Ok;
    }

    private static bool ReadEntry64<TMemory>(ref TMemory memory, ulong gpa, out ulong value)
        where TMemory : struct, IGuestPhysicalReader
    {
        Span<byte> b = stackalloc byte[8];
        value = 0;
        if (!memory.Read(gpa, b))
            return false;
        for (int i = 7; i >= 0; i--)
            value = (value << 8) | b[i];
        return true;
    }

    private static bool ReadEntry32<TMemory>(ref TMemory memory, ulong gpa, out uint value)
        where TMemory : struct, IGuestPhysicalReader
    {
        Span<byte> b = stackalloc byte[4];
        value = 0;
        if (!memory.Read(gpa, b))
            return false;
        value = (uint)(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24));
        return true;
    }
}
