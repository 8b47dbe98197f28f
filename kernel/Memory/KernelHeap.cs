using System.Runtime.InteropServices;
using Tandem.Arch.X86;
using Tandem.Kernel.Sync;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// The kernel heap: power-of-two size classes from 32 bytes to 4 KiB, each with a free list,
    /// carved from chunks of physically contiguous memory (the early arena the linker reserves,
    /// then chunks from the frame allocator). Larger requests get whole pages. Every block has a
    /// 16-byte header (magic, size class) so <see cref="Free"/> and the invariant check can verify
    /// it. Memory is zeroed when handed out.
    /// </summary>
    /// <remarks>
    /// Object lifetimes: there is no garbage collector. Objects made with <c>new</c> live until
    /// <see cref="Free"/> is called on them explicitly; long-lived kernel structures are allocated
    /// once at boot and never freed; hot paths allocate nothing. Memory that lockless readers may
    /// still see is freed only through the deferred-free path (see docs/architecture.md).
    /// </remarks>
    public static unsafe class KernelHeap
    {
        private const int MinShift = 5;          // 32 bytes (16 header + 16 payload)
        private const int MaxShift = 12;         // 4 KiB
        private const int ClassCount = MaxShift - MinShift + 1;
        private const uint Magic = 0x7A4D_0B1E;
        private const uint FreeMagic = 0xF4EE_0B1E;
        private const int HeaderSize = 16;
        private const ulong ChunkSize = 2UL << 20;

        private struct Header
        {
            public uint Magic;
            public int SizeClass;     // -1: a large block of Pages pages
            public ulong Pages;
        }

        private static SpinLock s_lock;
        private static byte* s_chunkNext;
        private static byte* s_chunkEnd;
        private static FreeLists s_free;
        private static ulong s_bytesInUse;
        private static ulong s_allocations;

        [System.Runtime.CompilerServices.InlineArray(ClassCount)]
        private struct FreeLists
        {
            private nint _element;
        }

        /// <summary>Gives the heap its first memory (the early arena).</summary>
        public static void AddChunk(byte* start, ulong size)
        {
            ulong flags = s_lock.Acquire();
            s_chunkNext = start;
            s_chunkEnd = start + size;
            s_lock.Release(flags);
        }

        public static ulong BytesInUse => s_bytesInUse;

        public static ulong Allocations => s_allocations;

        [UnmanagedCallersOnly(EntryPoint = "tandem_heap_alloc")]
        private static void* AllocExport(nuint size) => Alloc((ulong)size);

        /// <summary>Zeroed memory, 16-byte aligned, or null when memory is exhausted.</summary>
        public static void* Alloc(ulong size)
        {
            ulong total = size + HeaderSize;
            if (total > (1UL << MaxShift))
                return AllocLarge(total);
            int shift = MinShift;
            while ((1UL << shift) < total)
                shift++;
            int index = shift - MinShift;

            ulong flags = s_lock.Acquire();
            byte* block = (byte*)s_free[index];
            if (block != null)
            {
                s_free[index] = *(nint*)(block + HeaderSize);
            }
            else
            {
                block = Carve(1UL << shift);
            }
            if (block != null)
            {
                s_bytesInUse += 1UL << shift;
                s_allocations++;
            }
            s_lock.Release(flags);
            if (block == null)
                return null;

            Header* header = (Header*)block;
            header->Magic = Magic;
            header->SizeClass = index;
            header->Pages = 0;
            Native.MemSet(block + HeaderSize, 0, (1UL << shift) - HeaderSize);
            return block + HeaderSize;
        }

        private static void* AllocLarge(ulong total)
        {
            ulong pages = (total + 4095) / 4096;
            ulong physical = FrameAllocator.AllocateContiguous(pages);
            if (physical == 0)
                return null;
            byte* block = (byte*)physical;
            Native.MemSet(block, 0, pages * 4096);
            Header* header = (Header*)block;
            header->Magic = Magic;
            header->SizeClass = -1;
            header->Pages = pages;
            ulong flags = s_lock.Acquire();
            s_bytesInUse += pages * 4096;
            s_allocations++;
            s_lock.Release(flags);
            return block + HeaderSize;
        }

        /// <summary>Carves a new block from the current chunk, refilling it from the frame allocator. Lock held.</summary>
        private static byte* Carve(ulong size)
        {
            // Keep blocks naturally aligned to 16 (all sizes are multiples of 32).
            if (s_chunkNext + size > s_chunkEnd)
            {
                ulong physical = FrameAllocator.AllocateContiguous(ChunkSize / 4096);
                if (physical == 0)
                    return null;
                s_chunkNext = (byte*)physical;
                s_chunkEnd = s_chunkNext + ChunkSize;
            }
            byte* block = s_chunkNext;
            s_chunkNext += size;
            return block;
        }

        /// <summary>Returns a block to the heap. Panics on a pointer the heap did not hand out or a double free.</summary>
        public static void Free(void* pointer)
        {
            if (pointer == null)
                return;
            Header* header = (Header*)((byte*)pointer - HeaderSize);
            if (header->Magic != Magic)
                Panic.Fail(header->Magic == FreeMagic ? "heap: double free" : "heap: free of a pointer the heap did not allocate");
            if (header->SizeClass < 0)
            {
                ulong pages = header->Pages;
                header->Magic = FreeMagic;
                ulong f = s_lock.Acquire();
                s_bytesInUse -= pages * 4096;
                s_allocations--;
                s_lock.Release(f);
                FrameAllocator.FreeContiguous((ulong)header, pages);
                return;
            }
            int index = header->SizeClass;
            header->Magic = FreeMagic;
            ulong flags = s_lock.Acquire();
            *(nint*)((byte*)header + HeaderSize) = s_free[index];
            s_free[index] = (nint)header;
            s_bytesInUse -= 1UL << (index + MinShift);
            s_allocations--;
            s_lock.Release(flags);
        }

        /// <summary>Frees an object made with <c>new</c>. The caller guarantees nothing references it.</summary>
        public static void Free(object obj) => Free(*(void**)System.Runtime.CompilerServices.Unsafe.AsPointer(ref obj));

        /// <summary>Walks every free list and checks each block's header. Returns null or what is wrong.</summary>
        public static string? CheckInvariants()
        {
            ulong flags = s_lock.Acquire();
            string? problem = null;
            for (int index = 0; index < ClassCount && problem == null; index++)
            {
                int steps = 0;
                for (byte* block = (byte*)s_free[index]; block != null; block = (byte*)*(nint*)(block + HeaderSize))
                {
                    Header* header = (Header*)block;
                    if (header->Magic != FreeMagic || header->SizeClass != index)
                    {
                        problem = "a free-list block has a bad header";
                        break;
                    }
                    if (++steps > 10_000_000)
                    {
                        problem = "a free list has a cycle";
                        break;
                    }
                }
            }
            s_lock.Release(flags);
            return problem;
        }
    }
}
