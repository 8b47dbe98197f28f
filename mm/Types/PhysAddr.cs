using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>A host physical address. Distinct from <see cref="VirtAddr"/> so the two never mix.</summary>
public readonly struct PhysAddr
{
    /// <summary>The raw 64-bit address.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw physical address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PhysAddr(ulong value) { Value = value; }

    /// <summary>The frame that holds this address.</summary>
    public Pfn Pfn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return new Pfn(Value >> PageSizes.Shift4K); }
    }

    /// <summary>Offset inside the 4 KiB page.</summary>
    public ulong PageOffset
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return Value & (PageSizes.Size4K - 1); }
    }

    /// <summary>True when aligned to <paramref name="size"/> (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsAligned(ulong size) { return (Value & (size - 1)) == 0; }

    /// <summary>Address plus a byte offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PhysAddr operator +(PhysAddr a, ulong offset) { return new PhysAddr(a.Value + offset); }

    /// <summary>Equality on the raw value.</summary>
    public static bool operator ==(PhysAddr a, PhysAddr b) { return a.Value == b.Value; }

    /// <summary>Inequality on the raw value.</summary>
    public static bool operator !=(PhysAddr a, PhysAddr b) { return a.Value != b.Value; }

    /// <inheritdoc/>
    public override bool Equals(object? obj) { return obj is PhysAddr other && other.Value == Value; }

    /// <inheritdoc/>
    public override int GetHashCode() { return Value.GetHashCode(); }
}
