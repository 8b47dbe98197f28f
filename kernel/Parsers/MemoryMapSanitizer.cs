using System;

namespace Tandem.Kernel.Parsers
{
    /// <summary>What was wrong with a memory map, and what was left out (all zero for a sound map).</summary>
    public struct MemoryMapReport
    {
        /// <summary>Entries of length 0 (ignored).</summary>
        public int ZeroLength;
        /// <summary>Entries whose base + length passes 2^64 (cut at 2^64).</summary>
        public int Wrapped;
        /// <summary>Pairs of RAM entries that overlap (the RAM is counted once).</summary>
        public int OverlappingRam;
        /// <summary>Pairs of a RAM entry and a reserved entry that overlap (the overlap stays reserved).</summary>
        public int ReservedOverRam;
        /// <summary>Bytes of RAM at or above 4 GiB, which the kernel does not use.</summary>
        public ulong AboveLimitBytes;
        /// <summary>Usable ranges past <see cref="Multiboot2Info.MaxUsable"/> (not used).</summary>
        public int DroppedUsable;

        public bool Clean => ZeroLength == 0 && Wrapped == 0 && OverlappingRam == 0 && ReservedOverRam == 0 && AboveLimitBytes == 0 && DroppedUsable == 0;
    }

    /// <summary>
    /// Turns the boot loader's memory map into the RAM the kernel may use: page-aligned ranges,
    /// sorted, disjoint, below 4 GiB (the boot identity map), inside some available (type 1)
    /// entry and outside every other entry. Overlaps, zero lengths, wrapping entries and RAM above
    /// 4 GiB are counted in <see cref="MemoryMapReport"/> so that the kernel can say so. Bounded
    /// work: at most 2 * 128 boundaries, each checked against at most 128 entries.
    /// </summary>
    public static class MemoryMapSanitizer
    {
        public const ulong PageSize = 4096;
        public const ulong Limit = 4UL << 30;
        public const uint Available = 1;

        public static void Sanitize(ref Multiboot2Info info)
        {
            info.MapReport = default;
            info.UsableCount = 0;
            int points = 0;
            for (int i = 0; i < info.RegionCount; i++)
            {
                ref MemoryRegion r = ref info.Region(i);
                if (r.Length == 0)
                {
                    info.MapReport.ZeroLength++;
                    continue;
                }
                ulong end = End(r);
                if (r.Base + r.Length < r.Base)
                    info.MapReport.Wrapped++;
                if (r.Type == Available && end > Limit)
                    info.MapReport.AboveLimitBytes += end - (r.Base > Limit ? r.Base : Limit);
                Bounds(r, out ulong s, out ulong e);
                if (s < e)
                {
                    info.Scratch[points++] = s;
                    info.Scratch[points++] = e;
                }
                for (int j = 0; j < i; j++)
                {
                    ref MemoryRegion o = ref info.Region(j);
                    if (o.Length == 0 || !(r.Base < End(o) && o.Base < end))
                        continue;
                    if (r.Type == Available && o.Type == Available)
                        info.MapReport.OverlappingRam++;
                    else if (r.Type == Available || o.Type == Available)
                        info.MapReport.ReservedOverRam++;
                }
            }
            Sort(ref info, points);

            // Each piece between two neighbouring boundaries lies wholly inside or outside every
            // entry: keep it when some RAM entry covers it and no other entry does.
            for (int p = 0; p + 1 < points; p++)
            {
                ulong from = info.Scratch[p], to = info.Scratch[p + 1];
                if (from == to || !Usable(ref info, from))
                    continue;
                if (info.UsableCount > 0 && info.Usable(info.UsableCount - 1).End == from)
                {
                    info.Usable(info.UsableCount - 1).End = to;
                    continue;
                }
                if (info.UsableCount >= Multiboot2Info.MaxUsable)
                {
                    info.MapReport.DroppedUsable++;
                    continue;
                }
                ref UsableRange u = ref info.Usable(info.UsableCount++);
                u.Start = from;
                u.End = to;
            }
        }

        /// <summary>The entry's end, cut at 2^64 when base + length wraps.</summary>
        private static ulong End(in MemoryRegion r) => r.Base + r.Length < r.Base ? ulong.MaxValue : r.Base + r.Length;

        /// <summary>
        /// The page-aligned part below 4 GiB that the entry decides: RAM rounded inwards (only whole
        /// pages are usable), anything else rounded outwards (a page partly reserved is reserved).
        /// </summary>
        private static void Bounds(in MemoryRegion r, out ulong start, out ulong end)
        {
            ulong e = End(r);
            if (e > Limit)
                e = Limit;
            ulong s = r.Base > Limit ? Limit : r.Base;
            if (r.Type == Available)
            {
                start = (s + PageSize - 1) & ~(PageSize - 1);
                end = e & ~(PageSize - 1);
            }
            else
            {
                start = s & ~(PageSize - 1);
                end = (e + PageSize - 1) & ~(PageSize - 1);
            }
        }

        private static bool Usable(ref Multiboot2Info info, ulong at)
        {
            bool ram = false;
            for (int i = 0; i < info.RegionCount; i++)
            {
                ref MemoryRegion r = ref info.Region(i);
                if (r.Length == 0)
                    continue;
                Bounds(r, out ulong s, out ulong e);
                if (at < s || at >= e)
                    continue;
                if (r.Type != Available)
                    return false;
                ram = true;
            }
            return ram;
        }

        private static void Sort(ref Multiboot2Info info, int count)
        {
            for (int i = 1; i < count; i++)
            {
                ulong v = info.Scratch[i];
                int j = i - 1;
                while (j >= 0 && info.Scratch[j] > v)
                {
                    info.Scratch[j + 1] = info.Scratch[j];
                    j--;
                }
                info.Scratch[j + 1] = v;
            }
        }
    }
}
