using System.Runtime.CompilerServices;

namespace Tandem.Mm;

public sealed partial class MmuNotifierList<TPlatform>
{
    /// <summary>
    /// Fast-only aging of a span with a per-page answer (the aging walk and look-around: one call
    /// per last-level table). Asks only the notifiers registered with
    /// <see cref="MmuNotifierFlags.LocklessAging"/>: one <see cref="IBitmapAgingNotifier"/> call each
    /// where they implement it, else one <see cref="IMmuNotifier.TestClearYoungFastOnly"/> (clearing)
    /// per asked page. Bits of <paramref name="young"/> are only set. Never waits on a lock.
    /// <see cref="FastAgeResult.Complete"/> is false if some notifier was not asked: the caller
    /// must then count every asked page as young (invariant 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public unsafe FastAgeResult TestClearYoungFastOnlyBitmap(IAddressSpace space, VirtAddr start, int pages, ulong* ask, ulong* young)
    {
        MmuNotifierSet? set = Enter(out int section);
        if (set == null)
            return new FastAgeResult(false, true);
        bool any = false;
        MmuNotifierRegistration[] items = set.Items;
        for (int i = 0; i < items.Length; i++)
        {
            if ((items[i].Flags & MmuNotifierFlags.LocklessAging) == 0)
                continue;
            IBitmapAgingNotifier? bitmap = items[i].Notifier as IBitmapAgingNotifier;
            if (bitmap != null)
            {
                bitmap.TestClearYoungFastOnlyBitmap(space, start, pages, ask, young);
                continue;
            }
            for (int p = 0; p < pages; p++)
            {
                if ((ask[p >> 6] & (1UL << (p & 63))) == 0)
                    continue;
                VirtAddr va = start + (ulong)p * PageSizes.Size4K;
                if (items[i].Notifier.TestClearYoungFastOnly(space, va, va + PageSizes.Size4K, true))
                    young[p >> 6] |= 1UL << (p & 63);
            }
        }
        int words = (pages + 63) >> 6;
        for (int w = 0; w < words; w++)
            any |= (young[w] & ask[w]) != 0;
        bool complete = set.AllLockless;
        Exit(section);
        return new FastAgeResult(any, complete);
    }
}
