using System.Runtime.InteropServices;

namespace Internal.Runtime
{
    /// <summary>The runtime's way out: symbols the kernel defines (kernel/Panic.cs).</summary>
    internal static unsafe class Panic
    {
        [DllImport("*", EntryPoint = "tandem_fail_fast")]
        private static extern void TandemFailFast(byte* reason);

        [DllImport("*", EntryPoint = "tandem_unhandled_exception")]
        internal static extern void UnhandledException(void* exception, nint throwSite);

        /// <summary>Stops the machine with an ASCII reason (a string literal).</summary>
        internal static void FailFast(string reason)
        {
            byte* buffer = stackalloc byte[128];
            int i = 0;
            for (; i < reason.Length && i < 127; i++)
                buffer[i] = (byte)reason[i];
            buffer[i] = 0;
            TandemFailFast(buffer);
        }
    }

    /// <summary>The kernel heap, reached through symbols the kernel defines (kernel/Heap).</summary>
    internal static unsafe class Heap
    {
        /// <summary>Returns zeroed, 16-byte aligned memory, or null.</summary>
        [DllImport("*", EntryPoint = "tandem_heap_alloc")]
        internal static extern void* Alloc(nuint size);
    }
}
