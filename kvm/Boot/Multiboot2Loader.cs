namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Multiboot2 (version 2.0): finds the header in the first 32768 bytes (8-byte aligned), walks
    /// its tags (information request, address, entry address, console, module alignment, EFI and
    /// relocatable tags are understood; the others are refused unless optional), loads the ELF
    /// image or the file by the address tag, writes the boot information tag list (command line,
    /// boot loader name, modules, basic memory information, memory map, end) above the image and
    /// enters in 32-bit protected mode with EAX = 0x36D76289 and EBX = the boot information.
    /// </summary>
    public static unsafe class Multiboot2Loader
    {
        /// <summary>The header's magic.</summary>
        public const uint HeaderMagic = 0xE852_50D6;
        /// <summary>EAX at entry.</summary>
        public const uint BootMagic = 0x36D7_6289;
        /// <summary>The header must lie in this many first bytes.</summary>
        public const ulong SearchLength = 32768;

        /// <summary>Header tag types (multiboot2 3.1.3 to 3.1.12).</summary>
        public const ushort TagEnd = 0, TagInformationRequest = 1, TagAddress = 2, TagEntryAddress = 3, TagConsoleFlags = 4,
            TagFramebuffer = 5, TagModuleAlign = 6, TagEfiBootServices = 7, TagEfiI386Entry = 8, TagEfiAmd64Entry = 9, TagRelocatable = 10;
        private const ushort TagOptional = 1;

        /// <summary>Boot information tag types (multiboot2 3.6): command line, loader name, module, basic memory, memory map.</summary>
        public const uint InfoCmdline = 1, InfoLoaderName = 2, InfoModule = 3, InfoBasicMemory = 4, InfoMemoryMap = 6;

        /// <summary>Bytes of a memory map entry (base, length, type, reserved).</summary>
        public const uint MapEntrySize = 24;

        /// <summary>What the header asked for.</summary>
        private struct Header
        {
            public ulong Offset;
            public bool HasAddress;
            public bool HasEntry;
            public AddressFields Fields;
            public ulong EntryAddress;
        }

        /// <summary>Finds the header: the first 8-byte-aligned magic in the first 32768 bytes whose checksum holds.</summary>
        public static bool FindHeader(in ImageReader image, out ulong offset, out LoadError error)
        {
            error = default;
            offset = 0;
            bool badChecksum = false;
            for (ulong at = 0; at + 16 <= SearchLength && image.Contains(at, 16); at += 8)
            {
                if (image.U32Unchecked(at) != HeaderMagic)
                    continue;
                uint architecture = image.U32Unchecked(at + 4);
                uint length = image.U32Unchecked(at + 8);
                uint checksum = image.U32Unchecked(at + 12);
                if (HeaderMagic + architecture + length + checksum == 0)
                {
                    offset = at;
                    return true;
                }
                if (!badChecksum)
                {
                    badChecksum = true;
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header at offset {x}: checksum {x} does not match (architecture {d}, ...)", at, checksum, architecture);
                }
            }
            if (!badChecksum)
                error = new LoadError(LoadErrorKind.NotThisFormat, "not a multiboot2 image: no header (magic 0xE85250D6) in the first 32768 bytes");
            return false;
        }

        private static bool ParseHeader(in ImageReader image, ulong at, out Header header, out LoadError error)
        {
            header = default;
            error = default;
            header.Offset = at;
            uint architecture = image.U32Unchecked(at + 4);
            uint length = image.U32Unchecked(at + 8);
            if (architecture != 0)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "multiboot2: header architecture {d} is not i386 (0)", architecture);
                return false;
            }
            if (length < 16 || !image.Contains(at, length))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: header_length {x} does not fit in the file (header at offset {x}, file size {x})", length, at, image.Length);
                return false;
            }
            ulong end = at + length;
            ulong tag = at + 16;
            while (true)
            {
                if (tag > end || end - tag < 8)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: the tag list has no end tag (header_length {x})", length);
                    return false;
                }
                image.U16(tag, out ushort type);
                image.U16(tag + 2, out ushort flags);
                image.U32(tag + 4, out uint size);
                if (size < 8 || size > end - tag)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: tag {d} at offset {x} has size {x}, outside the header", type, tag, size);
                    return false;
                }
                bool optional = (flags & TagOptional) != 0;
                switch (type)
                {
                    case TagEnd:
                        return true;
                    case TagInformationRequest:
                        for (ulong i = 8; i + 4 <= size; i += 4)
                        {
                            uint wanted = image.U32Unchecked(tag + i);
                            if (!optional && !Provides(wanted))
                            {
                                error = new LoadError(LoadErrorKind.Unsupported, "multiboot2: the header requires boot information tag {d}, which Tandem does not provide", wanted);
                                return false;
                            }
                        }
                        break;
                    case TagAddress:
                        if (size < 24)
                        {
                            error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: address tag size {d} is below 24", size);
                            return false;
                        }
                        header.HasAddress = true;
                        header.Fields.HeaderOffset = at;
                        header.Fields.HeaderAddress = image.U32Unchecked(tag + 8);
                        header.Fields.LoadAddress = image.U32Unchecked(tag + 12);
                        header.Fields.LoadEndAddress = image.U32Unchecked(tag + 16);
                        header.Fields.BssEndAddress = image.U32Unchecked(tag + 20);
                        break;
                    case TagEntryAddress:
                        if (size < 12)
                        {
                            error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: entry address tag size {d} is below 12", size);
                            return false;
                        }
                        header.HasEntry = true;
                        header.EntryAddress = image.U32Unchecked(tag + 8);
                        break;
                    case TagConsoleFlags:
                    case TagModuleAlign:
                    case TagEfiBootServices:
                    case TagEfiI386Entry:
                    case TagEfiAmd64Entry:
                    case TagRelocatable:
                        break;   // understood: modules are page-aligned, the image loads where it asks, no EFI
                    default:
                        if (!optional)
                        {
                            error = new LoadError(LoadErrorKind.Unsupported, "multiboot2: the header has required tag {d} (at offset {x}), which Tandem does not support", type, tag);
                            return false;
                        }
                        break;
                }
                ulong next = tag + ((size + 7UL) & ~7UL);
                tag = next;
            }
        }

        /// <summary>The boot information tags this loader writes (and the end tag).</summary>
        private static bool Provides(uint type) =>
            type == 0 || type == InfoCmdline || type == InfoLoaderName || type == InfoModule || type == InfoBasicMemory || type == InfoMemoryMap;

        /// <summary>Loads <paramref name="input"/>'s image into <paramref name="ram"/>; on failure nothing is written unless the error is <see cref="LoadErrorKind.WriteFailed"/>.</summary>
        public static bool Load<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
            where TRam : struct, IGuestRam
        {
            entry = default;
            var image = new ImageReader(input.Image, input.ImageLength);
            if (!FindHeader(image, out ulong at, out error) || !ParseHeader(image, at, out Header header, out error))
                return false;

            ElfImage elf = default;
            ulong entryPoint;
            ulong imageEnd;
            if (header.HasAddress)
            {
                if (!header.HasEntry)
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: an address tag without an entry address tag");
                    return false;
                }
                if (!header.Fields.Validate(image, map, out error))
                    return false;
                entryPoint = header.EntryAddress;
                if (!header.Fields.Contains(entryPoint))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: entry_addr {x} is outside the loaded image ({x} to {x})", entryPoint, header.Fields.LoadAddress, header.Fields.MemoryEnd);
                    return false;
                }
                imageEnd = header.Fields.MemoryEnd;
            }
            else
            {
                if (!ElfImage.HasMagic(image))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "multiboot2: the image is not ELF and its header has no address tag");
                    return false;
                }
                if (!ElfImage.Parse(image, out elf, out error) || !elf.ValidateSegments(image, map, GuestMemoryMap.FourGiB, out error))
                    return false;
                if (header.HasEntry)
                {
                    entryPoint = header.EntryAddress;
                    if (!elf.InsideSegment(image, entryPoint))
                    {
                        error = new LoadError(LoadErrorKind.Malformed, "bad multiboot2 header: entry_addr {x} is outside every loadable segment", entryPoint);
                        return false;
                    }
                }
                else if (!elf.PhysicalEntry(image, elf.Entry, out entryPoint))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: entry point {x} is outside every loadable segment", elf.Entry);
                    return false;
                }
                imageEnd = elf.EndAddress;
            }

            ulong cmdlineLength = BootStrings.Length(input.Cmdline, input.CmdlineLength);
            ulong infoSize = InfoSize(map, input, cmdlineLength);
            var placer = new GuestPlacer(map, imageEnd, GuestMemoryMap.FourGiB);
            if (!placer.Allocate(infoSize, 8, out ulong info) || !placer.Allocate(BootGdt.Size, 8, out ulong gdt))
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "multiboot2: no room in guest RAM below 4 GiB for the boot information ({x} bytes) above the image (image ends at {x})", infoSize, imageEnd);
                return false;
            }
            ulong firstModule = placer.Cursor;
            for (int i = 0; i < input.ModuleCount; i++)
            {
                if (!placer.Allocate(input.Modules[i].Length, GuestPlacer.PageSize, out _))
                {
                    error = new LoadError(LoadErrorKind.DoesNotFit, "multiboot2: module {d} ({x} bytes) does not fit in guest RAM below 4 GiB", (ulong)i, input.Modules[i].Length);
                    return false;
                }
            }

            bool ok = header.HasAddress ? header.Fields.Load(ref ram, image) : elf.LoadSegments(ref ram, image);
            ok = ok && BootGdt.Write(ref ram, gdt) && WriteInfo(ref ram, map, input, cmdlineLength, info, infoSize, firstModule);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.WriteFailed, "multiboot2: guest RAM could not be written (out of host memory?)");
                return false;
            }
            entry = BootEntry.Protected(entryPoint, gdt);
            entry.Rax = BootMagic;
            entry.Rbx = info;
            return true;
        }

        private static ulong Align8(ulong value) => (value + 7) & ~7UL;

        /// <summary>Bytes of the boot information: fixed part, then each tag padded to 8 bytes.</summary>
        private static ulong InfoSize(in GuestMemoryMap map, in BootInput input, ulong cmdlineLength)
        {
            ulong size = 8 + Align8(8 + cmdlineLength + 1) + Align8(8 + BootStrings.LoaderNameLength + 1) + 16
                + 16 + (ulong)map.Count * MapEntrySize + 8;
            for (int i = 0; i < input.ModuleCount; i++)
                size += Align8(16 + BootStrings.Length(input.Modules[i].Cmdline, input.Modules[i].CmdlineLength) + 1);
            return size;
        }

        private static bool WriteInfo<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, ulong cmdlineLength,
            ulong info, ulong infoSize, ulong firstModule) where TRam : struct, IGuestRam
        {
            // The whole block is zeroed first so the padding between tags is defined.
            if (!ram.Zero(info, infoSize))
                return false;
            uint* words = stackalloc uint[6];
            words[0] = (uint)infoSize;
            words[1] = 0;
            if (!ram.Write(info, (byte*)words, 8))
                return false;
            ulong at = info + 8;

            // Command line (type 1) and boot loader name (type 2): type, size, NUL-terminated string.
            words[0] = InfoCmdline;
            words[1] = (uint)(8 + cmdlineLength + 1);
            if (!ram.Write(at, (byte*)words, 8) || !BootStrings.Write(ref ram, at + 8, input.Cmdline, cmdlineLength))
                return false;
            at += Align8(words[1]);
            words[0] = InfoLoaderName;
            words[1] = 8 + BootStrings.LoaderNameLength + 1;
            if (!ram.Write(at, (byte*)words, 8) || !BootStrings.WriteLoaderName(ref ram, at + 8))
                return false;
            at += Align8(words[1]);

            // Modules (type 3): type, size, mod_start, mod_end, string.
            var placer = new GuestPlacer(map, firstModule, GuestMemoryMap.FourGiB);
            for (int i = 0; i < input.ModuleCount; i++)
            {
                BootModule m = input.Modules[i];
                placer.Allocate(m.Length, GuestPlacer.PageSize, out ulong data);
                ulong length = BootStrings.Length(m.Cmdline, m.CmdlineLength);
                words[0] = InfoModule;
                words[1] = (uint)(16 + length + 1);
                words[2] = (uint)data;
                words[3] = (uint)(data + m.Length);
                if ((m.Length != 0 && !ram.Write(data, m.Data, m.Length))
                    || !ram.Write(at, (byte*)words, 16) || !BootStrings.Write(ref ram, at + 16, m.Cmdline, length))
                    return false;
                at += Align8(words[1]);
            }

            // Basic memory information (type 4): mem_lower, mem_upper in KiB.
            words[0] = InfoBasicMemory;
            words[1] = 16;
            words[2] = (uint)map.LowerKiB;
            words[3] = (uint)map.UpperKiB;
            if (!ram.Write(at, (byte*)words, 16))
                return false;
            at += 16;

            // Memory map (type 6): type, size, entry_size, entry_version 0, entries.
            words[0] = InfoMemoryMap;
            words[1] = 16 + (uint)map.Count * MapEntrySize;
            words[2] = MapEntrySize;
            words[3] = 0;
            if (!ram.Write(at, (byte*)words, 16))
                return false;
            at += 16;
            byte* e = stackalloc byte[(int)MapEntrySize];
            for (int i = 0; i < map.Count; i++)
            {
                MemoryRange r = map.Get(i);
                *(ulong*)e = r.Start;
                *(ulong*)(e + 8) = r.Size;
                *(uint*)(e + 16) = (uint)r.Type;
                *(uint*)(e + 20) = 0;
                if (!ram.Write(at, e, MapEntrySize))
                    return false;
                at += MapEntrySize;
            }

            // End tag (type 0, size 8).
            words[0] = 0;
            words[1] = 8;
            return ram.Write(at, (byte*)words, 8);
        }
    }
}
