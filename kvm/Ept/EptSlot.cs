using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>One step of an <see cref="EptWalker{TPlatform}"/>: a present leaf and where it lives.</summary>
public readonly unsafe struct EptSlot
{
    /// <summary>The live entry (touch it only through <see cref="EptOps"/>).</summary>
    public readonly ulong* Pointer;
    /// <summary>1 = 4 KiB leaf, 2 = 2 MiB leaf.</summary>
    public readonly int Level;
    /// <summary>First guest-physical address the leaf maps.</summary>
    public readonly GuestPhysAddr Address;
    /// <summary>The value read when the walker stopped here (may be stale by now).</summary>
    public readonly EptEntry Value;

    /// <summary>Creates a step.</summary>
    public EptSlot(ulong* pointer, int level, GuestPhysAddr address, EptEntry value)
    {
        Pointer = pointer;
        Level = level;
        Address = address;
        Value = value;
    }

    /// <summary>Bytes the leaf maps.</summary>
    public ulong Size { get { return PageSizes.ForLevel(Level); } }
}
