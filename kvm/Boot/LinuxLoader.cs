namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry, for bzImages of
    /// protocol 2.06 or later that set XLF_KERNEL_64: parses the setup header at 0x1F1, places the
    /// protected-mode kernel at pref_address (or, when relocatable, at the first kernel_alignment
    /// boundary from 1 MiB that fits), the initrd (the first module) as high as initrd_addr_max
    /// allows (above the kernel, else below it), builds the zero page (boot_params) with the e820 map, and an identity map of the
    /// first 4 GiB with 2 MiB pages, and enters at load address + 0x200 in long mode with RSI = the
    /// zero page, CS = __BOOT_CS (0x10), DS = ES = SS = __BOOT_DS (0x18), interrupts off.
    /// </summary>
    public static unsafe class LinuxLoader
    {
        /// <summary>Fixed guest-physical layout below 640 KiB (the kernel and initrd go above 1 MiB).</summary>
        public const ulong GdtAddress = 0x500, ZeroPage = 0x7000, StackTop = 0x8FF0, Pml4 = 0x9000, Pdpt = 0xA000, PageDirectories = 0xB000,
            CmdlineAddress = 0x2_0000, CmdlineMax = 0x1_0000;

        /// <summary>Setup header and boot_params offsets (boot.rst "The real-mode kernel header", zero-page.rst).</summary>
        public const ulong SetupSects = 0x1F1, BootFlag = 0x1FE, Jump = 0x200, HeaderMagicOffset = 0x202, Version = 0x206,
            TypeOfLoader = 0x210, LoadFlags = 0x211, Code32Start = 0x214, RamdiskImage = 0x218, RamdiskSize = 0x21C,
            CmdLinePtr = 0x228, InitrdAddrMax = 0x22C, KernelAlignment = 0x230, RelocatableKernel = 0x234, XLoadFlags = 0x236,
            CmdlineSize = 0x238, HardwareSubarch = 0x23C, SetupData = 0x250, PrefAddress = 0x258, InitSize = 0x260,
            AcpiRsdpAddr = 0x070, ExtRamdiskImage = 0x0C0, ExtRamdiskSize = 0x0C4, ExtCmdLinePtr = 0x0C8, E820Entries = 0x1E8, E820Table = 0x2D0,
            SetupHeaderLimit = 0x290;

        /// <summary>"HdrS".</summary>
        public const uint HeaderMagic = 0x5372_6448;
        /// <summary>loadflags.LOADED_HIGH and xloadflags.XLF_KERNEL_64.</summary>
        public const uint LoadedHigh = 1, XlfKernel64 = 1;
        /// <summary>Bytes of an e820 entry (addr, size, type).</summary>
        public const uint E820EntrySize = 20;
        private const ulong OneMiB = 0x10_0000;

        private struct Plan
        {
            public ulong SetupSize;
            public ulong KernelSize;
            public ulong HeaderEnd;
            public ulong LoadAddress;
            public ulong CmdlineLength;
            public ulong InitrdAddress;
            public ulong InitrdSize;
        }

        /// <summary>True if the image has the "HdrS" signature of a Linux setup header.</summary>
        public static bool HasSetupHeader(in ImageReader image) =>
            image.U32(HeaderMagicOffset, out uint magic) && magic == HeaderMagic;

        /// <summary>Loads <paramref name="input"/>'s image into <paramref name="ram"/>; on failure nothing is written unless the error is <see cref="LoadErrorKind.WriteFailed"/>.</summary>
        public static bool Load<TRam>(ref TRam ram, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
            where TRam : struct, IGuestRam
        {
            entry = default;
            var image = new ImageReader(input.Image, input.ImageLength);
            if (!Validate(image, map, input, out Plan plan, out error))
                return false;

            bool ok = BootGdt.Write(ref ram, GdtAddress)
                && WritePageTables(ref ram)
                && BootStrings.Write(ref ram, CmdlineAddress, input.Cmdline, plan.CmdlineLength)
                && ram.Write(plan.LoadAddress, image.Data + plan.SetupSize, plan.KernelSize)
                && (plan.InitrdSize == 0 || ram.Write(plan.InitrdAddress, input.Modules[0].Data, plan.InitrdSize))
                && WriteZeroPage(ref ram, image, map, plan, input.RsdpAddress);
            if (!ok)
            {
                error = new LoadError(LoadErrorKind.WriteFailed, "Linux: guest RAM could not be written (out of host memory?)");
                return false;
            }
            entry = BootEntry.Long(plan.LoadAddress + 0x200, Pml4, GdtAddress);
            entry.Rsi = ZeroPage;
            entry.Rsp = StackTop;
            return true;
        }

        private static bool Validate(in ImageReader image, in GuestMemoryMap map, in BootInput input, out Plan plan, out LoadError error)
        {
            plan = default;
            error = default;
            if (!HasSetupHeader(image))
            {
                error = new LoadError(LoadErrorKind.NotThisFormat, "not a Linux bzImage: no \"HdrS\" at offset 0x202");
                return false;
            }
            if (!image.Contains(0, InitSize + 4))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad bzImage: the file is {d} bytes, too short for a setup header of protocol 2.12 (0x264 bytes)", image.Length);
                return false;
            }
            image.U16(BootFlag, out ushort bootFlag);
            image.U16(Version, out ushort version);
            image.U8(LoadFlags, out byte loadFlags);
            image.U8(SetupSects, out byte setupSects);
            image.U8(Jump + 1, out byte jump);
            if (bootFlag != 0xAA55)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad bzImage: boot_flag {x} is not 0xAA55", bootFlag);
                return false;
            }
            if (version < 0x206)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "Linux: boot protocol version {x} is older than 2.06 (0x206)", version);
                return false;
            }
            if ((loadFlags & LoadedHigh) == 0)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "Linux: loadflags {x} lack LOADED_HIGH (a zImage, not a bzImage)", loadFlags);
                return false;
            }
            ushort xloadFlags = 0;
            if (version >= 0x20C)
                image.U16(XLoadFlags, out xloadFlags);
            if ((xloadFlags & XlfKernel64) == 0)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "Linux: xloadflags {x} lack XLF_KERNEL_64 (no 64-bit entry point; protocol {x})", xloadFlags, version);
                return false;
            }

            // The setup header ends at 0x202 + the byte at 0x201; boot_params keeps it below 0x290.
            plan.HeaderEnd = 0x202UL + jump;
            if (plan.HeaderEnd > SetupHeaderLimit)
                plan.HeaderEnd = SetupHeaderLimit;
            if (!image.Contains(0, plan.HeaderEnd))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad bzImage: the setup header ends at {x}, past the file (file size {x})", plan.HeaderEnd, image.Length);
                return false;
            }
            plan.SetupSize = ((setupSects == 0 ? 4UL : setupSects) + 1) * 512;
            if (plan.SetupSize >= image.Length)
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad bzImage: setup_sects {d} puts the kernel at offset {x}, at or past the end of the file (file size {x})", setupSects, plan.SetupSize, image.Length);
                return false;
            }
            plan.KernelSize = image.Length - plan.SetupSize;

            image.U32(KernelAlignment, out uint alignment);
            image.U8(RelocatableKernel, out byte relocatable);
            image.U64(PrefAddress, out ulong prefAddress);
            image.U32(InitSize, out uint initSize);
            image.U32(CmdlineSize, out uint cmdlineSize);
            image.U32(InitrdAddrMax, out uint initrdAddrMax);
            if (relocatable != 0 && !System.Numerics.BitOperations.IsPow2(alignment))
            {
                error = new LoadError(LoadErrorKind.Malformed, "bad bzImage: kernel_alignment {x} is not a power of two", alignment);
                return false;
            }

            plan.CmdlineLength = BootStrings.Length(input.Cmdline, input.CmdlineLength);
            if (plan.CmdlineLength > cmdlineSize)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "Linux: the command line is {d} bytes, longer than the kernel's cmdline_size {d}", plan.CmdlineLength, cmdlineSize);
                return false;
            }
            if (plan.CmdlineLength >= CmdlineMax)
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "Linux: the command line is {d} bytes; Tandem passes at most {d}", plan.CmdlineLength, CmdlineMax - 1);
                return false;
            }
            if (!map.IsRam(0, CmdlineAddress + CmdlineMax))
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "Linux: guest RAM below {x} is needed for the zero page, page tables and command line (RAM size {x})", CmdlineAddress + CmdlineMax, map.RamSize);
                return false;
            }

            ulong need = initSize > plan.KernelSize ? initSize : plan.KernelSize;
            if (!PlaceKernel(map, prefAddress, need, relocatable != 0, alignment, out plan.LoadAddress))
            {
                error = new LoadError(LoadErrorKind.DoesNotFit, "Linux: no room for the kernel ({x} bytes, pref_address {x}) in guest RAM between 1 MiB and 4 GiB", need, prefAddress);
                return false;
            }
            ulong kernelEnd = plan.LoadAddress + need;

            if (input.ModuleCount > 1)
            {
                error = new LoadError(LoadErrorKind.Unsupported, "Linux: {d} modules given; the boot protocol takes one, the initrd", (ulong)input.ModuleCount);
                return false;
            }
            if (input.ModuleCount == 1 && input.Modules[0].Length != 0)
            {
                plan.InitrdSize = input.Modules[0].Length;
                if (!PlaceInitrd(map, plan.InitrdSize, plan.LoadAddress, kernelEnd, (ulong)initrdAddrMax + 1, out plan.InitrdAddress))
                {
                    error = new LoadError(LoadErrorKind.DoesNotFit, "Linux: no room for the initrd ({x} bytes) in guest RAM from 1 MiB beside the kernel (ends at {x}) and below initrd_addr_max {x}", plan.InitrdSize, kernelEnd, initrdAddrMax);
                    return false;
                }
            }
            return true;
        }

        /// <summary>pref_address if the kernel fits there, else (relocatable) the first aligned address from 1 MiB that fits, below 4 GiB.</summary>
        private static bool PlaceKernel(in GuestMemoryMap map, ulong prefAddress, ulong need, bool relocatable, uint alignment, out ulong load)
        {
            load = 0;
            if (prefAddress >= OneMiB && prefAddress <= GuestMemoryMap.FourGiB && need <= GuestMemoryMap.FourGiB - prefAddress
                && map.IsRam(prefAddress, need))
            {
                load = prefAddress;
                return true;
            }
            if (!relocatable)
                return false;
            ulong align = alignment < GuestPlacer.PageSize ? GuestPlacer.PageSize : alignment;
            for (int i = 0; i < map.Count; i++)
            {
                MemoryRange r = map.Get(i);
                if (r.Type != MemoryType.Ram)
                    continue;
                ulong end = r.End < GuestMemoryMap.FourGiB ? r.End : GuestMemoryMap.FourGiB;
                if (!GuestPlacer.AlignUp(r.Start > OneMiB ? r.Start : OneMiB, align, out ulong candidate))
                    return false;
                if (candidate <= end && need <= end - candidate)
                {
                    load = candidate;
                    return true;
                }
            }
            return false;
        }

        /// <summary>
        /// The highest page-aligned place below <paramref name="limit"/> and 4 GiB, in RAM from 1 MiB,
        /// that does not overlap the kernel's [<paramref name="kernelStart"/>, <paramref name="kernelEnd"/>).
        /// </summary>
        private static bool PlaceInitrd(in GuestMemoryMap map, ulong size, ulong kernelStart, ulong kernelEnd, ulong limit, out ulong address)
        {
            address = 0;
            for (int i = map.Count - 1; i >= 0; i--)
            {
                MemoryRange r = map.Get(i);
                if (r.Type != MemoryType.Ram)
                    continue;
                ulong top = r.End;
                if (top > limit)
                    top = limit;
                if (top > GuestMemoryMap.FourGiB)
                    top = GuestMemoryMap.FourGiB;
                ulong bottom = r.Start > OneMiB ? r.Start : OneMiB;
                // Above the kernel first, then below it.
                if (Highest(kernelEnd > bottom ? kernelEnd : bottom, top, size, out address)
                    || Highest(bottom, kernelStart < top ? kernelStart : top, size, out address))
                    return true;
            }
            return false;
        }

        /// <summary>The highest page-aligned start of <paramref name="size"/> bytes inside [bottom, top).</summary>
        private static bool Highest(ulong bottom, ulong top, ulong size, out ulong address)
        {
            address = 0;
            if (top < bottom || size > top - bottom)
                return false;
            ulong candidate = (top - size) & ~(GuestPlacer.PageSize - 1);
            if (candidate < bottom)
                return false;
            address = candidate;
            return true;
        }

        /// <summary>PML4[0] → PDPT[0..3] → four page directories of 2 MiB pages: 0-4 GiB identity-mapped (SDM Vol. 3A, 4.5).</summary>
        private static bool WritePageTables<TRam>(ref TRam ram) where TRam : struct, IGuestRam
        {
            ulong* table = stackalloc ulong[512];
            var span = new System.Span<ulong>(table, 512);
            span.Clear();
            table[0] = Pdpt | 3;                                   // present, writable
            if (!ram.Write(Pml4, (byte*)table, 4096))
                return false;
            for (ulong i = 0; i < 4; i++)
                table[i] = (PageDirectories + i * 0x1000) | 3;
            if (!ram.Write(Pdpt, (byte*)table, 4096))
                return false;
            for (ulong d = 0; d < 4; d++)
            {
                for (ulong j = 0; j < 512; j++)
                    table[j] = ((d * 512 + j) << 21) | 0x83;       // present, writable, 2 MiB page
                if (!ram.Write(PageDirectories + d * 0x1000, (byte*)table, 4096))
                    return false;
            }
            return true;
        }

        private static bool WriteZeroPage<TRam>(ref TRam ram, in ImageReader image, in GuestMemoryMap map, in Plan plan, ulong rsdp) where TRam : struct, IGuestRam
        {
            byte* page = stackalloc byte[4096];
            new System.Span<byte>(page, 4096).Clear();
            for (ulong i = SetupSects; i < plan.HeaderEnd; i++)
                page[i] = image.Data[i];
            page[TypeOfLoader] = 0xFF;
            *(uint*)(page + Code32Start) = (uint)plan.LoadAddress;
            *(uint*)(page + RamdiskImage) = (uint)plan.InitrdAddress;
            *(uint*)(page + RamdiskSize) = (uint)plan.InitrdSize;
            *(uint*)(page + ExtRamdiskImage) = (uint)(plan.InitrdAddress >> 32);
            *(uint*)(page + ExtRamdiskSize) = (uint)(plan.InitrdSize >> 32);
            *(uint*)(page + CmdLinePtr) = (uint)CmdlineAddress;
            *(uint*)(page + ExtCmdLinePtr) = 0;
            *(uint*)(page + HardwareSubarch) = 0;                 // a PC
            *(ulong*)(page + SetupData) = 0;                      // no setup_data list
            *(ulong*)(page + AcpiRsdpAddr) = rsdp;                // where the VM's ACPI tables start (0: none; Linux scans then)
            page[E820Entries] = (byte)map.Count;
            for (int i = 0; i < map.Count; i++)
            {
                MemoryRange r = map.Get(i);
                byte* e = page + E820Table + (ulong)i * E820EntrySize;
                *(ulong*)e = r.Start;
                *(ulong*)(e + 8) = r.Size;
                *(uint*)(e + 16) = (uint)r.Type;
            }
            return ram.Write(ZeroPage, page, 4096);
        }
    }
}
