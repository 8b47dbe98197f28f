using Tandem.Kernel.Boot;
using Tandem.Kernel.Parsers;
using Tandem.Kernel.Sync;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// The boot-time physical frame allocator: one bit per 4 KiB frame over the RAM the memory map
    /// reports (set = in use). Everything below 1 MiB, the kernel image, the boot information and
    /// the modules stay reserved. Frames above the boot identity map (4 GiB) are not used.
    /// </summary>
    public static unsafe class FrameAllocator
    {
        public const ulong PageSize = 4096;
        private const ulong Limit = 4UL << 30;

        private static SpinLock s_lock;
        private static ulong* s_bitmap;
        private static ulong s_frames;       // frames covered by the bitmap
        private static ulong s_freeFrames;
        private static ulong s_totalUsable;
        private static ulong s_hint;

        public static ulong FreeFrames => s_freeFrames;

        public static ulong UsableBytes => s_totalUsable;

        public static ulong FrameCount => s_frames;

        /// <summary>Builds the bitmap; <paramref name="reservedEnd"/> is the first byte past the image, boot info and modules.</summary>
        public static string? Initialize(ulong reservedEnd)
        {
            // The sanitized map (Multiboot2Parser, MemoryMapSanitizer): whole pages of RAM below
            // 4 GiB, sorted and disjoint, nothing that another entry calls reserved.
            ulong top = 0;
            for (int i = 0; i < Multiboot2.UsableCount; i++)
            {
                if (Multiboot2.Usable(i).End > top)
                    top = Multiboot2.Usable(i).End;
            }
            if (top == 0)
                return "the memory map has no available RAM";
            if (top > Limit)
                top = Limit;
            s_frames = top / PageSize;
            ulong bitmapBytes = ((s_frames + 63) / 64) * 8;

            // Place the bitmap in the first available range past the reservations.
            ulong bitmapAt = 0;
            reservedEnd = (reservedEnd + PageSize - 1) & ~(PageSize - 1);
            for (int i = 0; i < Multiboot2.UsableCount && bitmapAt == 0; i++)
            {
                ref UsableRange r = ref Multiboot2.Usable(i);
                ulong start = r.Start < reservedEnd ? reservedEnd : r.Start;
                if (start + bitmapBytes <= r.End && start + bitmapBytes <= Limit)
                    bitmapAt = start;
            }
            if (bitmapAt == 0)
                return "no room for the frame bitmap";
            s_bitmap = (ulong*)bitmapAt;
            Tandem.Arch.X86.Native.MemSet(s_bitmap, 0xFF, bitmapBytes);

            ulong firstFree = (bitmapAt + bitmapBytes + PageSize - 1) & ~(PageSize - 1);
            for (int i = 0; i < Multiboot2.UsableCount; i++)
            {
                ref UsableRange r = ref Multiboot2.Usable(i);
                ulong start = r.Start / PageSize;
                ulong end = r.End / PageSize;
                if (end > s_frames)
                    end = s_frames;
                for (ulong f = start; f < end; f++)
                {
                    s_totalUsable += PageSize;
                    if (f * PageSize >= firstFree)
                    {
                        s_bitmap[f / 64] &= ~(1UL << (int)(f % 64));
                        s_freeFrames++;
                    }
                }
            }
            s_hint = firstFree / PageSize;
            return null;
        }

        private static bool IsUsed(ulong frame) => (s_bitmap[frame / 64] & (1UL << (int)(frame % 64))) != 0;

        /// <summary>Allocates <paramref name="count"/> contiguous frames; returns the physical address or 0.</summary>
        public static ulong AllocateContiguous(ulong count)
        {
            if (count == 0 || s_bitmap == null)
                return 0;
            ulong flags = s_lock.Acquire();
            ulong result = Find(s_hint, s_frames, count);
            if (result == ulong.MaxValue)
                result = Find(0, s_hint, count);
            if (result == ulong.MaxValue)
            {
                s_lock.Release(flags);
                return 0;
            }
            for (ulong f = result; f < result + count; f++)
                s_bitmap[f / 64] |= 1UL << (int)(f % 64);
            s_freeFrames -= count;
            s_hint = result + count;
            s_lock.Release(flags);
            return result * PageSize;
        }

        private static ulong Find(ulong from, ulong to, ulong count)
        {
            ulong run = 0;
            for (ulong f = from; f < to; f++)
            {
                if ((f % 64) == 0 && s_bitmap[f / 64] == ulong.MaxValue && f + 64 <= to)
                {
                    run = 0;
                    f += 63;
                    continue;
                }
                if (IsUsed(f))
                {
                    run = 0;
                    continue;
                }
                if (++run == count)
                    return f + 1 - count;
            }
            return ulong.MaxValue;
        }

        public static ulong Allocate() => AllocateContiguous(1);

        /// <summary>Frees frames; panics if any of them was already free (a double free).</summary>
        public static void FreeContiguous(ulong physical, ulong count)
        {
            ulong first = physical / PageSize;
            ulong flags = s_lock.Acquire();
            for (ulong f = first; f < first + count; f++)
            {
                if (f >= s_frames || !IsUsed(f))
                {
                    s_lock.Release(flags);
                    Panic.Fail("frame allocator: double free or foreign frame");
                }
                s_bitmap[f / 64] &= ~(1UL << (int)(f % 64));
            }
            s_freeFrames += count;
            s_lock.Release(flags);
        }

        public static void Free(ulong physical) => FreeContiguous(physical, 1);

        /// <summary>Recounts the bitmap and compares with the running count. Returns null or what is wrong.</summary>
        public static string? CheckInvariants()
        {
            ulong flags = s_lock.Acquire();
            ulong free = 0;
            for (ulong f = 0; f < s_frames; f++)
            {
                if (!IsUsed(f))
                    free++;
            }
            bool ok = free == s_freeFrames;
            s_lock.Release(flags);
            return ok ? null : "free-frame count disagrees with the bitmap";
        }
    }
}
