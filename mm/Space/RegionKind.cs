namespace Tandem.Mm;

/// <summary>What backs a region.</summary>
public enum RegionKind
{
    /// <summary>Anonymous memory, zero-filled on first touch (or filled by a userfault handler).</summary>
    Anonymous,
    /// <summary>A fixed physical range (device or firmware memory): untracked, not refcounted.</summary>
    Fixed,
}
