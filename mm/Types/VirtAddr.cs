using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>A virtual address in some address space (4-level paging: 48 significant bits, canonical).</summary>
public readonly struct VirtAddr
{
    /// <summary>The raw 64-bit address.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw virtual address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public VirtAddr(ulong value) { Value = value; }

    /// <summary>
    /// The 9-bit table index used at <paramref name="level"/> (4 = PML4, 3 = PDPT, 2 = PD, 1 = PT).
    /// Intel SDM Vol. 3A, 4.5.4, Figure 4-8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int TableIndex(int level) { return (int)((Value >> (PageSizes.Shift4K + 9 * (level - 1))) & 511); }

    /// <summary>The address rounded down to <paramref name="size"/> (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public VirtAddr AlignDown(ulong size) { return new VirtAddr(Value & ~(size - 1)); }

    /// <summary>True when aligned to <paramref name="size"/> (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsAligned(ulong size) { return (Value & (size - 1)) == 0; }

    /// <summary>True for addresses whose bits 63:47 are all equal (SDM Vol. 3A, 3.3.7.1).</summary>
    public bool IsCanonical
    {
        get { ulong top = Value >> 47; return top == 0 || top == 0x1FFFF; }
    }

    /// <summary>Address plus a byte offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static VirtAddr operator +(VirtAddr a, ulong offset) { return new VirtAddr(a.Value + offset); }

    /// <summary>Byte distance between two addresses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong operator -(VirtAddr a, VirtAddr b) { return a.Value - b.Value; }

    /// <summary>Ordering on the raw value.</summary>
    public static bool operator <(VirtAddr a, VirtAddr b) { return a.Value < b.Value; }

    /// <summary>Ordering on the raw value.</summary>
    public static bool operator >(VirtAddr a, VirtAddr b) { return a.Value > b.Value; }

    /// <summary>Ordering on the raw value.</summary>
    public static bool operator <=(VirtAddr a, VirtAddr b) { return a.Value <= b.Value; }

    /// <summary>Ordering on the raw value.</summary>
    public static bool operator >=(VirtAddr a, VirtAddr b) { return a.Value >= b.Value; }

    /// <summary>Equality on the raw value.</summary>
    public static bool operator ==(VirtAddr a, VirtAddr b) { return a.Value == b.Value; }

    /// <summary>Inequality on the raw value.</summary>
    public static bool operator !=(VirtAddr a, VirtAddr b) { return a.Value != b.Value; }

    /// <inheritdoc/>
    public override bool Equals(object? obj) { return obj is VirtAddr other && other.Value == Value; }

    /// <inheritdoc/>
    public override int GetHashCode() { return Value.GetHashCode(); }
}
