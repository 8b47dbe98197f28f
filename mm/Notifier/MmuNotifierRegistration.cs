using System.Threading;

namespace Tandem.Mm;

/// <summary>One registered notifier and the properties it declared.</summary>
public readonly struct MmuNotifierRegistration
{
    /// <summary>The notifier.</summary>
    public readonly IMmuNotifier Notifier;
    /// <summary>What it declared at registration.</summary>
    public readonly MmuNotifierFlags Flags;
    private readonly ReleaseClaim _claim;

    /// <summary>Creates a registration record.</summary>
    public MmuNotifierRegistration(IMmuNotifier notifier, MmuNotifierFlags flags)
    {
        Notifier = notifier;
        Flags = flags;
        _claim = new ReleaseClaim();
    }

    /// <summary>
    /// Claims the one call of <see cref="IMmuNotifier.Release"/> for this registration: true for
    /// exactly one caller (Unregister or the address space's ReleaseAll), false for every other.
    /// </summary>
    public bool Claim()
    {
        // Atomic: Unregister and ReleaseAll may race for the same registration.
        return Interlocked.Exchange(ref _claim.Taken, 1) == 0;
    }

    /// <summary>True once some caller claimed the Release of this registration.</summary>
    public bool Claimed
    {
        get { return Volatile.Read(ref _claim.Taken) != 0; }
    }

    private sealed class ReleaseClaim
    {
        public int Taken;
    }
}
