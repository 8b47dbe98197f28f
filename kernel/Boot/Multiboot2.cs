using System;
using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel.Boot
{
    /// <summary>A boot module (multiboot2 spec 3.6.6): physical range and its NUL-terminated command line.</summary>
    public unsafe struct BootModule
    {
        public ulong Start;
        public ulong End;
        public byte* CommandLine;
    }

    /// <summary>
    /// The multiboot2 boot information GRUB hands over, as the portable <see cref="Multiboot2Parser"/>
    /// found it: this class only turns its offsets into pointers into the boot information, and
    /// prints what it ignored (<see cref="ReportProblems"/>).
    /// </summary>
    public static unsafe class Multiboot2
    {
        public const uint BootloaderMagic = Multiboot2Parser.BootloaderMagic;
        public const int MaxModules = Multiboot2Info.MaxModules;

        public static byte* CommandLine;
        public static int CommandLineLength;
        public static byte* BootloaderName;
        public static ulong InfoStart;
        public static ulong InfoEnd;
        /// <summary>The RSDP copy in the ACPI tag, and how many bytes the tag holds (0: none).</summary>
        public static ulong Rsdp;
        public static int RsdpLength;
        public static int ModuleCount;

        /// <summary>Modules GRUB passed beyond <see cref="MaxModules"/> (reported at boot, not used).</summary>
        public static int DroppedModules;

        /// <summary>Everything the parser found, the sanitized memory map included.</summary>
        public static Multiboot2Info Info;
        private static Modules s_modules;

        [System.Runtime.CompilerServices.InlineArray(MaxModules)]
        private struct Modules { private BootModule _e; }

        public static ref BootModule Module(int i) => ref s_modules[i];

        /// <summary>RAM the kernel may use: sorted, disjoint, page-aligned, below 4 GiB.</summary>
        public static int UsableCount => Info.UsableCount;

        public static ref UsableRange Usable(int i) => ref Info.Usable(i);

        /// <summary>Parses the structure; returns null or a description of what is wrong.</summary>
        public static string? Parse(uint magic, ulong info)
        {
            // The parser sees the bytes the total size names (at most 1 MiB), never more.
            uint available = 0;
            if (magic == BootloaderMagic && info != 0 && (info & 7) == 0)
                available = Math.Min(*(uint*)info, Multiboot2Parser.MaxTotalSize);
            string? problem = Multiboot2Parser.Parse(magic, info, new ReadOnlySpan<byte>((void*)info, (int)available), ref Info);
            if (problem != null)
                return problem;
            byte* start = (byte*)info;
            InfoStart = info;
            InfoEnd = info + Info.TotalSize;
            if (Info.CommandLineOffset >= 0)
            {
                CommandLine = start + Info.CommandLineOffset;
                CommandLineLength = Info.CommandLineLength;
            }
            if (Info.BootloaderNameOffset >= 0)
                BootloaderName = start + Info.BootloaderNameOffset;
            if (Info.RsdpOffset >= 0)
            {
                Rsdp = info + (ulong)Info.RsdpOffset;
                RsdpLength = Info.RsdpLength;
            }
            ModuleCount = Info.ModuleCount;
            DroppedModules = Info.DroppedModules;
            for (int i = 0; i < Info.ModuleCount; i++)
            {
                ref ModuleInfo m = ref Info.Module(i);
                ref BootModule b = ref s_modules[i];
                b.Start = m.Start;
                b.End = m.End;
                b.CommandLine = start + m.CommandLineOffset;
            }
            return null;
        }

        /// <summary>One console line for each thing the boot information got wrong that the kernel worked around; returns how many.</summary>
        public static int ReportProblems(ref Multiboot2Info info)
        {
            int lines = 0;
            if (info.DroppedModules > 0)
                lines += Line("boot: more than 64 boot modules: ", (ulong)info.DroppedModules, " were ignored");
            if (info.BadTags > 0)
            {
                Log.Info($"boot: {(ulong)info.BadTags} malformed boot information tag(s) ignored (the first of type {(ulong)info.FirstBadTagType})");
                lines++;
            }
            if (info.RegionCount == 0)
            {
                Log.Line("boot: the boot loader gave no memory map");
                lines++;
            }
            if (info.DroppedRegions > 0)
                lines += Line("boot: memory map: more than 128 entries: ", (ulong)info.DroppedRegions, " were ignored");
            ref MemoryMapReport r = ref info.MapReport;
            if (r.ZeroLength > 0)
                lines += Line("boot: memory map: ", (ulong)r.ZeroLength, " zero-length entries ignored");
            if (r.Wrapped > 0)
                lines += Line("boot: memory map: ", (ulong)r.Wrapped, " entries wrap past 2^64 (cut there)");
            if (r.OverlappingRam > 0)
                lines += Line("boot: memory map: ", (ulong)r.OverlappingRam, " overlapping pairs of RAM entries (the RAM counted once)");
            if (r.ReservedOverRam > 0)
                lines += Line("boot: memory map: ", (ulong)r.ReservedOverRam, " RAM entries overlap reserved ones (the overlap left reserved)");
            if (r.AboveLimitBytes > 0)
                lines += Line("boot: memory map: RAM above 4 GiB not used, MiB: ", r.AboveLimitBytes >> 20, "");
            if (r.DroppedUsable > 0)
                lines += Line("boot: memory map: too fragmented: ", (ulong)r.DroppedUsable, " usable ranges ignored");
            return lines;
        }

        private static int Line(string before, ulong value, string after)
        {
            Log.Info($"{before}{value}{after}");
            return 1;
        }
    }
}
