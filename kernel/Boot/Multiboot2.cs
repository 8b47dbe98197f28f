namespace Tandem.Kernel.Boot
{
    /// <summary>A memory-map entry (multiboot2 spec 3.6.8).</summary>
    public struct MemoryRegion
    {
        public ulong Base;
        public ulong Length;
        public uint Type;        // 1 = available RAM
    }

    /// <summary>A boot module (multiboot2 spec 3.6.6): physical range and its command line.</summary>
    public unsafe struct BootModule
    {
        public ulong Start;
        public ulong End;
        public byte* CommandLine;
    }

    /// <summary>
    /// Parses the multiboot2 boot information GRUB hands over (spec section 3.6). Every length is
    /// checked against the total size, so a malformed structure is reported, never followed.
    /// </summary>
    public static unsafe class Multiboot2
    {
        public const uint BootloaderMagic = 0x36D76289;
        public const int MaxRegions = 128;
        public const int MaxModules = 64;

        private const uint TagEnd = 0, TagCommandLine = 1, TagBootloaderName = 2, TagModule = 3,
            TagMemoryMap = 6, TagAcpiOld = 14, TagAcpiNew = 15;

        public static byte* CommandLine;
        public static byte* BootloaderName;
        public static ulong InfoStart;
        public static ulong InfoEnd;
        public static ulong Rsdp;
        public static int RegionCount;
        public static int ModuleCount;

        /// <summary>Modules GRUB passed beyond <see cref="MaxModules"/> (reported at boot, not used).</summary>
        public static int DroppedModules;
        private static Regions s_regions;
        private static Modules s_modules;

        [System.Runtime.CompilerServices.InlineArray(MaxRegions)]
        private struct Regions { private MemoryRegion _e; }

        [System.Runtime.CompilerServices.InlineArray(MaxModules)]
        private struct Modules { private BootModule _e; }

        public static ref MemoryRegion Region(int i) => ref s_regions[i];

        public static ref BootModule Module(int i) => ref s_modules[i];

        /// <summary>Parses the structure; returns null or a description of what is wrong.</summary>
        public static string? Parse(uint magic, ulong info)
        {
            if (magic != BootloaderMagic)
                return "not started by a multiboot2 loader (bad magic in EAX)";
            if (info == 0 || (info & 7) != 0)
                return "boot information pointer is null or misaligned";
            uint totalSize = *(uint*)info;
            if (totalSize < 16 || totalSize > 1 << 20)
                return "boot information has an implausible size";
            InfoStart = info;
            InfoEnd = info + totalSize;

            ulong offset = 8;
            while (offset + 8 <= totalSize)
            {
                byte* tag = (byte*)(info + offset);
                uint type = *(uint*)tag;
                uint size = *(uint*)(tag + 4);
                if (type == TagEnd)
                    return null;
                if (size < 8 || offset + size > totalSize)
                    return "boot information tag runs past the end";
                switch (type)
                {
                    case TagCommandLine:
                        CommandLine = tag + 8;
                        break;
                    case TagBootloaderName:
                        BootloaderName = tag + 8;
                        break;
                    case TagModule:
                        if (ModuleCount < MaxModules && size >= 16)
                        {
                            ref BootModule m = ref s_modules[ModuleCount++];
                            m.Start = *(uint*)(tag + 8);
                            m.End = *(uint*)(tag + 12);
                            m.CommandLine = tag + 16;
                        }
                        else if (size >= 16)
                        {
                            // Never silently: a guest named later would be "not on the boot image".
                            DroppedModules++;
                        }
                        break;
                    case TagMemoryMap:
                        ParseMemoryMap(tag, size);
                        break;
                    case TagAcpiOld:
                    case TagAcpiNew:
                        if (Rsdp == 0 || type == TagAcpiNew)
                            Rsdp = (ulong)(tag + 8);
                        break;
                }
                offset += (size + 7) & ~7u;
            }
            return "boot information has no end tag";
        }

        private static void ParseMemoryMap(byte* tag, uint size)
        {
            uint entrySize = *(uint*)(tag + 8);
            if (entrySize < 24)
                return;
            for (uint off = 16; off + entrySize <= size && RegionCount < MaxRegions; off += entrySize)
            {
                ref MemoryRegion r = ref s_regions[RegionCount++];
                r.Base = *(ulong*)(tag + off);
                r.Length = *(ulong*)(tag + off + 8);
                r.Type = *(uint*)(tag + off + 16);
            }
        }
    }
}
