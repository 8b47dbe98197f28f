namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Multiboot (version 0.6.96): finds the header in the first 8192 bytes, loads an ELF32/ELF64
    /// image at its physical addresses or the file by the header's address fields (flag 16), places
    /// the command line, the modules and the multiboot information block above the image, and
    /// enters in 32-bit protected mode with EAX = 0x2BADB002 and EBX = the information block.
    /// </summary>
    public static unsafe class MultibootLoader
    {
        /// <summary>The header's magic.</summary>
        public const uint HeaderMagic = 0x1BAD_B002;
        /// <summary>EAX at entry.</summary>
        public const uint BootMagic = 0x2BAD_B002;
        /// <summary>The header must lie in this many first bytes.</summary>
        public const ulong SearchLength = 8192;

        /// <summary>Flag bits 0-15 are requirements; bit 0 (page-aligned modules), 1 (memory information) and 2 (video mode, ignored) are accepted.</summary>
        private const uint FlagsUnsupported = 0xFFF8;
        private const uint FlagAddressFields = 1 << 16;

        /// <summary>Information block flags (multiboot 3.3): mem_*, cmdline, mods, mmap, boot_loader_name.</summary>
        public const uint InfoMemory = 1 << 0, InfoCmdline = 1 << 2, InfoModules = 1 << 3, InfoMemoryMap = 1 << 6, InfoLoaderName = 1 << 9;
        /// <summary>Bytes of the information block (up to the framebuffer fields).</summary>
        public const uint InfoSize = 120;
        /// <summary>Bytes of a module list entry.</summary>
        public const uint ModuleEntrySize = 16;
        /// <summary>Bytes of a memory map entry, size field included.</summary>
        public const uint MapEntrySize = 24;

        /// <summary>Finds the header: the first 4-byte-aligned magic in the first 8192 bytes whose checksum holds.</summary>
        public static bool FindHeader(in ImageReader image, out ulong offset, out LoadError error)
        {
            error = default;
            offset = 0;
            bool badChecksum = false;
            for (ulong at = 0; at + 12 <= SearchLength && image.Contains(at, 12); at += 4)
            {
                if (image.U32Unchecked(at) != HeaderMagic)
                    continue;
                uint flags = image.U32Unchecked(at + 4);
                uint checksum = image.U32Unchecked(at + 8);
                if (HeaderMagic + flags + checksum == 0)
                {
                    offset = at;
                    return true;
                }
                if (!badChecksum)
                {
                    badChecksum = true;
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header at offset {x}: checksum {x} does not match flags {x}", at, checksum, flags);
                }
            }
            if (!badChecksum)
                error = new LoadError(LoadErrorKind.NotThisFormat, "not a multiboot image: no header (magic 0x1BADB002) in the first 8192 bytes");
            return false;
        }

        /// <summary>Loads <paramref name="input"/>'s image into <paramref name="ram"/>; on failure nothing is written unless the error is <see cref="LoadErrorKind.WriteFailed"/>.</summary>
        public static bool Load<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
            where TRam : struct, IGuestRam
        {
            entry = default;
            var image = new ImageReader(input.Image, input.ImageLength);
            if (!FindHeader(image, out ulong header, out error))
                return false;
            uint flags = image.U32Unchecked(header + 4);
            if ((flags & FlagsUnsupported) != 0)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "multiboot: header flags {x} require features Tandem does not offer (bits {x})", flags, flags & FlagsUnsupported);
                return false;
            }

            // Validate the image and choose where it goes, writing nothing yet.
            bool useFields = (flags & FlagAddressFields) != 0;
            AddressFields fields = default;
            ElfImage elf = default;
            ulong entryPoint;
            ulong imageEnd;
            if (useFields)
            {
                if (!image.Contains(header, 32))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header at offset {x}: flag 16 is set but the address fields end past the file (file size {x})", header, image.Length);
                    return false;
                }
                fields.HeaderOffset = header;
                fields.HeaderAddress = image.U32Unchecked(header + 12);
                fields.LoadAddress = image.U32Unchecked(header + 16);
                fields.LoadEndAddress = image.U32Unchecked(header + 20);
                fields.BssEndAddress = image.U32Unchecked(header + 24);
                entryPoint = image.U32Unchecked(header + 28);
                if (!fields.Validate(image, map, out error))
                    return false;
                if (!fields.Contains(entryPoint))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad multiboot header: entry_addr {x} is outside the loaded image ({x} to {x})", entryPoint, fields.LoadAddress, fields.MemoryEnd);
                    return false;
                }
                imageEnd = fields.MemoryEnd;
            }
            else
            {
                if (!ElfImage.HasMagic(image))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "multiboot: the image is not ELF and its header has no address fields (flag 16 clear)");
                    return false;
                }
                if (!ElfImage.Parse(image, out elf, out error) || !elf.ValidateSegments(image, map, GuestMemoryMap.FourGiB, out error))
                    return false;
                if (!elf.PhysicalEntry(image, elf.Entry, out entryPoint))
                {
                    error = new LoadError(LoadErrorKind.Malformed, "bad ELF: entry point {x} is outside every loadable segment", elf.Entry);
                    return false;
                }
                imageEnd = elf.EndAddress;
            }

            Layout layout;
            if (!Place(map, input, imageEnd, out layout, out error))
                return false;

            // Everything is checked: write.
            bool ok = useFields ? fields.Load(ref ram, image) : elf.LoadSegments(ref ram, image);
            ok = ok && WriteInfo(ref ram, map, input, layout);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.WriteFailed, "multiboot: guest RAM could not be written (out of host memory?)");
                return false;
            }
            entry = BootEntry.Protected(entryPoint, layout.Gdt);
            entry.Rax = BootMagic;
            entry.Rbx = layout.Info;
            return true;
        }

        /// <summary>Where the information block and what it points to go.</summary>
        private struct Layout
        {
            public ulong Info, Map, Cmdline, CmdlineLength, Name, Modules, Gdt, FirstModule;
        }

        private static bool Place(in GuestMemoryMap map, in BootInput input, ulong imageEnd, out Layout layout, out LoadError error)
        {
            layout = default;
            error = default;
            var placer = new GuestPlacer(map, imageEnd, GuestMemoryMap.FourGiB);
            layout.CmdlineLength = BootStrings.Length(input.Cmdline, input.CmdlineLength);
            bool ok = placer.Allocate(InfoSize, 8, out layout.Info)
                && placer.Allocate((ulong)map.Count * MapEntrySize, 8, out layout.Map)
                && placer.Allocate(BootGdt.Size, 8, out layout.Gdt)
                && placer.Allocate(layout.CmdlineLength + 1, 1, out layout.Cmdline)
                && placer.Allocate(BootStrings.LoaderNameLength + 1, 1, out layout.Name)
                && placer.Allocate((ulong)input.ModuleCount * ModuleEntrySize, 8, out layout.Modules);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "multiboot: no room in guest RAM below 4 GiB for the boot information above the image (image ends at {x})", imageEnd);
                return false;
            }
            // The modules and their command lines follow, in order; PlaceModule recomputes the same addresses.
            GuestPlacer probe = placer;
            for (int i = 0; i < input.ModuleCount; i++)
            {
                if (!PlaceModule(ref probe, input.Modules[i], out _, out _))
                {
                    error = new LoadError(LoadErrorKind.DoesNotFit, "multiboot: module {d} ({x} bytes) does not fit in guest RAM below 4 GiB", (ulong)i, input.Modules[i].Length);
                    return false;
                }
            }
            layout.FirstModule = placer.Cursor;
            return true;
        }

        /// <summary>A module at the next page boundary, its command line after it.</summary>
        private static bool PlaceModule(ref GuestPlacer placer, in BootModule module, out ulong data, out ulong cmdline)
        {
            cmdline = 0;
            return placer.Allocate(module.Length, GuestPlacer.PageSize, out data)
                && placer.Allocate(BootStrings.Length(module.Cmdline, module.CmdlineLength) + 1, 1, out cmdline);
        }

        private static bool WriteInfo<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, in Layout layout) where TRam : struct, IGuestRam
        {
            uint* info = stackalloc uint[(int)(InfoSize / 4)];
            new System.Span<uint>(info, (int)(InfoSize / 4)).Clear();
            info[0] = InfoMemory | InfoCmdline | InfoMemoryMap | InfoLoaderName | (input.ModuleCount > 0 ? InfoModules : 0);
            info[1] = (uint)map.LowerKiB;
            info[2] = (uint)map.UpperKiB;
            info[4] = (uint)layout.Cmdline;
            info[5] = (uint)input.ModuleCount;
            info[6] = input.ModuleCount > 0 ? (uint)layout.Modules : 0;
            info[11] = (uint)map.Count * MapEntrySize;          // mmap_length
            info[12] = (uint)layout.Map;                         // mmap_addr
            info[16] = (uint)layout.Name;                        // boot_loader_name
            if (!ram.Write(layout.Info, (byte*)info, InfoSize))
                return false;

            // Memory map entries: size (20, not counting itself), base_addr, length, type.
            byte* entry = stackalloc byte[(int)MapEntrySize];
            for (int i = 0; i < map.Count; i++)
            {
                MemoryRange r = map.Get(i);
                *(uint*)entry = MapEntrySize - 4;
                *(ulong*)(entry + 4) = r.Start;
                *(ulong*)(entry + 12) = r.Size;
                *(uint*)(entry + 20) = (uint)r.Type;
                if (!ram.Write(layout.Map + (ulong)i * MapEntrySize, entry, MapEntrySize))
                    return false;
            }
            if (!BootGdt.Write(ref ram, layout.Gdt)
                || !BootStrings.Write(ref ram, layout.Cmdline, input.Cmdline, layout.CmdlineLength)
                || !BootStrings.WriteLoaderName(ref ram, layout.Name))
                return false;

            var placer = new GuestPlacer(map, layout.FirstModule, GuestMemoryMap.FourGiB);
            uint* module = stackalloc uint[4];
            for (int i = 0; i < input.ModuleCount; i++)
            {
                BootModule m = input.Modules[i];
                PlaceModule(ref placer, m, out ulong data, out ulong cmdline);
                module[0] = (uint)data;
                module[1] = (uint)(data + m.Length);
                module[2] = (uint)cmdline;
                module[3] = 0;
                if ((m.Length != 0 && !ram.Write(data, m.Data, m.Length))
                    || !BootStrings.Write(ref ram, cmdline, m.Cmdline, BootStrings.Length(m.Cmdline, m.CmdlineLength))
                    || !ram.Write(layout.Modules + (ulong)i * ModuleEntrySize, (byte*)module, ModuleEntrySize))
                    return false;
            }
            return true;
        }
    }
}
