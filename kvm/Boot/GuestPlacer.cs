namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Chooses guest-physical addresses for what a loader adds beside the image (boot information,
    /// command lines, modules): a cursor that only moves up, through the RAM ranges of the
    /// <see cref="GuestMemoryMap"/>, below a limit (4 GiB for protocols with 32-bit pointers).
    /// Two allocations never overlap, and none overlaps what lies below the starting cursor
    /// (the image). Pure computation: nothing is written.
    /// </summary>
    public struct GuestPlacer
    {
        /// <summary>Alignment of modules.</summary>
        public const ulong PageSize = 0x1000;

        private readonly GuestMemoryMap _map;
        private readonly ulong _limit;
        private ulong _cursor;

        /// <param name="map">The guest's memory map.</param>
        /// <param name="start">The lowest address to hand out (the end of the image).</param>
        /// <param name="limit">One past the highest address to hand out.</param>
        public GuestPlacer(GuestMemoryMap map, ulong start, ulong limit)
        {
            _map = map;
            _cursor = start;
            _limit = limit;
        }

        /// <summary>One past the highest byte handed out so far.</summary>
        public ulong Cursor => _cursor;

        /// <summary>
        /// Finds <paramref name="size"/> bytes at an address aligned to <paramref name="align"/>
        /// (a power of two), at or above the cursor, inside one RAM range and below the limit.
        /// </summary>
        public bool Allocate(ulong size, ulong align, out ulong gpa)
        {
            gpa = 0;
            int n = _map.Count;
            for (int i = 0; i < n; i++)
            {
                MemoryRange r = _map.Get(i);
                if (r.Type != MemoryType.Ram)
                    continue;
                ulong from = _cursor > r.Start ? _cursor : r.Start;
                if (!AlignUp(from, align, out ulong candidate))
                    return false;
                ulong end = r.End < _limit ? r.End : _limit;
                if (candidate > end || size > end - candidate)
                    continue;
                gpa = candidate;
                _cursor = candidate + size;
                return true;
            }
            return false;
        }

        /// <summary>Rounds <paramref name="value"/> up to <paramref name="align"/> (a power of two); false on overflow.</summary>
        public static bool AlignUp(ulong value, ulong align, out ulong result)
        {
            ulong mask = align - 1;
            if (value > ulong.MaxValue - mask)
            {
                result = 0;
                return false;
            }
            result = (value + mask) & ~mask;
            return true;
        }
    }
}
