namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// The guest-physical memory layout of a VM with <see cref="RamSize"/> bytes of RAM, the one
    /// description from which the e820 map, the multiboot and multiboot2 maps and the PVH memmap
    /// are all generated:
    /// <list type="bullet">
    /// <item>RAM at [0, 0xA0000) (conventional memory);</item>
    /// <item>[0xA0000, 0x100000) reserved (VGA window and BIOS area: the legacy hole);</item>
    /// <item>RAM from 1 MiB up to the RAM size or 3 GiB, whichever is lower;</item>
    /// <item>[3 GiB, 4 GiB) left out of the map for PCI (the PCI hole); RAM beyond 3 GiB is
    /// relocated above 4 GiB, at [4 GiB, 4 GiB + RamSize - 3 GiB).</item>
    /// </list>
    /// The legacy hole takes guest addresses, not RAM: the bytes behind it are simply not offered.
    /// </summary>
    public readonly struct GuestMemoryMap
    {
        /// <summary>Start of the legacy hole (VGA window, option ROMs, BIOS).</summary>
        public const ulong LegacyHoleStart = 0xA_0000;
        /// <summary>End of the legacy hole: 1 MiB.</summary>
        public const ulong LegacyHoleEnd = 0x10_0000;
        /// <summary>Start of the PCI hole: 3 GiB; RAM beyond it moves above 4 GiB.</summary>
        public const ulong PciHoleStart = 0xC000_0000;
        /// <summary>4 GiB, where relocated RAM starts.</summary>
        public const ulong FourGiB = 0x1_0000_0000;

        /// <summary>The most ranges <see cref="Get"/> returns.</summary>
        public const int MaxRanges = 4;

        /// <summary>Bytes of guest RAM.</summary>
        public readonly ulong RamSize;

        /// <summary>The map of a guest with ramSize bytes of RAM.</summary>
        public GuestMemoryMap(ulong ramSize)
        {
            RamSize = ramSize;
        }

        /// <summary>Number of ranges in the map.</summary>
        public int Count
        {
            get
            {
                if (RamSize <= LegacyHoleStart)
                    return RamSize == 0 ? 0 : 1;
                if (RamSize <= LegacyHoleEnd)
                    return 2;
                return RamSize > PciHoleStart ? 4 : 3;
            }
        }

        /// <summary>The <paramref name="index"/>-th range, in ascending address order.</summary>
        public MemoryRange Get(int index)
        {
            switch (index)
            {
                case 0:
                    return new MemoryRange(0, Min(RamSize, LegacyHoleStart), MemoryType.Ram);
                case 1:
                    return new MemoryRange(LegacyHoleStart, Min(RamSize, LegacyHoleEnd) - LegacyHoleStart, MemoryType.Reserved);
                case 2:
                    return new MemoryRange(LegacyHoleEnd, Min(RamSize, PciHoleStart) - LegacyHoleEnd, MemoryType.Ram);
                case 3:
                    return new MemoryRange(FourGiB, RamSize - PciHoleStart, MemoryType.Ram);
                default:
                    throw new System.ArgumentOutOfRangeException(nameof(index), "memory map index out of range");
            }
        }

        /// <summary>True if [gpa, gpa + length) lies wholly inside one RAM range.</summary>
        public bool IsRam(ulong gpa, ulong length)
        {
            int n = Count;
            for (int i = 0; i < n; i++)
            {
                MemoryRange r = Get(i);
                if (r.Type == MemoryType.Ram && r.Contains(gpa, length))
                    return true;
            }
            return false;
        }

        /// <summary>KiB of RAM from 0 (multiboot's mem_lower).</summary>
        public ulong LowerKiB => Min(RamSize, LegacyHoleStart) >> 10;

        /// <summary>KiB of contiguous RAM from 1 MiB (multiboot's mem_upper).</summary>
        public ulong UpperKiB => RamSize <= LegacyHoleEnd ? 0 : (Min(RamSize, PciHoleStart) - LegacyHoleEnd) >> 10;

        private static ulong Min(ulong a, ulong b) => a < b ? a : b;
    }
}
