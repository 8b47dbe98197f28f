namespace Tandem.Kernel.Tests
{
    /// <summary>Deliberate crashes, to show the panic dump. Run them by exact name only.</summary>
    internal static unsafe class PanicTests
    {
        public static void UnhandledException(TestContext t) => ThrowDeliberately(42);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static void ThrowDeliberately(int depth)
        {
            if (depth > 0)
                throw new System.InvalidOperationException("deliberate unhandled exception from panic.unhandled_exception");
        }

        public static void PageFault(TestContext t) => Touch(0x0000_4000_0000_0000UL);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static void Touch(ulong address) => *(ulong*)address = 1;
    }
}
