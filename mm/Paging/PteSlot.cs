namespace Tandem.Mm;

/// <summary>One step of a <see cref="PageTableWalker{TPlatform}"/>: a live entry and what it covers.</summary>
public readonly unsafe struct PteSlot
{
    /// <summary>Where the entry lives (read and write it only through <see cref="PteOps"/>).</summary>
    public readonly ulong* Pointer;
    /// <summary>1 = PT, 2 = PD, 3 = PDPT, 4 = PML4.</summary>
    public readonly int Level;
    /// <summary>First virtual address covered by the entry (aligned to <see cref="Size"/>).</summary>
    public readonly VirtAddr Address;
    /// <summary>The entry as read when the walker reached it.</summary>
    public readonly PageTableEntry Value;

    /// <summary>Creates a step.</summary>
    public PteSlot(ulong* pointer, int level, VirtAddr address, PageTableEntry value)
    {
        Pointer = pointer;
        Level = level;
        Address = address;
        Value = value;
    }

    /// <summary>Bytes covered by the entry.</summary>
    public ulong Size { get { return PageSizes.ForLevel(Level); } }

    /// <summary>One past the last byte covered.</summary>
    public VirtAddr End { get { return Address + Size; } }
}
