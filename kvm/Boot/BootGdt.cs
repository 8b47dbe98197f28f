namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// The GDT the loaders write into guest RAM: null, 32-bit code at 0x08, 64-bit code at 0x10
    /// (Linux's __BOOT_CS), data at 0x18 (Linux's __BOOT_DS). All flat: base 0, limit 4 GiB, 4 KiB
    /// granularity (SDM Vol. 3A, 3.4.5, figure 3-8).
    /// </summary>
    public static unsafe class BootGdt
    {
        /// <summary>Selector of the flat 32-bit code descriptor.</summary>
        public const ushort Code32 = 0x08;
        /// <summary>Selector of the flat 64-bit code descriptor (Linux's __BOOT_CS).</summary>
        public const ushort Code64 = 0x10;
        /// <summary>Selector of the flat data descriptor (Linux's __BOOT_DS).</summary>
        public const ushort Data = 0x18;
        /// <summary>Bytes of the table (four descriptors).</summary>
        public const uint Size = 32;

        /// <summary>Execute/read, accessed, present, DPL 0, D=1, G=1.</summary>
        public const ulong Code32Descriptor = 0x00CF_9B00_0000_FFFF;
        /// <summary>Execute/read, accessed, present, DPL 0, L=1, G=1.</summary>
        public const ulong Code64Descriptor = 0x00AF_9B00_0000_FFFF;
        /// <summary>Read/write, accessed, present, DPL 0, B=1, G=1.</summary>
        public const ulong DataDescriptor = 0x00CF_9300_0000_FFFF;

        /// <summary>Writes the four descriptors at <paramref name="gpa"/>.</summary>
        public static bool Write<TRam>(ref TRam ram, ulong gpa) where TRam : struct, IGuestRam
        {
            ulong* gdt = stackalloc ulong[4];
            gdt[0] = 0;
            gdt[1] = Code32Descriptor;
            gdt[2] = Code64Descriptor;
            gdt[3] = DataDescriptor;
            return ram.Write(gpa, (byte*)gdt, Size);
        }
    }
}
