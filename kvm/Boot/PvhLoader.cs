namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// PVH (Xen's "x86/HVM direct boot ABI", xen/include/public/arch-x86/hvm/start_info.h): an ELF32
    /// or ELF64 vmlinux whose XEN_ELFNOTE_PHYS32_ENTRY note (type 18, name "Xen") gives a 32-bit
    /// physical entry point. The PT_LOAD segments are loaded at their physical addresses; an
    /// hvm_start_info (version 1, with the memory map), the module list, the command lines and the
    /// modules are placed above the image; the guest enters in 32-bit protected mode, paging off,
    /// with EBX = the hvm_start_info.
    /// </summary>
    public static unsafe class PvhLoader
    {
        /// <summary>XEN_ELFNOTE_PHYS32_ENTRY.</summary>
        public const uint Phys32EntryNote = 18;
        /// <summary>hvm_start_info.magic ("xEn3" with bit 7 of each byte set differently).</summary>
        public const uint StartInfoMagic = 0x336E_C578;
        /// <summary>Bytes of hvm_start_info version 1, hvm_modlist_entry and hvm_memmap_table_entry.</summary>
        public const uint StartInfoSize = 56, ModuleEntrySize = 32, MapEntrySize = 24;

        /// <summary>Finds the PHYS32_ENTRY note and returns its entry address.</summary>
        public static bool FindEntry(in ImageReader image, in ElfImage elf, out ulong entryPoint, out LoadError error)
        {
            entryPoint = 0;
            if (!ElfNotes.FindXen(image, elf, Phys32EntryNote, out ulong desc, out ulong size, out error))
            {
                if (!error.IsError)
                    error = new LoadError(LoadErrorKind.NotThisFormat, "not a PVH kernel: no Xen note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)");
                return false;
            }
            if (size == 4)
            {
                image.U32(desc, out uint value);
                entryPoint = value;
                return true;
            }
            if (size == 8)
            {
                image.U64(desc, out entryPoint);
                if (entryPoint < GuestMemoryMap.FourGiB)
                    return true;
                error = new LoadError(LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY {x} is above 4 GiB", entryPoint);
                return false;
            }
            error = new LoadError(LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY descriptor is {d} bytes (expected 4 or 8)", size);
            return false;
        }

        /// <summary>Loads <paramref name="input"/>'s image into <paramref name="ram"/>; on failure nothing is written unless the error is <see cref="LoadErrorKind.WriteFailed"/>.</summary>
        public static bool Load<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
            where TRam : struct, IGuestRam
        {
            entry = default;
            var image = new ImageReader(input.Image, input.ImageLength);
            if (!ElfImage.Parse(image, out ElfImage elf, out error) || !FindEntry(image, elf, out ulong entryPoint, out error)
                || !elf.ValidateSegments(image, map, GuestMemoryMap.FourGiB, out error))
                return false;
            if (!elf.InsideSegment(image, entryPoint))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY {x} is outside every loadable segment", entryPoint);
                return false;
            }

            ulong cmdlineLength = BootStrings.Length(input.Cmdline, input.CmdlineLength);
            var placer = new GuestPlacer(map, elf.EndAddress, GuestMemoryMap.FourGiB);
            bool ok = placer.Allocate(StartInfoSize, 8, out ulong startInfo)
                & placer.Allocate((ulong)input.ModuleCount * ModuleEntrySize, 8, out ulong modlist)
                & placer.Allocate((ulong)map.Count * MapEntrySize, 8, out ulong memmap)
                & placer.Allocate(BootGdt.Size, 8, out ulong gdt)
                & placer.Allocate(cmdlineLength + 1, 1, out ulong cmdline);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "PVH: no room in guest RAM below 4 GiB for hvm_start_info above the image (image ends at {x})", elf.EndAddress);
                return false;
            }
            ulong firstModule = placer.Cursor;
            for (int i = 0; i < input.ModuleCount; i++)
            {
                if (!PlaceModule(ref placer, input.Modules[i], out _, out _))
                {
                    error = new LoadError(LoadErrorKind.DoesNotFit, "PVH: module {d} ({x} bytes) does not fit in guest RAM below 4 GiB", (ulong)i, input.Modules[i].Length);
                    return false;
                }
            }

            ok = elf.LoadSegments(ref ram, image) && BootGdt.Write(ref ram, gdt)
                && BootStrings.Write(ref ram, cmdline, input.Cmdline, cmdlineLength)
                && WriteMemoryMap(ref ram, map, memmap)
                && WriteModules(ref ram, map, input, modlist, firstModule)
                && WriteStartInfo(ref ram, map, input, startInfo, modlist, cmdline, memmap);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.WriteFailed, "PVH: guest RAM could not be written (out of host memory?)");
                return false;
            }
            entry = BootEntry.Protected(entryPoint, gdt);
            entry.Rbx = startInfo;
            return true;
        }

        private static bool PlaceModule(ref GuestPlacer placer, in BootModule module, out ulong data, out ulong cmdline)
        {
            cmdline = 0;
            return placer.Allocate(module.Length, GuestPlacer.PageSize, out data)
                && placer.Allocate(BootStrings.Length(module.Cmdline, module.CmdlineLength) + 1, 1, out cmdline);
        }

        private static bool WriteStartInfo<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, ulong at, ulong modlist, ulong cmdline, ulong memmap)
            where TRam : struct, IGuestRam
        {
            byte* info = stackalloc byte[(int)StartInfoSize];
            new System.Span<byte>(info, (int)StartInfoSize).Clear();
            *(uint*)info = StartInfoMagic;
            *(uint*)(info + 4) = 1;                                // version
            *(uint*)(info + 8) = 0;                                // flags
            *(uint*)(info + 12) = (uint)input.ModuleCount;         // nr_modules
            *(ulong*)(info + 16) = input.ModuleCount > 0 ? modlist : 0;
            *(ulong*)(info + 24) = cmdline;
            *(ulong*)(info + 32) = input.RsdpAddress;
            *(ulong*)(info + 40) = memmap;                         // memmap_paddr (version 1)
            *(uint*)(info + 48) = (uint)map.Count;                 // memmap_entries
            return ram.Write(at, info, StartInfoSize);
        }

        private static bool WriteMemoryMap<TRam>(ref TRam ram, in GuestMemoryMap map, ulong at) where TRam : struct, IGuestRam
        {
            byte* e = stackalloc byte[(int)MapEntrySize];
            for (int i = 0; i < map.Count; i++)
            {
                MemoryRange r = map.Get(i);
                *(ulong*)e = r.Start;
                *(ulong*)(e + 8) = r.Size;
                *(uint*)(e + 16) = (uint)r.Type;
                *(uint*)(e + 20) = 0;
                if (!ram.Write(at + (ulong)i * MapEntrySize, e, MapEntrySize))
                    return false;
            }
            return true;
        }

        private static bool WriteModules<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, ulong modlist, ulong firstModule)
            where TRam : struct, IGuestRam
        {
            var placer = new GuestPlacer(map, firstModule, GuestMemoryMap.FourGiB);
            ulong* e = stackalloc ulong[4];
            for (int i = 0; i < input.ModuleCount; i++)
            {
                BootModule m = input.Modules[i];
                PlaceModule(ref placer, m, out ulong data, out ulong cmdline);
                e[0] = data;
                e[1] = m.Length;
                e[2] = cmdline;
                e[3] = 0;
                if ((m.Length != 0 && !ram.Write(data, m.Data, m.Length))
                    || !BootStrings.Write(ref ram, cmdline, m.Cmdline, BootStrings.Length(m.Cmdline, m.CmdlineLength))
                    || !ram.Write(modlist + (ulong)i * ModuleEntrySize, (byte*)e, ModuleEntrySize))
                    return false;
            }
            return true;
        }
    }
}
