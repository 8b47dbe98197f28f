using Tandem.Mm;

namespace Tandem.Kvm.Ept;

public sealed unsafe partial class EptMmu<TPlatform>
{
    /// <summary>
    /// The address space is dying (or the VM is being destroyed after unregistering): zap every
    /// leaf (dirty bits carried over), flush, and free every table page through
    /// <see cref="IEptPlatform.FreeTable"/>. Later faults return NoRegion.
    /// </summary>
    /// <remarks>
    /// Rules for using this: no vCPU of the VM may enter the guest again with this EPT pointer.
    /// The table-freeing rule: this is the only place where EPT table pages are freed, and even here
    /// they are freed only after a grace period, because a lockless walker (an aging or zap call
    /// that read the root before the zap) or a hardware walk on a CPU that has not yet processed the
    /// flush may still hold a pointer to them.
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
        // Release; pairs with the Volatile.Read in Memslots.
        System.Threading.Volatile.Write(ref _slots, MemslotMap.Empty);
        UnlockMmu();
        ZapGuestRange(new GuestPhysAddr(0), new GuestPhysAddr(GuestPhysLimit));
        FlushTlbs();
        LockMmu();
        FreeTables(_root, 4);
        UnlockMmu();
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
