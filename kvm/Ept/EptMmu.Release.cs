using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

public sealed unsafe partial class EptMmu<TPlatform>
{
    /// <summary>
    /// The registration ends or the address space is dying: refuse faults, zap every leaf (dirty
    /// bits carried over) while the memslots stay visible to concurrent invalidations, flush, mark
    /// the tables gone, wait for every lockless walker that might still hold a table, and only then
    /// free the table pages (<see cref="IEptPlatform.FreeTable"/>). Later faults return Dead; later
    /// callbacks (an invalidation that began before the unregistration) find nothing to do.
    /// </summary>
    /// <remarks>
    /// Rules for using this: no vCPU of the VM may enter the guest again with this EPT pointer.
    /// This is the only place where EPT table pages are freed. The order is the lifetime rule:
    /// (1) <c>_dead</c> under the MMU lock, so no fault installs a leaf or a table after the zap;
    /// (2) zap, then INVEPT on every CPU of the mask, so no hardware walk uses a leaf or a cached
    /// table any more; (3) <c>_walkers.Close()</c>, so no new lockless walker starts; (4) the grace
    /// period, so no walker that started before (3) is still inside a table; (5) free.
    /// Runs once; a second call returns at once.
    /// </remarks>
    public void Release(IAddressSpace space)
    {
        LockMmu();
        if (_dead != 0)
        {
            UnlockMmu();
            return;
        }
        _dead = 1;
        UnlockMmu();
        // Shared memory first, so its dirty bits reach its source (EptMmu.Foreign.cs).
        ZapForeignForRelease();
        ZapGuestRange(new GuestPhysAddr(0), new GuestPhysAddr(GuestPhysLimit));
        FlushTlbs();
        // Release (inside Close): the zap and the flush happen before a walker can see the tables
        // gone; pairs with the acquire in Closed, read by the walkers (InvalidateRangeStart, aging,
        // RemoveMemslot) inside their sections.
        _walkers.Close();
        _walkers.Synchronize(_platform);
        LockMmu();
        // Release; pairs with the Volatile.Read in Memslots.
        Volatile.Write(ref _slots, MemslotMap.Empty);
        UnlockMmu();
        // No fault (dead), no lockless walker (gone, and the grace period passed) and no hardware
        // walk (flushed) can reach a table now.
        FreeTables(_root, 4);
    }

    private void FreeTables(PhysAddr table, int level)
    {
        ulong* entries = _platform.TableAt(table);
        if (level > 1)
        {
            for (int i = 0; i < 512; i++)
            {
                EptEntry e = EptOps.Read(entries + i);
                if (e.IsPresent && !e.IsLeaf(level))
                    FreeTables(e.TableAddress, level - 1);
            }
        }
        _platform.FreeTable(table);
    }
}
