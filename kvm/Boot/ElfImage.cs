namespace Tandem.Kvm.Boot
{
    /// <summary>One program header of an ELF32 or ELF64 image, widened to 64 bits.</summary>
    public struct ElfSegment
    {
        /// <summary>p_type.</summary>
        public uint Type;
        /// <summary>p_offset.</summary>
        public ulong Offset;
        /// <summary>p_vaddr.</summary>
        public ulong VirtualAddress;
        /// <summary>p_paddr.</summary>
        public ulong PhysicalAddress;
        /// <summary>p_filesz.</summary>
        public ulong FileSize;
        /// <summary>p_memsz.</summary>
        public ulong MemorySize;
    }

    /// <summary>
    /// The ELF parts the loaders use (System V gABI, "ELF Header" and "Program Header"): the file
    /// header of ELF32 and ELF64 little-endian executables, their program headers, PT_LOAD segments
    /// loaded at their physical addresses with the bss zeroed, and note lookup in PT_NOTE segments
    /// and SHT_NOTE sections. Everything is checked against the file and the guest memory map
    /// before <see cref="LoadSegments"/> writes.
    /// </summary>
    public unsafe struct ElfImage
    {
        /// <summary>Program header and section types (gABI): PT_LOAD, PT_NOTE, SHT_NOTE.</summary>
        public const uint PtLoad = 1, PtNote = 4, ShtNote = 7;
        private const ushort EtExec = 2, EmI386 = 3, EmX8664 = 62;

        /// <summary>ELFCLASS64 rather than ELFCLASS32.</summary>
        public bool Is64;
        /// <summary>e_entry.</summary>
        public ulong Entry;
        /// <summary>e_phoff.</summary>
        public ulong ProgramHeaderOffset;
        /// <summary>e_phentsize.</summary>
        public uint ProgramHeaderSize;
        /// <summary>e_phnum.</summary>
        public uint ProgramHeaderCount;
        /// <summary>e_shoff.</summary>
        public ulong SectionHeaderOffset;
        /// <summary>e_shentsize.</summary>
        public uint SectionHeaderSize;
        /// <summary>e_shnum.</summary>
        public uint SectionHeaderCount;

        /// <summary>The lowest physical address of the PT_LOAD segments (after <see cref="ValidateSegments"/>).</summary>
        public ulong LowestAddress;
        /// <summary>One past the highest byte of the PT_LOAD segments.</summary>
        public ulong EndAddress;

        /// <summary>True if the image starts with the ELF magic (0x7F 'E' 'L' 'F').</summary>
        public static bool HasMagic(in ImageReader image) =>
            image.U32(0, out uint magic) && magic == 0x464C_457F;

        /// <summary>Reads and checks the file header and the extent of the program header table.</summary>
        public static bool Parse(in ImageReader image, out ElfImage elf, out LoadError error)
        {
            elf = default;
            error = default;
            if (!HasMagic(image))
            {
                error = new LoadError(LoadErrorKind.NotThisFormat, "not an ELF image: no ELF magic at offset 0");
                return false;
            }
            image.U8(4, out byte cls);
            image.U8(5, out byte data);
            if (cls != 1 && cls != 2)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: class {d} is neither ELF32 (1) nor ELF64 (2)", cls);
                return false;
            }
            if (data != 1)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "bad ELF: data encoding {d} is not little-endian (1)", data);
                return false;
            }
            elf.Is64 = cls == 2;
            ulong headerSize = elf.Is64 ? 64UL : 52UL;
            if (!image.Contains(0, headerSize))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: the file is {d} bytes, shorter than its {d}-byte header", image.Length, headerSize);
                return false;
            }
            image.U16(16, out ushort type);
            image.U16(18, out ushort machine);
            if (type != EtExec)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "bad ELF: e_type {d} is not an executable (2)", type);
                return false;
            }
            if (machine != EmI386 && machine != EmX8664)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "bad ELF: e_machine {d} is neither i386 (3) nor x86-64 (62)", machine);
                return false;
            }
            if (elf.Is64)
            {
                image.U64(24, out elf.Entry);
                image.U64(32, out elf.ProgramHeaderOffset);
                image.U64(40, out elf.SectionHeaderOffset);
                image.U16(54, out ushort phentsize);
                image.U16(56, out ushort phnum);
                image.U16(58, out ushort shentsize);
                image.U16(60, out ushort shnum);
                elf.ProgramHeaderSize = phentsize;
                elf.ProgramHeaderCount = phnum;
                elf.SectionHeaderSize = shentsize;
                elf.SectionHeaderCount = shnum;
            }
            else
            {
                image.U32(24, out uint entry);
                image.U32(28, out uint phoff);
                image.U32(32, out uint shoff);
                image.U16(42, out ushort phentsize);
                image.U16(44, out ushort phnum);
                image.U16(46, out ushort shentsize);
                image.U16(48, out ushort shnum);
                elf.Entry = entry;
                elf.ProgramHeaderOffset = phoff;
                elf.SectionHeaderOffset = shoff;
                elf.ProgramHeaderSize = phentsize;
                elf.ProgramHeaderCount = phnum;
                elf.SectionHeaderSize = shentsize;
                elf.SectionHeaderCount = shnum;
            }
            uint minimum = elf.Is64 ? 56u : 32u;
            if (elf.ProgramHeaderCount == 0)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: no program headers (e_phnum 0)");
                return false;
            }
            if (elf.ProgramHeaderSize < minimum)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: e_phentsize {d} is smaller than a program header ({d} bytes)", elf.ProgramHeaderSize, minimum);
                return false;
            }
            // At most 65535 entries of at most 65535 bytes: the product cannot overflow.
            ulong tableSize = (ulong)elf.ProgramHeaderSize * elf.ProgramHeaderCount;
            if (!image.Contains(elf.ProgramHeaderOffset, tableSize))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: the program header table ends past the file (offset {x}, size {x})", elf.ProgramHeaderOffset, tableSize);
                return false;
            }
            return true;
        }

        /// <summary>Program header <paramref name="index"/> (the table was checked by <see cref="Parse"/>).</summary>
        public readonly ElfSegment Segment(in ImageReader image, uint index)
        {
            ElfSegment s = default;
            ulong at = ProgramHeaderOffset + (ulong)index * ProgramHeaderSize;
            image.U32(at, out s.Type);
            if (Is64)
            {
                image.U64(at + 8, out s.Offset);
                image.U64(at + 16, out s.VirtualAddress);
                image.U64(at + 24, out s.PhysicalAddress);
                image.U64(at + 32, out s.FileSize);
                image.U64(at + 40, out s.MemorySize);
            }
            else
            {
                image.U32(at + 4, out uint offset);
                image.U32(at + 8, out uint vaddr);
                image.U32(at + 12, out uint paddr);
                image.U32(at + 16, out uint filesz);
                image.U32(at + 20, out uint memsz);
                s.Offset = offset;
                s.VirtualAddress = vaddr;
                s.PhysicalAddress = paddr;
                s.FileSize = filesz;
                s.MemorySize = memsz;
            }
            return s;
        }

        /// <summary>
        /// Checks every PT_LOAD segment: file size at most memory size, its bytes inside the file,
        /// its memory inside guest RAM and below <paramref name="limit"/>. Records the extent.
        /// </summary>
        public bool ValidateSegments(in ImageReader image, in GuestMemoryMap map, ulong limit, out LoadError error)
        {
            error = default;
            bool any = false;
            LowestAddress = ulong.MaxValue;
            EndAddress = 0;
            for (uint i = 0; i < ProgramHeaderCount; i++)
            {
                ElfSegment s = Segment(image, i);
                if (s.Type != PtLoad)
                    continue;
                if (s.FileSize > s.MemorySize)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: program header {d} has p_filesz {x} larger than p_memsz {x}", i, s.FileSize, s.MemorySize);
                    return false;
                }
                if (!image.Contains(s.Offset, s.FileSize))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: program header {d} ends past the file (offset {x}, size {x})", i, s.Offset, s.FileSize);
                    return false;
                }
                if (s.MemorySize == 0)
                    continue;
                if (s.PhysicalAddress > ulong.MaxValue - s.MemorySize)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: program header {d} wraps around the address space (p_paddr {x}, p_memsz {x})", i, s.PhysicalAddress, s.MemorySize);
                    return false;
                }
                ulong end = s.PhysicalAddress + s.MemorySize;
                if (end > limit)
                {
                    error = new LoadError(LoadErrorKind.Unsupported, "ELF: program header {d} ends above what a 32-bit entry reaches (p_paddr {x}, p_memsz {x})", i, s.PhysicalAddress, s.MemorySize);
                    return false;
                }
                if (!map.IsRam(s.PhysicalAddress, s.MemorySize))
                {
                    error = new LoadError(LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM (p_paddr {x}, p_memsz {x})", i, s.PhysicalAddress, s.MemorySize);
                    return false;
                }
                any = true;
                if (s.PhysicalAddress < LowestAddress)
                    LowestAddress = s.PhysicalAddress;
                if (end > EndAddress)
                    EndAddress = end;
            }
            if (!any)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad ELF: no PT_LOAD segment with a non-zero p_memsz");
                return false;
            }
            return true;
        }

        /// <summary>
        /// The physical address of the entry point: e_entry translated through the PT_LOAD segment
        /// whose virtual range holds it (p_paddr + e_entry - p_vaddr), or e_entry itself when it is
        /// inside a segment's physical range. False if it is in neither.
        /// </summary>
        public readonly bool PhysicalEntry(in ImageReader image, ulong entry, out ulong physical)
        {
            for (uint i = 0; i < ProgramHeaderCount; i++)
            {
                ElfSegment s = Segment(image, i);
                if (s.Type == PtLoad && s.MemorySize != 0 && entry >= s.VirtualAddress && entry - s.VirtualAddress < s.MemorySize)
                {
                    physical = s.PhysicalAddress + (entry - s.VirtualAddress);
                    return true;
                }
            }
            for (uint i = 0; i < ProgramHeaderCount; i++)
            {
                ElfSegment s = Segment(image, i);
                if (s.Type == PtLoad && s.MemorySize != 0 && entry >= s.PhysicalAddress && entry - s.PhysicalAddress < s.MemorySize)
                {
                    physical = entry;
                    return true;
                }
            }
            physical = 0;
            return false;
        }

        /// <summary>True if [gpa, gpa + 1) is inside a PT_LOAD segment's physical range.</summary>
        public readonly bool InsideSegment(in ImageReader image, ulong gpa)
        {
            for (uint i = 0; i < ProgramHeaderCount; i++)
            {
                ElfSegment s = Segment(image, i);
                if (s.Type == PtLoad && s.MemorySize != 0 && gpa >= s.PhysicalAddress && gpa - s.PhysicalAddress < s.MemorySize)
                    return true;
            }
            return false;
        }

        /// <summary>Copies the PT_LOAD segments (checked by <see cref="ValidateSegments"/>) and zeroes their bss.</summary>
        public readonly bool LoadSegments<TRam>(ref TRam ram, in ImageReader image) where TRam : struct, IGuestRam
        {
            for (uint i = 0; i < ProgramHeaderCount; i++)
            {
                ElfSegment s = Segment(image, i);
                if (s.Type != PtLoad || s.MemorySize == 0)
                    continue;
                if (s.FileSize != 0 && !ram.Write(s.PhysicalAddress, image.Data + s.Offset, s.FileSize))
                    return false;
                if (s.MemorySize > s.FileSize && !ram.Zero(s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize))
                    return false;
            }
            return true;
        }
    }
}
