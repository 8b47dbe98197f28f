namespace Tandem.Kvm.Boot
{
    /// <summary>The processor mode a guest is entered in.</summary>
    public enum BootMode
    {
        /// <summary>32-bit protected mode, flat segments, paging off.</summary>
        Protected32 = 32,
        /// <summary>64-bit long mode, paging on (CR3 set), flat segments.</summary>
        Long64 = 64,
    }

    /// <summary>
    /// The register state a loader asks for at the guest's first instruction; the VMCS setup copies
    /// it into the guest-state area (see docs/guests.md, "What the VMCS setup takes from BootEntry").
    /// Segments are flat (base 0, limit 4 GiB); <see cref="CodeSelector"/> and
    /// <see cref="DataSelector"/> name descriptors of the GDT at <see cref="GdtBase"/> when a loader
    /// wrote one (<see cref="GdtLimit"/> 0 means none). RFLAGS is 0x2 (interrupts off).
    /// </summary>
    public struct BootEntry
    {
        /// <summary>The processor mode at entry.</summary>
        public BootMode Mode;
        /// <summary>The first instruction (guest-physical; paging is off or identity-mapped).</summary>
        public ulong Rip;
        /// <summary>RAX at entry (the multiboot magic values).</summary>
        public ulong Rax;
        /// <summary>RBX at entry (the multiboot information or hvm_start_info address).</summary>
        public ulong Rbx;
        /// <summary>RSI at entry (Linux: the zero page).</summary>
        public ulong Rsi;
        /// <summary>0 when the protocol leaves the stack to the guest.</summary>
        public ulong Rsp;
        /// <summary>CR0 as the guest sees it (PE, ET, NE; PG in long mode).</summary>
        public ulong Cr0;
        /// <summary>CR3: the page tables in long mode, else 0.</summary>
        public ulong Cr3;
        /// <summary>CR4: PAE in long mode, else 0.</summary>
        public ulong Cr4;
        /// <summary>IA32_EFER: LME and LMA in long mode, else 0.</summary>
        public ulong Efer;
        /// <summary>GDTR base: the BootGdt in guest RAM, or 0 when the loader wrote none.</summary>
        public ulong GdtBase;
        /// <summary>GDTR limit (0 when there is no GDT).</summary>
        public ushort GdtLimit;
        /// <summary>CS selector (a BootGdt code descriptor).</summary>
        public ushort CodeSelector;
        /// <summary>DS, ES, SS, FS and GS selector (the BootGdt data descriptor).</summary>
        public ushort DataSelector;

        /// <summary>CR0 bits (SDM Vol. 3A, 2.5): protection enable, extension type, numeric error, paging.</summary>
        public const ulong Cr0Pe = 1UL << 0, Cr0Et = 1UL << 4, Cr0Ne = 1UL << 5, Cr0Pg = 1UL << 31;
        /// <summary>CR4.PAE (SDM Vol. 3A, 2.5).</summary>
        public const ulong Cr4Pae = 1UL << 5;
        /// <summary>IA32_EFER.LME and LMA (SDM Vol. 3A, 2.2.1).</summary>
        public const ulong EferLme = 1UL << 8, EferLma = 1UL << 10;

        /// <summary>32-bit protected mode, paging off, at <paramref name="rip"/> with the <see cref="BootGdt"/> selectors.</summary>
        public static BootEntry Protected(ulong rip, ulong gdtBase)
        {
            BootEntry e = default;
            e.Mode = BootMode.Protected32;
            e.Rip = rip;
            e.Cr0 = Cr0Pe | Cr0Et | Cr0Ne;
            e.GdtBase = gdtBase;
            e.GdtLimit = gdtBase == 0 ? (ushort)0 : (ushort)(BootGdt.Size - 1);
            e.CodeSelector = BootGdt.Code32;
            e.DataSelector = BootGdt.Data;
            return e;
        }

        /// <summary>64-bit long mode with the page tables at <paramref name="cr3"/>.</summary>
        public static BootEntry Long(ulong rip, ulong cr3, ulong gdtBase)
        {
            BootEntry e = default;
            e.Mode = BootMode.Long64;
            e.Rip = rip;
            e.Cr0 = Cr0Pe | Cr0Et | Cr0Ne | Cr0Pg;
            e.Cr3 = cr3;
            e.Cr4 = Cr4Pae;
            e.Efer = EferLme | EferLma;
            e.GdtBase = gdtBase;
            e.GdtLimit = gdtBase == 0 ? (ushort)0 : (ushort)(BootGdt.Size - 1);
            e.CodeSelector = BootGdt.Code64;
            e.DataSelector = BootGdt.Data;
            return e;
        }
    }
}
