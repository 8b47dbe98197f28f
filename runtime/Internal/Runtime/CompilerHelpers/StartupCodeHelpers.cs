using System;
using System.Runtime;
using System.Runtime.CompilerServices;

namespace Internal.Runtime.CompilerHelpers
{
    /// <summary>
    /// The helpers ILC's generated code calls by symbol name (allocation, write barriers, GC
    /// transitions) and the start-up work that must run before any static is touched.
    /// </summary>
    internal static unsafe partial class StartupCodeHelpers
    {
        // --- Allocation ----------------------------------------------------------------------

        [RuntimeExport("RhpNewFast")]
        private static void* RhpNewFast(MethodTable* type)
        {
            void** result = (void**)Heap.Alloc(type->_uBaseSize);
            if (result == null)
                Panic.FailFast("out of memory allocating an object");
            *result = type;
            return result;
        }

        [RuntimeExport("RhpNewFinalizable")]
        private static void* RhpNewFinalizable(MethodTable* type) => RhpNewFast(type);

        [RuntimeExport("RhpNewArray")]
        private static void* RhpNewArray(MethodTable* type, int length)
        {
            if (length < 0)
                Panic.FailFast("negative array length");
            ulong size = type->_uBaseSize + (ulong)length * type->ComponentSize;
            size = (size + 7) & ~7UL;
            if (size > 0x4000_0000)
                Panic.FailFast("array larger than 1 GiB");
            void** result = (void**)Heap.Alloc((nuint)size);
            if (result == null)
                Panic.FailFast("out of memory allocating an array");
            *result = type;
            *(int*)(result + 1) = length;
            return result;
        }

        [RuntimeExport("RhpNewArrayFast")]
        private static void* RhpNewArrayFast(MethodTable* type, int length) => RhpNewArray(type, length);

        [RuntimeExport("RhpNewPtrArrayFast")]
        private static void* RhpNewPtrArrayFast(MethodTable* type, int length) => RhpNewArray(type, length);

        [RuntimeExport("RhNewString")]
        private static void* RhNewString(MethodTable* type, int length) => RhpNewArray(type, length);

        // --- Write barriers: no collector, so a plain store -----------------------------------

        [RuntimeExport("RhpAssignRef")]
        private static void RhpAssignRef(void** destination, void* value) => *destination = value;

        [RuntimeExport("RhpCheckedAssignRef")]
        private static void RhpCheckedAssignRef(void** destination, void* value) => *destination = value;

        // --- GC transitions: no collector, so nothing to do -----------------------------------

        [RuntimeExport("RhpPInvoke")]
        private static void RhpPInvoke(void* frame) { }

        [RuntimeExport("RhpPInvokeReturn")]
        private static void RhpPInvokeReturn(void* frame) { }

        [RuntimeExport("RhpReversePInvoke")]
        private static void RhpReversePInvoke(void* frame) { }

        [RuntimeExport("RhpReversePInvokeReturn")]
        private static void RhpReversePInvokeReturn(void* frame) { }

        [RuntimeExport("RhpGcPoll")]
        private static void RhpGcPoll() { }

        // --- Failure ------------------------------------------------------------------------

        [RuntimeExport("RhpFallbackFailFast")]
        private static void RhpFallbackFailFast() => Panic.FailFast("runtime fallback fail-fast");

        [RuntimeExport("RhpThrowEx")]
        private static void RhpThrowEx(object exception)
        {
            // There is no unwinder: every throw is fatal and reported with the exception itself.
            Panic.UnhandledException(*(void**)Unsafe.AsPointer(ref exception), 0);
        }

        [RuntimeExport("RhpRethrow")]
        private static void RhpRethrow() => Panic.FailFast("rethrow without an unwinder");

        // --- Start-up -----------------------------------------------------------------------

        /// <summary>
        /// Allocates the objects that hold every type's GC statics. Must run before any static
        /// field holding an object reference is read or written. Called by the kernel first thing.
        /// </summary>
        [RuntimeExport("tandem_runtime_init")]
        private static void InitializeRuntime(void** modulesStart, void** modulesEnd)
        {
            for (void** module = modulesStart; module < modulesEnd; module++)
            {
                if (*module == null)
                    continue;
                ReadyToRunHeader* header = (ReadyToRunHeader*)*module;
                if (header->Signature != ReadyToRunHeader.ExpectedSignature)
                    Panic.FailFast("bad ReadyToRun header in __modules");
                byte* sections = (byte*)(header + 1);
                for (int i = 0; i < header->NumberOfSections; i++)
                {
                    ModuleInfoRow* row = (ModuleInfoRow*)(sections + i * header->EntrySize);
                    if (row->SectionId == ReadyToRunHeader.GCStaticRegionSection)
                        InitializeGCStatics((byte*)row->Start, (byte*)row->End);
                }
            }
        }

        private static void InitializeGCStatics(byte* regionStart, byte* regionEnd)
        {
            // Each 32-bit entry is a relative pointer to a block; a block starts with a relative
            // pointer to the MethodTable of the statics holder, tagged Uninitialized (bit 0) and
            // HasPreInitializedData (bit 1, then the next relative pointer is the blob to copy).
            // Once the holder object exists, the block's first word becomes the object reference.
            for (byte* entry = regionStart; entry < regionEnd; entry += sizeof(int))
            {
                nint* block = (nint*)ReadRelative(entry);
                nint tagged = (nint)ReadRelative(block);
                if ((tagged & 1) == 0)
                    continue;
                MethodTable* type = (MethodTable*)(tagged & ~(nint)3);
                void* holder = RhpNewFast(type);
                if ((tagged & 2) != 0)
                {
                    byte* data = (byte*)ReadRelative((int*)block + 1);
                    uint size = type->_uBaseSize - (uint)(2 * sizeof(nint));
                    byte* destination = (byte*)holder + sizeof(nint);
                    for (uint i = 0; i < size; i++)
                        destination[i] = data[i];
                }
                *block = (nint)holder;
            }
        }

        private static void* ReadRelative(void* address) => (byte*)address + *(int*)address;
    }

    internal unsafe struct ReadyToRunHeader
    {
        internal const uint ExpectedSignature = 0x00525452; // "RTR"
        internal const int GCStaticRegionSection = 201;

        internal uint Signature;
        internal ushort MajorVersion;
        internal ushort MinorVersion;
        internal uint Flags;
        internal ushort NumberOfSections;
        internal byte EntrySize;
        internal byte EntryType;
    }

    internal unsafe struct ModuleInfoRow
    {
        internal int SectionId;
        internal int Flags;
        internal void* Start;
        internal void* End;
    }
}
