using System.Runtime.CompilerServices;
using Tandem.Mm;

namespace Tandem.Kvm.Ept;

/// <summary>A guest frame number: a guest-physical address divided by 4 KiB.</summary>
public readonly struct Gfn
{
    /// <summary>The raw frame number.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw guest frame number.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Gfn(ulong value) { Value = value; }

    /// <summary>The guest-physical address of the first byte of the frame.</summary>
    public GuestPhysAddr Address
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return new GuestPhysAddr(Value << PageSizes.Shift4K); }
    }
}
