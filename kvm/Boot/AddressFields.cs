namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// The load addresses a multiboot header can give instead of ELF program headers (multiboot's
    /// "a.out kludge", header flag 16; multiboot2's address tag): the file is copied from the byte
    /// that lands at <see cref="LoadAddress"/> up to <see cref="LoadEndAddress"/> (0: the end of the
    /// file), and memory up to <see cref="BssEndAddress"/> (0: none) is zeroed.
    /// </summary>
    public unsafe struct AddressFields
    {
        /// <summary>Where the multiboot header itself lands, and where it is in the file.</summary>
        public ulong HeaderAddress;
        /// <summary>The file offset of the multiboot header.</summary>
        public ulong HeaderOffset;
        /// <summary>Where the first copied byte of the file lands.</summary>
        public ulong LoadAddress;
        /// <summary>One past the last copied byte's address; 0 copies to the end of the file.</summary>
        public ulong LoadEndAddress;
        /// <summary>One past the zeroed bss; 0 means no bss.</summary>
        public ulong BssEndAddress;

        /// <summary>Computed by <see cref="Validate"/>: the file range copied and the end of the zeroed bss.</summary>
        public ulong FileOffset;
        /// <summary>Number of file bytes copied.</summary>
        public ulong FileSize;
        /// <summary>One past the last byte loaded or zeroed.</summary>
        public ulong MemoryEnd;

        /// <summary>Checks the fields against the file and guest RAM below 4 GiB.</summary>
        public bool Validate(in ImageReader image, in GuestMemoryMap map, out LoadError error)
        {
            error = default;
            if (LoadAddress > HeaderAddress)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: load_addr {x} is above header_addr {x}", LoadAddress, HeaderAddress);
                return false;
            }
            ulong before = HeaderAddress - LoadAddress;
            if (before > HeaderOffset)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: load_addr {x} lies before the start of the file (header_addr {x}, header at file offset {x})", LoadAddress, HeaderAddress, HeaderOffset);
                return false;
            }
            FileOffset = HeaderOffset - before;
            if (LoadEndAddress == 0)
                FileSize = image.Length - FileOffset;
            else
            {
                if (LoadEndAddress < LoadAddress)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: load_end_addr {x} is below load_addr {x}", LoadEndAddress, LoadAddress);
                    return false;
                }
                FileSize = LoadEndAddress - LoadAddress;
                if (!image.Contains(FileOffset, FileSize))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: load_end_addr {x} runs past the end of the file (load_addr {x}, file size {x})", LoadEndAddress, LoadAddress, image.Length);
                    return false;
                }
            }
            // Addresses are 32-bit fields, so LoadAddress + FileSize cannot overflow.
            ulong loadEnd = LoadAddress + FileSize;
            MemoryEnd = loadEnd;
            if (BssEndAddress != 0)
            {
                if (BssEndAddress < loadEnd)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: bss_end_addr {x} is below the end of the loaded file {x}", BssEndAddress, loadEnd);
                    return false;
                }
                MemoryEnd = BssEndAddress;
            }
            if (MemoryEnd == LoadAddress)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: nothing to load (load_addr {x}, load_end_addr {x})", LoadAddress, LoadEndAddress);
                return false;
            }
            if (MemoryEnd > GuestMemoryMap.FourGiB || !map.IsRam(LoadAddress, MemoryEnd - LoadAddress))
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "multiboot: the image is not inside guest RAM (load_addr {x}, end {x})", LoadAddress, MemoryEnd);
                return false;
            }
            return true;
        }

        /// <summary>True if <paramref name="gpa"/> is inside the loaded range.</summary>
        public readonly bool Contains(ulong gpa) => gpa >= LoadAddress && gpa < MemoryEnd;

        /// <summary>Copies the file range and zeroes the bss (after <see cref="Validate"/>).</summary>
        public readonly bool Load<TRam>(ref TRam ram, in ImageReader image) where TRam : struct, IGuestRam
        {
            if (FileSize != 0 && !ram.Write(LoadAddress, image.Data + FileOffset, FileSize))
                return false;
            ulong loadEnd = LoadAddress + FileSize;
            return MemoryEnd == loadEnd || ram.Zero(loadEnd, MemoryEnd - loadEnd);
        }
    }
}
