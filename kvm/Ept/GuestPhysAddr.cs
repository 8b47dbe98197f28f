using System.Runtime.CompilerServices;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>A guest-physical address: what EPT translates. Distinct from host addresses.</summary>
public readonly struct GuestPhysAddr
{
    /// <summary>The raw address.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw guest-physical address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public GuestPhysAddr(ulong value) { Value = value; }

    /// <summary>The guest frame holding this address.</summary>
    public Gfn Gfn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return new Gfn(Value >> PageSizes.Shift4K); }
    }

    /// <summary>The 9-bit EPT table index at <paramref name="level"/> (4 = PML4 ... 1 = PT), SDM 29.3.2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int TableIndex(int level) { return (int)((Value >> (PageSizes.Shift4K + 9 * (level - 1))) & 511); }
}
