using Tandem.Kernel.Memory;

namespace Tandem.Kernel.Tests
{
    internal static unsafe class MemoryTests
    {
        public static void FrameAllocator(TestContext t)
        {
            const int Count = 64;
            ulong* frames = stackalloc ulong[Count];
            ulong freeBefore = Memory.FrameAllocator.FreeFrames;
            for (int i = 0; i < Count; i++)
            {
                frames[i] = Memory.FrameAllocator.Allocate();
                if (!t.Check(frames[i] != 0 && (frames[i] & 0xFFF) == 0, "allocation failed or is not page aligned"))
                    return;
                *(ulong*)frames[i] = (ulong)i;      // the frame is usable memory
            }
            for (int i = 0; i < Count; i++)
            {
                for (int j = 0; j < i; j++)
                {
                    if (frames[i] == frames[j])
                    {
                        t.Fail("the same frame was handed out twice");
                        return;
                    }
                }
                if (*(ulong*)frames[i] != (ulong)i)
                {
                    t.Fail("a frame's contents changed under us");
                    return;
                }
            }
            t.Check(Memory.FrameAllocator.FreeFrames == freeBefore - Count, "free count did not drop by the allocation");
            ulong run = Memory.FrameAllocator.AllocateContiguous(16);
            t.Check(run != 0, "a 16-frame contiguous allocation failed");
            for (int i = 0; i < Count; i++)
                Memory.FrameAllocator.Free(frames[i]);
            if (run != 0)
                Memory.FrameAllocator.FreeContiguous(run, 16);
            t.Check(Memory.FrameAllocator.FreeFrames == freeBefore, "free count not restored after freeing");
            string? problem = Memory.FrameAllocator.CheckInvariants();
            if (problem != null)
                t.Fail(problem);
        }

        public static void Heap(TestContext t)
        {
            const int Count = 200;
            byte** blocks = stackalloc byte*[Count];
            ulong inUse = KernelHeap.BytesInUse;
            for (int i = 0; i < Count; i++)
            {
                ulong size = (ulong)(1 + (i * 37) % 5000);
                blocks[i] = (byte*)KernelHeap.Alloc(size);
                if (!t.Check(blocks[i] != null && ((ulong)blocks[i] & 15) == 0, "allocation failed or is not 16-byte aligned"))
                    return;
                for (ulong k = 0; k < size; k++)
                {
                    if (blocks[i][k] != 0)
                    {
                        t.Fail("heap memory was not zeroed");
                        return;
                    }
                    blocks[i][k] = (byte)i;
                }
            }
            for (int i = 0; i < Count; i++)
            {
                ulong size = (ulong)(1 + (i * 37) % 5000);
                for (ulong k = 0; k < size; k++)
                {
                    if (blocks[i][k] != (byte)i)
                    {
                        t.Fail("two heap blocks overlap");
                        return;
                    }
                }
            }
            for (int i = 0; i < Count; i += 2)
                KernelHeap.Free(blocks[i]);
            string? problem = KernelHeap.CheckInvariants();
            if (problem != null)
            {
                t.Fail(problem);
                return;
            }
            for (int i = 1; i < Count; i += 2)
                KernelHeap.Free(blocks[i]);
            t.Check(KernelHeap.BytesInUse == inUse, "bytes in use not restored after freeing everything");
            object o = new TestContext();
            t.Check(o is TestContext, "new of a class did not produce an object of that class");
            int[] array = new int[1000];
            array[999] = 7;
            t.Check(array.Length == 1000 && array[999] == 7 && array[0] == 0, "new int[1000] misbehaved");
        }
    }
}
