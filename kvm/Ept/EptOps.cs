using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Kvm.Ept;

/// <summary>
/// The only code that reads or changes live EPT entries (compare KVM's <c>tdp_iter.h</c> /
/// <c>spte.h</c> helpers). Everything else works on <see cref="EptEntry"/> values.
/// </summary>
/// <remarks>
/// When must an update be atomic? <see cref="MustUpdateAtomically"/>: whenever the old entry is
/// present, because the CPU sets the accessed bit (every entry it walks) and the dirty bit (leaves)
/// with locked read-modify-writes of its own (SDM Vol. 3C, 29.3.5); a plain store could lose a dirty
/// bit set between our read and our write, and then a modified page would be dropped as clean.
/// </remarks>
public static unsafe class EptOps
{
    /// <summary>The CPU may be updating a present entry: change it only with an atomic operation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool MustUpdateAtomically(EptEntry old) { return old.IsPresent; }

    /// <summary>Reads an entry once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static EptEntry Read(ulong* slot)
    {
#if TANDEM_HOST_TESTS
        Tandem.Mm.SharedAccess.Hook?.Invoke(Tandem.Mm.SharedAccessKind.EptRead, (ulong)slot);
#endif
        // Acquire; pairs with the Interlocked in Exchange/CompareExchange below (a table pointer
        // read here sees the zeroed table that was written before it was installed) and with the
        // CPU's locked A/D updates.
        return new EptEntry(Volatile.Read(ref *slot));
    }

    /// <summary>Atomically replaces an entry; returns the old value with any A/D bits the CPU set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static EptEntry Exchange(ulong* slot, EptEntry value)
    {
#if TANDEM_HOST_TESTS
        Tandem.Mm.SharedAccess.Hook?.Invoke(Tandem.Mm.SharedAccessKind.EptExchange, (ulong)slot);
#endif
        // Full barrier. As a zap: pairs with the CPU's A/D RMW (we get the final D bit) and orders
        // the clear before the INVEPT that follows. As an install: publishes the frame/table
        // contents before the entry (pairs with Read above and with the CPU's walk).
        return new EptEntry(Interlocked.Exchange(ref *slot, value.Value));
    }

    /// <summary>Replaces <paramref name="expected"/> with <paramref name="value"/>; returns the value found.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static EptEntry CompareExchange(ulong* slot, EptEntry value, EptEntry expected)
    {
#if TANDEM_HOST_TESTS
        Tandem.Mm.SharedAccess.Hook?.Invoke(Tandem.Mm.SharedAccessKind.EptCompareExchange, (ulong)slot);
#endif
        // Full barrier; fails if the CPU set A/D or a zapper cleared the entry since the caller's
        // Read (pairs with the CPU's A/D RMW and with Exchange in the zap path).
        return new EptEntry(Interlocked.CompareExchange(ref *slot, value.Value, expected.Value));
    }
}
