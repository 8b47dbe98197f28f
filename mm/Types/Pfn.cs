using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>A physical frame number: a physical address divided by 4 KiB.</summary>
public readonly struct Pfn
{
    /// <summary>The raw frame number.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw frame number.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Pfn(ulong value) { Value = value; }

    /// <summary>The physical address of the first byte of the frame.</summary>
    public PhysAddr Address
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return new PhysAddr(Value << PageSizes.Shift4K); }
    }

    /// <summary>Frame number plus an offset in frames.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pfn operator +(Pfn a, ulong frames) { return new Pfn(a.Value + frames); }

    /// <summary>Equality on the raw value.</summary>
    public static bool operator ==(Pfn a, Pfn b) { return a.Value == b.Value; }

    /// <summary>Inequality on the raw value.</summary>
    public static bool operator !=(Pfn a, Pfn b) { return a.Value != b.Value; }

    /// <inheritdoc/>
    public override bool Equals(object? obj) { return obj is Pfn other && other.Value == Value; }

    /// <inheritdoc/>
    public override int GetHashCode() { return Value.GetHashCode(); }
}
