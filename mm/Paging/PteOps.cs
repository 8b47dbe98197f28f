using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// The only code that reads or writes live page-table entries (compare KVM's tdp_iter.h helpers).
/// </summary>
/// <remarks>
/// When must an update be atomic? <see cref="NeedsAtomicUpdate"/>: whenever the old entry is a
/// present leaf, because the CPU sets A and D in it behind our back (SDM Vol. 3A, 4.8) and a plain
/// store could lose a D bit that was set between our read and our write.
/// </remarks>
public static unsafe class PteOps
{
    /// <summary>Reads an entry once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PageTableEntry Read(ulong* slot)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteRead, (ulong)slot);
#endif
        // Acquire read; pairs with the Volatile.Write/Interlocked of whoever wrote the entry, so a
        // table pointer read here sees the zeroed table written before it was installed.
        return new PageTableEntry(Volatile.Read(ref *slot));
    }

    /// <summary>Stores an entry that the CPU cannot be updating (old entry not a present leaf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Write(ulong* slot, PageTableEntry value)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteWrite, (ulong)slot);
#endif
        // Release store; pairs with Read above (table contents / frame contents are published
        // before the entry that makes them reachable).
        Volatile.Write(ref *slot, value.Raw);
    }

    /// <summary>Atomically replaces an entry and returns the old value (with any A/D the CPU set).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PageTableEntry Exchange(ulong* slot, PageTableEntry value)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteExchange, (ulong)slot);
#endif
        // Full barrier: orders the clear before the later TLB flush request and before the
        // notifier-list read (pairs with MmuNotifierList.Drain).
        return new PageTableEntry(Interlocked.Exchange(ref *slot, value.Raw));
    }

    /// <summary>Atomically replaces <paramref name="expected"/> with <paramref name="value"/>; returns true on success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool CompareExchange(ulong* slot, PageTableEntry expected, PageTableEntry value)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteCompareExchange, (ulong)slot);
#endif
        // Full barrier; fails if the CPU set A/D meanwhile, and the caller re-reads.
        return Interlocked.CompareExchange(ref *slot, value.Raw, expected.Raw) == expected.Raw;
    }

    /// <summary>Atomically clears bits and returns the old entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PageTableEntry ClearBits(ulong* slot, ulong bits)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteAnd, (ulong)slot);
#endif
        // Full barrier; the CPU's own A/D updates are atomic RMWs too (SDM Vol. 3A, 4.8).
        return new PageTableEntry(Interlocked.And(ref *slot, ~bits));
    }

    /// <summary>Atomically sets bits and returns the old entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PageTableEntry SetBits(ulong* slot, ulong bits)
    {
#if TANDEM_HOST_TESTS
        SharedAccess.Hook?.Invoke(SharedAccessKind.PteOr, (ulong)slot);
#endif
        // Full barrier; same pairing as ClearBits.
        return new PageTableEntry(Interlocked.Or(ref *slot, bits));
    }

    /// <summary>True when a change of <paramref name="old"/> must be an atomic RMW (the CPU may set A/D in it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool NeedsAtomicUpdate(PageTableEntry old, int level) { return old.IsLeaf(level); }
}
