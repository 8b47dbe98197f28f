namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Looks up an ELF note (gABI "Note Section": namesz, descsz, type, then the name and the
    /// descriptor, each padded to 4 bytes) in the PT_NOTE segments of an image and, when none has
    /// it, in its SHT_NOTE sections. Every size is checked against the note area and the file.
    /// </summary>
    public static class ElfNotes
    {
        /// <summary>
        /// Finds the first note named <c>"Xen"</c> of <paramref name="type"/>; returns its
        /// descriptor's file offset and size. False with no error if there is none; false with an
        /// error if a note area is malformed.
        /// </summary>
        public static bool FindXen(in ImageReader image, in ElfImage elf, uint type, out ulong descOffset, out ulong descSize, out LoadError error)
        {
            descOffset = 0;
            descSize = 0;
            error = default;
            for (uint i = 0; i < elf.ProgramHeaderCount; i++)
            {
                ElfSegment s = elf.Segment(image, i);
                if (s.Type != ElfImage.PtNote)
                    continue;
                if (!image.Contains(s.Offset, s.FileSize))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: note program header {d} ends past the file (offset {x}, size {x})", i, s.Offset, s.FileSize);
                    return false;
                }
                if (Search(image, s.Offset, s.FileSize, type, out descOffset, out descSize))
                    return true;
            }
            if (elf.SectionHeaderCount == 0)
                return false;
            uint entrySize = elf.Is64 ? 64u : 40u;
            if (elf.SectionHeaderSize < entrySize)
                return false;   // the section table is optional for loading: ignore a broken one
            ulong tableSize = (ulong)elf.SectionHeaderSize * elf.SectionHeaderCount;
            if (!image.Contains(elf.SectionHeaderOffset, tableSize))
                return false;
            for (uint i = 0; i < elf.SectionHeaderCount; i++)
            {
                ulong at = elf.SectionHeaderOffset + (ulong)i * elf.SectionHeaderSize;
                image.U32(at + 4, out uint sectionType);
                if (sectionType != ElfImage.ShtNote)
                    continue;
                ulong offset, size;
                if (elf.Is64)
                {
                    image.U64(at + 24, out offset);
                    image.U64(at + 32, out size);
                }
                else
                {
                    image.U32(at + 16, out uint o);
                    image.U32(at + 20, out uint z);
                    offset = o;
                    size = z;
                }
                if (!image.Contains(offset, size))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: note section {d} ends past the file (offset {x}, size {x})", i, offset, size);
                    return false;
                }
                if (Search(image, offset, size, type, out descOffset, out descSize))
                    return true;
            }
            return false;
        }

        /// <summary>Walks the notes in [offset, offset + size) (inside the file) for a "Xen" note of <paramref name="type"/>.</summary>
        private static bool Search(in ImageReader image, ulong offset, ulong size, uint type, out ulong descOffset, out ulong descSize)
        {
            descOffset = 0;
            descSize = 0;
            ulong end = offset + size;
            ulong at = offset;
            while (at <= end && end - at >= 12)
            {
                uint nameSize = image.U32Unchecked(at);
                uint descriptorSize = image.U32Unchecked(at + 4);
                uint noteType = image.U32Unchecked(at + 8);
                ulong name = at + 12;
                ulong paddedName = ((ulong)nameSize + 3) & ~3UL;
                if (paddedName > end - name)
                    return false;
                ulong desc = name + paddedName;
                ulong paddedDesc = ((ulong)descriptorSize + 3) & ~3UL;
                if (paddedDesc > end - desc)
                    return false;
                if (noteType == type && nameSize == 4 && image.U32Unchecked(name) == 0x006E_6558)   // "Xen\0"
                {
                    descOffset = desc;
                    descSize = descriptorSize;
                    return true;
                }
                at = desc + paddedDesc;
            }
            return false;
        }
    }
}
