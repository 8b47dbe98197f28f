using System.Runtime;
using System.Threading;

namespace Internal.Runtime
{
    /// <summary>
    /// Resolves interface calls for the stubs in tools/StubGen/Stubs/InterfaceDispatch.cs.
    /// </summary>
    /// <remarks>
    /// ILC emits, per call site, a run of two cells: {stub, cache} then a terminator {0, slot}.
    /// Initially the cache holds the interface MethodTable as a relative pointer from the cache
    /// word itself, tagged in its low two bits (3: relative pointer to the type, 2: relative pointer
    /// to a cell holding the type, 1: the type pointer itself). The first resolution replaces the
    /// cache with a block {receiver MethodTable, target, interface, slot} (tag 0) and then the stub
    /// with the cached-dispatch stub; stores are ordered (x86 TSO), so a caller that sees the new
    /// stub sees the block. A call site whose receivers vary keeps its first block and resolves
    /// other types each time (no re-caching, so nothing leaks).
    /// </remarks>
    internal static unsafe class InterfaceDispatch
    {
        private struct CacheBlock
        {
            public MethodTable* Type;
            public nint Target;
            public MethodTable* Interface;
            public nint Slot;
        }

        [RuntimeExport("tandem_resolve_interface")]
        private static nint Resolve(object thisObj, nint* cell)
        {
            MethodTable* type = thisObj.m_pMethodTable;
            nint cache = Volatile.Read(ref cell[1]);
            MethodTable* iface;
            int slot;
            if ((cache & 3) == 0)
            {
                CacheBlock* block = (CacheBlock*)cache;
                iface = block->Interface;
                slot = (int)block->Slot;
            }
            else
            {
                nint address = ((nint)(&cell[1]) + cache) & ~(nint)3;
                iface = (cache & 3) switch
                {
                    3 => (MethodTable*)address,
                    2 => *(MethodTable**)address,
                    _ => (MethodTable*)(cache & ~(nint)3),
                };
                nint* terminator = cell;
                while (terminator[0] != 0)
                    terminator += 2;
                slot = (int)(ushort)terminator[1];
            }

            nint target = Find(type, iface, slot);
            if (target == 0)
                Panic.FailFast("interface dispatch: the receiver does not implement the interface method");

            if ((cache & 3) != 0)
            {
                CacheBlock* block = (CacheBlock*)Heap.Alloc((nuint)sizeof(CacheBlock));
                if (block != null)
                {
                    block->Type = type;
                    block->Target = target;
                    block->Interface = iface;
                    block->Slot = slot;
                    // Only one CPU installs a block; a loser frees nothing (the heap block is small) but
                    // must not overwrite the winner's block.
                    if (Interlocked.CompareExchange(ref cell[1], (nint)block, cache) == cache)
                        Volatile.Write(ref cell[0], CachedStub());
                }
            }
            return target;
        }

        [System.Runtime.InteropServices.DllImport("*", EntryPoint = "tandem_interface_dispatch_cached_address")]
        private static extern nint CachedStub();

        internal static nint Find(MethodTable* type, MethodTable* iface, int slot)
        {
            for (MethodTable* current = type; current != null; current = current->BaseType)
            {
                nint found = FindInType(current, type, iface, slot);
                if (found != 0)
                    return found;
            }
            return 0;
        }

        private static nint FindInType(MethodTable* current, MethodTable* exact, MethodTable* iface, int slot)
        {
            DispatchMap* map = current->DispatchMap;
            if (map == null)
                return 0;
            int count = map->_standardEntryCount + map->_defaultEntryCount;
            DispatchMapEntry* entries = map->Entries;
            MethodTable** interfaces = current->InterfaceMap;
            for (int i = 0; i < count; i++)
            {
                DispatchMapEntry* e = entries + i;
                if (e->_usInterfaceMethodSlot != slot || e->_usInterfaceIndex >= current->_usNumInterfaces)
                    continue;
                if (interfaces[e->_usInterfaceIndex] != iface)
                    continue;
                int impl = e->_usImplMethodSlot;
                if (impl < current->_usNumVtableSlots)
                    return exact->VTable[impl];
                return current->GetSealedVirtualSlot(impl - current->_usNumVtableSlots);
            }
            return 0;
        }
    }
}
