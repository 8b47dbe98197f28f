using Tandem.Kernel.Console;
using Tandem.Mm;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// The portable mm core running in the kernel: it owns one physically contiguous pool taken from
    /// the boot frame allocator (its frame database covers the frames up to the pool's end; the
    /// ones below the pool are reserved to it).
    /// </summary>
    public static unsafe class KernelMm
    {
        public static MemoryManager<KernelMmPlatform>? Manager;
        public static ulong PoolStart;
        public static ulong PoolPages;

        public static string? Initialize(ulong bytes)
        {
            ulong pages = bytes / FrameAllocator.PageSize;
            ulong start = FrameAllocator.AllocateContiguous(pages);
            if (start == 0)
                return "not enough contiguous memory for the mm pool";
            PoolStart = start;
            PoolPages = pages;
            int first = (int)(start / FrameAllocator.PageSize);
            int count = first + (int)pages;
            Manager = new MemoryManager<KernelMmPlatform>(default, count, first, (int)pages * 2);
            Log.Info($"mm: pool of {bytes >> 20} MiB at {start:x}");
            return null;
        }
    }
}
