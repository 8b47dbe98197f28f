namespace Tandem.Mm;

/// <summary>
/// An immutable snapshot of the notifiers of one address space. Replaced as a whole on every
/// (rare) registration change, so the hot paths read it with one Volatile.Read and no lock.
/// </summary>
public sealed class MmuNotifierSet
{
    /// <summary>The registrations, in registration order.</summary>
    public readonly MmuNotifierRegistration[] Items;
    /// <summary>Every item declared <see cref="MmuNotifierFlags.LocklessAging"/>.</summary>
    public readonly bool AllLockless;

    /// <summary>Creates a snapshot.</summary>
    public MmuNotifierSet(MmuNotifierRegistration[] items)
    {
        Items = items;
        bool all = true;
        for (int i = 0; i < items.Length; i++)
        {
            if ((items[i].Flags & MmuNotifierFlags.LocklessAging) == 0)
                all = false;
        }
        AllLockless = all;
    }

    /// <summary>Index of <paramref name="notifier"/> in <see cref="Items"/>, or -1.</summary>
    public int IndexOf(IMmuNotifier notifier)
    {
        for (int i = 0; i < Items.Length; i++)
        {
            if (Items[i].Notifier == notifier)
                return i;
        }
        return -1;
    }
}
