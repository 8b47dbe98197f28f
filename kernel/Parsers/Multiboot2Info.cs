using System;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Tandem.Kernel.Parsers
{
    /// <summary>A memory-map entry (multiboot2 spec 3.6.8), as the boot loader gave it.</summary>
    public struct MemoryRegion
    {
        public ulong Base;
        public ulong Length;
        public uint Type;        // 1 = available RAM
    }

    /// <summary>A boot module (multiboot2 spec 3.6.6): its physical range and where its NUL-terminated name lies in the boot information.</summary>
    public struct ModuleInfo
    {
        public ulong Start;
        public ulong End;
        /// <summary>Offset of the module's command line in the boot information; the NUL is inside its tag.</summary>
        public int CommandLineOffset;
        public int CommandLineLength;
    }

    /// <summary>A page-aligned range of RAM the kernel may use: [Start, End), End at most 4 GiB.</summary>
    public struct UsableRange
    {
        public ulong Start;
        public ulong End;
    }

    /// <summary>What <see cref="Multiboot2Parser.Parse"/> found. Offsets are into the boot information it was given.</summary>
    public struct Multiboot2Info
    {
        public const int MaxRegions = 128;
        public const int MaxModules = 64;
        public const int MaxUsable = 256;

        public uint TotalSize;
        /// <summary>The kernel command line: offset and length without its NUL (-1: none given).</summary>
        public int CommandLineOffset;
        public int CommandLineLength;
        public int BootloaderNameOffset;
        /// <summary>The RSDP copy from the ACPI tag (the new one preferred): offset and the tag's payload length (-1: none).</summary>
        public int RsdpOffset;
        public int RsdpLength;
        public int RegionCount;
        public int ModuleCount;
        /// <summary>Modules past <see cref="MaxModules"/> (not used).</summary>
        public int DroppedModules;
        /// <summary>Memory-map entries past <see cref="MaxRegions"/> (not used).</summary>
        public int DroppedRegions;
        /// <summary>Tags that were too short, had no NUL inside, or made no sense (ignored); the first one's type.</summary>
        public int BadTags;
        public uint FirstBadTagType;
        /// <summary>What the memory map's sanitizing found (<see cref="MemoryMapSanitizer"/>).</summary>
        public MemoryMapReport MapReport;
        public int UsableCount;
        private Regions _regions;
        private Modules _modules;
        private Usables _usable;
        internal Points Scratch;

        [InlineArray(MaxRegions)]
        private struct Regions { private MemoryRegion _e; }

        [InlineArray(MaxModules)]
        private struct Modules { private ModuleInfo _e; }

        [InlineArray(MaxUsable)]
        private struct Usables { private UsableRange _e; }

        [InlineArray(2 * MaxRegions)]
        internal struct Points { private ulong _e; }

        [UnscopedRef]
        public ref MemoryRegion Region(int i) => ref _regions[i];

        [UnscopedRef]
        public ref ModuleInfo Module(int i) => ref _modules[i];

        [UnscopedRef]
        public ref UsableRange Usable(int i) => ref _usable[i];

        internal void AddRegion(ulong start, ulong length, uint type)
        {
            if (RegionCount >= MaxRegions)
            {
                DroppedRegions++;
                return;
            }
            ref MemoryRegion r = ref _regions[RegionCount++];
            r.Base = start;
            r.Length = length;
            r.Type = type;
        }

        internal void AddModule(ulong start, ulong end, int nameOffset, int nameLength)
        {
            if (ModuleCount >= MaxModules)
            {
                // Never silently: a guest named later would be "not on the boot image".
                DroppedModules++;
                return;
            }
            ref ModuleInfo m = ref _modules[ModuleCount++];
            m.Start = start;
            m.End = end;
            m.CommandLineOffset = nameOffset;
            m.CommandLineLength = nameLength;
        }

        internal void BadTag(uint type)
        {
            if (BadTags++ == 0)
                FirstBadTagType = type;
        }
    }

    /// <summary>
    /// Parses the multiboot2 boot information a boot loader hands over (spec section 3.6) from a
    /// bounds-checked span, so a broken loader's lengths are refused, never followed. The refusals
    /// are the constant strings below; a malformed tag inside a sound structure is ignored and
    /// counted (<see cref="Multiboot2Info.BadTags"/>), and the memory map is sanitized
    /// (<see cref="MemoryMapSanitizer"/>). Portable: it compiles into the kernel and into the host tests.
    /// </summary>
    public static class Multiboot2Parser
    {
        public const uint BootloaderMagic = 0x36D76289;
        /// <summary>The largest boot information accepted (GRUB's is a few KiB).</summary>
        public const uint MaxTotalSize = 1 << 20;

        public const string NotMultiboot2 = "not started by a multiboot2 loader (bad magic in EAX)";
        public const string BadPointer = "boot information pointer is null or misaligned";
        public const string ImplausibleSize = "boot information has an implausible size";
        public const string TagPastEnd = "boot information tag runs past the end";
        public const string NoEndTag = "boot information has no end tag";

        public const uint TagEnd = 0, TagCommandLine = 1, TagBootloaderName = 2, TagModule = 3,
            TagMemoryMap = 6, TagAcpiOld = 14, TagAcpiNew = 15;

        /// <summary>
        /// Parses the boot information at <paramref name="address"/>, whose bytes (at least its
        /// total size, or up to <see cref="MaxTotalSize"/>) are <paramref name="info"/>. Returns null,
        /// or one of the refusals above.
        /// </summary>
        public static string? Parse(uint magic, ulong address, ReadOnlySpan<byte> info, ref Multiboot2Info result)
        {
            result = default;
            result.CommandLineOffset = -1;
            result.BootloaderNameOffset = -1;
            result.RsdpOffset = -1;
            if (magic != BootloaderMagic)
                return NotMultiboot2;
            if (address == 0 || (address & 7) != 0)
                return BadPointer;
            if (info.Length < 8)
                return ImplausibleSize;
            uint totalSize = LittleEndian.Read32(info, 0);
            if (totalSize < 16 || totalSize > MaxTotalSize || totalSize > (uint)info.Length)
                return ImplausibleSize;
            result.TotalSize = totalSize;
            info = info.Slice(0, (int)totalSize);

            int offset = 8;
            while (offset + 8 <= info.Length)
            {
                uint type = LittleEndian.Read32(info, offset);
                uint size = LittleEndian.Read32(info, offset + 4);
                if (type == TagEnd)
                {
                    MemoryMapSanitizer.Sanitize(ref result);
                    return null;
                }
                if (size < 8 || size > (uint)(info.Length - offset))
                    return TagPastEnd;
                ReadOnlySpan<byte> tag = info.Slice(offset, (int)size);
                switch (type)
                {
                    case TagCommandLine:
                        {
                            int length = StringLength(tag, 8);
                            if (length < 0)
                                result.BadTag(type);
                            else
                            {
                                result.CommandLineOffset = offset + 8;
                                result.CommandLineLength = length;
                            }
                            break;
                        }
                    case TagBootloaderName:
                        if (StringLength(tag, 8) < 0)
                            result.BadTag(type);
                        else
                            result.BootloaderNameOffset = offset + 8;
                        break;
                    case TagModule:
                        {
                            int length = tag.Length >= 16 ? StringLength(tag, 16) : -1;
                            ulong start = length >= 0 ? LittleEndian.Read32(tag, 8) : 0;
                            ulong end = length >= 0 ? LittleEndian.Read32(tag, 12) : 0;
                            if (length < 0 || end < start)
                                result.BadTag(type);
                            else
                                result.AddModule(start, end, offset + 16, length);
                            break;
                        }
                    case TagMemoryMap:
                        ParseMemoryMap(tag, ref result);
                        break;
                    case TagAcpiOld:
                    case TagAcpiNew:
                        // The RSDP copy: 20 bytes (ACPI 1.0) or 36 (2.0 and later).
                        if (tag.Length < 8 + (type == TagAcpiNew ? AcpiParser.RsdpV2Length : AcpiParser.RsdpV1Length))
                            result.BadTag(type);
                        else if (result.RsdpOffset < 0 || type == TagAcpiNew)
                        {
                            result.RsdpOffset = offset + 8;
                            result.RsdpLength = tag.Length - 8;
                        }
                        break;
                }
                offset += (int)((size + 7) & ~7u);
            }
            return NoEndTag;
        }

        /// <summary>The length of the NUL-terminated string at <paramref name="at"/> in the tag, or -1 if no NUL is inside it.</summary>
        private static int StringLength(ReadOnlySpan<byte> tag, int at)
        {
            for (int i = at; i < tag.Length; i++)
            {
                if (tag[i] == 0)
                    return i - at;
            }
            return -1;
        }

        private static void ParseMemoryMap(ReadOnlySpan<byte> tag, ref Multiboot2Info result)
        {
            if (tag.Length < 16)
            {
                result.BadTag(TagMemoryMap);
                return;
            }
            uint entrySize = LittleEndian.Read32(tag, 8);
            if (entrySize < 24 || entrySize > (uint)tag.Length)
            {
                result.BadTag(TagMemoryMap);
                return;
            }
            for (int off = 16; off + (int)entrySize <= tag.Length; off += (int)entrySize)
                result.AddRegion(LittleEndian.Read64(tag, off), LittleEndian.Read64(tag, off + 8), LittleEndian.Read32(tag, off + 16));
        }
    }
}
