using System.Runtime;

namespace Internal.Runtime
{
    /// <summary>
    /// Resolves interface calls. ILC emits, per call site, a two-word dispatch cell
    /// {stub, cache}: the stub starts as RhpInitialDynamicInterfaceDispatch and the cache holds the
    /// interface MethodTable (low bits tagged) and the slot. The assembly stub (tools/StubGen) saves
    /// the argument registers and calls <see cref="Resolve"/>; the answer is written back into the
    /// cell so the next call through it is cached, then the stub jumps to the target.
    /// </summary>
    internal static unsafe class InterfaceDispatch
    {
        [RuntimeExport("tandem_resolve_interface")]
        private static nint Resolve(object thisObj, nint* cell)
        {
            MethodTable* type = thisObj.m_pMethodTable;
            // Cached: the stub compares type with cell[2] before calling us; a miss re-resolves.
            nint cache = cell[1];
            MethodTable* iface = (MethodTable*)(cache & ~(nint)3);
            int slot = (int)cell[3];
            nint target = Find(type, iface, slot);
            if (target == 0)
                Panic.FailFast("interface dispatch: no implementation found");
            // Publish the monomorphic cache: target first, then the type it is valid for.
            cell[4] = target;
            System.Threading.Volatile.Write(ref cell[2], (nint)type);
            return target;
        }

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
