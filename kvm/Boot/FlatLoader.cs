namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Flat images, as Tandem's own test guests use them: the file is copied to 1 MiB. An image
    /// that starts with the 16-byte "TGST" header (u32 mode 32 or 64, u32 entry offset, u32
    /// reserved) is entered at 1 MiB + the entry offset in that mode (64-bit: the first GiB
    /// identity-mapped with 2 MiB pages, tables at 0x1000; at most 1 GiB of RAM); any other image is
    /// entered at its first byte in 32-bit protected mode. No GDT is written (the VMCS holds the
    /// segment state) and the stack pointer is 64 bytes below the top of RAM.
    /// </summary>
    public static unsafe class FlatLoader
    {
        /// <summary>Where the image is copied.</summary>
        public const ulong LoadAddress = 0x10_0000;
        /// <summary>PML4, PDPT and PD of a 64-bit guest.</summary>
        public const ulong PageTables = 0x1000;
        /// <summary>"TGST" read as a little-endian u32.</summary>
        public const uint HeaderMagic = 0x5453_4754;

        /// <summary>Loads <paramref name="input"/>'s image into <paramref name="ram"/>; on failure nothing is written unless the error is <see cref="LoadErrorKind.WriteFailed"/>.</summary>
        public static bool Load<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
            where TRam : struct, IGuestRam
        {
            entry = default;
            error = default;
            var image = new ImageReader(input.Image, input.ImageLength);
            ulong length = image.Length;
            if (length == 0)
            {
                error = new LoadError(LoadErrorKind.Malformed, "the guest image is empty");
                return false;
            }
            if (!map.IsRam(LoadAddress, length))
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "the guest image does not fit in guest RAM", length, map.RamSize);
                return false;
            }
            BootMode mode = BootMode.Protected32;
            ulong rip = LoadAddress;
            if (image.U32(0, out uint magic) && magic == HeaderMagic && length >= 16)
            {
                uint m = image.U32Unchecked(4);
                uint offset = image.U32Unchecked(8);
                if (m != 32 && m != 64)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "the guest image header names an unknown mode", m);
                    return false;
                }
                if (offset >= length)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "the guest image's entry point is outside the image", offset, length);
                    return false;
                }
                mode = (BootMode)m;
                rip = LoadAddress + offset;
            }
            if (mode == BootMode.Long64 && (map.RamSize > 1UL << 30 || !map.IsRam(PageTables, 0x3000)))
            {
                error = new LoadError(LoadErrorKind.Unsupported, "64-bit test guests support at most 1 GiB of RAM", map.RamSize);
                return false;
            }
            if (!ram.Write(LoadAddress, image.Data, length))
            {
                error = new LoadError(LoadErrorKind.WriteFailed, "guest RAM could not be populated (out of host memory?)");
                return false;
            }
            if (mode == BootMode.Long64)
            {
                if (!WritePageTables(ref ram))
                {
                    error = new LoadError(LoadErrorKind.WriteFailed, "guest page tables could not be written (out of host memory?)");
                    return false;
                }
                entry = BootEntry.Long(rip, PageTables, 0);
            }
            else
                entry = BootEntry.Protected(rip, 0);
            entry.Rsp = map.RamSize - 64;
            return true;
        }

        /// <summary>Identity-maps the first GiB with 2 MiB pages: PML4[0] → PDPT[0] → PD (SDM Vol. 3A, 4.5).</summary>
        private static bool WritePageTables<TRam>(ref TRam ram) where TRam : struct, IGuestRam
        {
            ulong* table = stackalloc ulong[512];
            new System.Span<ulong>(table, 512).Clear();
            table[0] = (PageTables + 0x1000) | 3;
            bool ok = ram.Write(PageTables, (byte*)table, 4096);
            table[0] = (PageTables + 0x2000) | 3;
            ok &= ram.Write(PageTables + 0x1000, (byte*)table, 4096);
            for (ulong i = 0; i < 512; i++)
                table[i] = (i << 21) | 0x83;                // present, writable, 2 MiB
            ok &= ram.Write(PageTables + 0x2000, (byte*)table, 4096);
            return ok;
        }
    }
}
