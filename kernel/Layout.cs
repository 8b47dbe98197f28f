namespace Tandem.Kernel
{
    /// <summary>
    /// Addresses only the linker knows (section bounds and the generated stubs' data), which
    /// linker.ld writes into a table at the fixed address <see cref="Address"/>.
    /// Keep the field order in step with the ".layout" section in linker.ld.
    /// </summary>
    public unsafe struct KernelLayout
    {
        public const ulong Address = 0x200100;

        public ulong ImageStart;
        public ulong ImageEnd;
        public ulong ModulesStart;
        public ulong ModulesEnd;
        public ulong EarlyHeapStart;
        public ulong EarlyHeapEnd;
        public ulong TextStart;
        public ulong TextEnd;
        public ulong IsrTable;
        public ulong ApTrampolineStart;
        public ulong ApTrampolineEnd;
        public ulong ExTable;
        public ulong ExTableCount;
        public ulong BootPml4;

        public static KernelLayout* Get => (KernelLayout*)Address;
    }
}
