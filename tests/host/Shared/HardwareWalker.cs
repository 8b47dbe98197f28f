using System;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// The CPU's page walker over the primary (x86-64 4-level) page tables, as a test actor: it walks
/// like the hardware (SDM Vol. 3A, 4.5) and sets the accessed bit in every entry it uses and the
/// dirty bit in the leaf on a write (SDM Vol. 3A, 4.8) with locked read-modify-writes. The CPU
/// makes such an update only to the present entry it read, so each is a compare-exchange against
/// that value; if mm changed the entry meanwhile, the walker reads it again (and stops if it is
/// gone). Every read and update is an explorer step (<see cref="SharedAccessKind.HardwareWalk"/>)
/// and is checked against freed page-table frames, like mm's own accesses.
/// </summary>
/// <remarks>
/// A real CPU never walks a table after the flush that followed its unlinking, and never walks an
/// address space that is loaded on no CPU; tests must not run it against <c>Destroy</c>.
/// </remarks>
public static unsafe class HardwareWalker
{
    /// <summary>
    /// One access to <paramref name="va"/> through the tables at <paramref name="root"/>
    /// (<paramref name="tableAt"/> turns a physical address into a pointer). Returns true when it
    /// reached a present leaf that allows the access (A, and D on a write, then set); false when the
    /// CPU would have raised a page fault.
    /// </summary>
    public static bool TouchPrimary(Func<PhysAddr, IntPtr> tableAt, PhysAddr root, VirtAddr va, bool write) =>
        TouchPrimary(tableAt, root, va, write, out PhysAddr _);

    /// <summary>As above; <paramref name="frame"/> is the 4 KiB frame the access used.</summary>
    public static bool TouchPrimary(Func<PhysAddr, IntPtr> tableAt, PhysAddr root, VirtAddr va, bool write, out PhysAddr frame)
    {
        frame = default;
        PhysAddr table = root;
        for (int level = 4; level >= 1; level--)
        {
            ulong* slot = (ulong*)tableAt(table) + va.TableIndex(level);
            while (true)
            {
                AccessMonitor.Step(SharedAccessKind.HardwareWalk, (ulong)slot);
                PageTableEntry e = new PageTableEntry(Volatile.Read(ref *slot));
                if (!e.IsPresent || (write && !e.IsWritable))
                    return false;
                bool leaf = e.IsLeaf(level);
                ulong n = e.Raw | PageTableEntry.Accessed | (leaf && write ? PageTableEntry.Dirty : 0);
                if (n != e.Raw)
                {
                    AccessMonitor.Step(SharedAccessKind.HardwareWalk, (ulong)slot);
                    // The CPU's locked A/D update; pairs with PteOps.Exchange/ClearBits/CompareExchange:
                    // whichever comes second sees the other's change.
                    if (Interlocked.CompareExchange(ref *slot, n, e.Raw) != e.Raw)
                        continue;
                }
                if (leaf)
                {
                    ulong size = PageSizes.ForLevel(level);
                    frame = new PhysAddr(e.LeafAddress(level).Value + (va.Value & (size - 1) & ~0xFFFUL));
                    return true;
                }
                table = e.TableAddress;
                break;
            }
        }
        return false;
    }
}
