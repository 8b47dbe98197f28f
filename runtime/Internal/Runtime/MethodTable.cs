using System.Runtime.InteropServices;

namespace Internal.Runtime
{
    /// <summary>
    /// The type descriptor ILC emits for every type (NativeAOT's MethodTable, .NET 10 layout).
    /// Fixed part: flags, base size, related type, slot and interface counts, hash. It is followed by
    /// the vtable, the interface map, then 32-bit relative pointers: type manager, writable data,
    /// dispatch map (if any), finalizer (if any), sealed virtual slots (if any).
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct MethodTable
    {
        internal const uint HasDispatchMapFlag = 0x00040000;
        internal const uint HasFinalizerFlag = 0x00100000;
        internal const uint HasSealedVTableEntriesFlag = 0x00400000;
        internal const uint HasComponentSizeFlag = 0x80000000;
        internal const uint EETypeKindMask = 0x00030000;
        internal const uint ParameterizedKind = 0x00020000;
        internal const uint ElementTypeMask = 0x7C000000;
        internal const int ElementTypeShift = 26;
        internal const uint ElementTypeInterface = 0x15;
        internal const uint ElementTypeSzArray = 0x18;
        internal const uint ElementTypeArray = 0x17;

        internal uint _uFlags;
        internal uint _uBaseSize;
        internal MethodTable* _relatedType;
        internal ushort _usNumVtableSlots;
        internal ushort _usNumInterfaces;
        internal uint _uHashCode;

        internal ushort ComponentSize => (_uFlags & HasComponentSizeFlag) != 0 ? (ushort)_uFlags : (ushort)0;

        internal uint ElementType => (_uFlags & ElementTypeMask) >> ElementTypeShift;

        internal bool IsInterface => ElementType == ElementTypeInterface;

        internal bool IsArray => ElementType == ElementTypeSzArray || ElementType == ElementTypeArray;

        internal bool IsParameterized => (_uFlags & EETypeKindMask) == ParameterizedKind;

        /// <summary>The base class for a canonical type (null for object and interfaces).</summary>
        internal MethodTable* BaseType => IsParameterized ? null : _relatedType;

        internal nint* VTable
        {
            get
            {
                fixed (MethodTable* self = &this)
                    return (nint*)(self + 1);
            }
        }

        internal MethodTable** InterfaceMap => (MethodTable**)(VTable + _usNumVtableSlots);

        private byte* AfterInterfaces => (byte*)(InterfaceMap + _usNumInterfaces);

        /// <summary>Dispatch map (interface slot to implementation slot), or null.</summary>
        internal DispatchMap* DispatchMap
        {
            get
            {
                if ((_uFlags & HasDispatchMapFlag) == 0)
                    return null;
                // Type manager and writable data relative pointers come first.
                return (DispatchMap*)FollowRelative((int*)(AfterInterfaces + 8));
            }
        }

        /// <summary>Sealed virtual slot number <paramref name="slot"/> (slots past the vtable).</summary>
        internal nint GetSealedVirtualSlot(int slot)
        {
            byte* field = AfterInterfaces + 8;
            if ((_uFlags & HasDispatchMapFlag) != 0)
                field += 4;
            if ((_uFlags & HasFinalizerFlag) != 0)
                field += 4;
            int* table = (int*)FollowRelative((int*)field);
            return (nint)FollowRelative(table + slot);
        }

        private static void* FollowRelative(int* field) => (byte*)field + *field;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct DispatchMapEntry
    {
        internal ushort _usInterfaceIndex;
        internal ushort _usInterfaceMethodSlot;
        internal ushort _usImplMethodSlot;
    }

    /// <summary>Per-type list of (interface index, interface slot) → implementation slot.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct DispatchMap
    {
        internal ushort _standardEntryCount;
        internal ushort _defaultEntryCount;
        internal ushort _standardStaticEntryCount;
        internal ushort _defaultStaticEntryCount;

        internal DispatchMapEntry* Entries
        {
            get
            {
                fixed (DispatchMap* self = &this)
                    return (DispatchMapEntry*)(self + 1);
            }
        }
    }
}
