namespace Tandem.Mm;

/// <summary>Properties a notifier declares once, at registration.</summary>
public enum MmuNotifierFlags
{
    /// <summary>No special properties.</summary>
    None = 0,
    /// <summary>
    /// The notifier implements <see cref="IMmuNotifier.TestClearYoungFastOnly"/> without taking or
    /// trying any lock (seed 001: being fast is a property of the MMU, never of the moment).
    /// Without this flag the fast-only aging call is never made to it.
    /// </summary>
    LocklessAging = 1,
}
