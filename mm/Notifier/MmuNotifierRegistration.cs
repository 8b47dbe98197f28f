namespace Tandem.Mm;

/// <summary>One registered notifier and the properties it declared.</summary>
public readonly struct MmuNotifierRegistration
{
    /// <summary>The notifier.</summary>
    public readonly IMmuNotifier Notifier;
    /// <summary>What it declared at registration.</summary>
    public readonly MmuNotifierFlags Flags;

    /// <summary>Creates a registration record.</summary>
    public MmuNotifierRegistration(IMmuNotifier notifier, MmuNotifierFlags flags)
    {
        Notifier = notifier;
        Flags = flags;
    }
}
