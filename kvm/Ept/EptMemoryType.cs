namespace Tandem.Kvm.Ept;

/// <summary>EPT memory types (Intel SDM Vol. 3C, 29.3.7.2; encodings of Table 12-8 / IA32_PAT).</summary>
public enum EptMemoryType
{
    /// <summary>Uncacheable.</summary>
    Uncacheable = 0,
    /// <summary>Write combining.</summary>
    WriteCombining = 1,
    /// <summary>Write through.</summary>
    WriteThrough = 4,
    /// <summary>Write protected.</summary>
    WriteProtected = 5,
    /// <summary>Write back (guest RAM).</summary>
    WriteBack = 6,
}
