namespace Tandem.StubGen.Stubs;

/// <summary>Architectural constants shared by the boot paths (Intel SDM Vol. 3A unless noted).</summary>
internal static class Cpu
{
    // CR0, SDM Vol. 3A 2.5 "Control Registers".
    public const uint Cr0Pe = 1u << 0;   // protected mode enable
    public const uint Cr0Mp = 1u << 1;   // monitor coprocessor: WAIT/FWAIT honour TS
    public const uint Cr0Em = 1u << 2;   // emulation: must be 0 for SSE (else #UD)
    public const uint Cr0Ne = 1u << 5;   // native x87 error reporting (#MF instead of IRQ13)
    public const uint Cr0Pg = 1u << 31;  // paging

    // CR4, SDM Vol. 3A 2.5.
    public const uint Cr4Pae = 1u << 5;         // physical address extension (required for IA-32e paging)
    public const uint Cr4OsFxsr = 1u << 9;      // OS supports FXSAVE/FXRSTOR: enables SSE instructions
    public const uint Cr4OsXmmExcpt = 1u << 10; // OS handles #XM (unmasked SIMD FP exceptions)

    // IA32_EFER, SDM Vol. 3A 2.2.1 "Extended Feature Enable Register"; MSR index in Vol. 4 table 2-2.
    public const uint MsrEfer = 0xC000_0080;
    public const uint EferLme = 1u << 8;   // IA-32e mode enable (becomes active when CR0.PG is set)
    public const uint EferNxe = 1u << 11;  // execute-disable bit (bit 63 of paging entries) enable

    /// <summary>CPUID.80000001H:EDX bit 20 = execute-disable bit available (SDM Vol. 2A, CPUID).</summary>
    public const uint CpuidExtFeatures = 0x8000_0001;
    public const int CpuidEdxNxBit = 20;

    // Paging-structure entry bits, SDM Vol. 3A 4.5 "4-Level Paging", tables 4-14 .. 4-18.
    public const uint PtePresent = 1u << 0;
    public const uint PteWritable = 1u << 1;
    public const uint PtePageSize = 1u << 7;  // in a PDE: maps a 2 MiB page

    /// <summary>Segment selectors of the boot GDT (and of the AP trampoline's GDT, which matches it).</summary>
    public const ushort KernelCode64 = 0x08, KernelData = 0x10;

    /// <summary>
    /// Segment descriptors (SDM Vol. 3A 3.4.5 "Segment Descriptors", figure 3-8). Base 0, limit
    /// 0xFFFFF with G=1 (4 GiB). Access byte: P=1, DPL=0, S=1, type. The accessed bit is preset so
    /// the CPU never writes to the (read-only) table when loading a selector.
    /// </summary>
    public const ulong DescCode64 = 0x00AF_9B00_0000_FFFF; // type 0xB execute/read/accessed, L=1, D=0
    public const ulong DescCode32 = 0x00CF_9B00_0000_FFFF; // type 0xB, L=0, D=1 (32-bit)
    public const ulong DescData = 0x00CF_9300_0000_FFFF;   // type 0x3 read/write/accessed, D/B=1
}
