using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// Counters of page merging (compare /sys/kernel/mm/ksm). Updated with Interlocked; read as racy
/// snapshots. The sharing counts (pages shared, pages sharing) are not counters: they are computed
/// from the frame database by <see cref="MergeScanner{TPlatform}.CountSharing"/>.
/// </summary>
public sealed class MergeStats
{
    internal long _fullScans;
    internal long _pagesScanned;
    internal long _merges;
    internal long _zeroMerges;
    internal long _cowBreaks;
    internal long _abortedChanged;
    internal long _compareMismatches;
    internal long _stableFrames;

    /// <summary>Complete passes over every mergeable page.</summary>
    public long FullScans { get { return Volatile.Read(ref _fullScans); } }
    /// <summary>Mapped pages looked at (hashed).</summary>
    public long PagesScanned { get { return Volatile.Read(ref _pagesScanned); } }
    /// <summary>Pages merged into a shared frame (zero-page merges included).</summary>
    public long Merges { get { return Volatile.Read(ref _merges); } }
    /// <summary>Pages merged into the shared zero frame.</summary>
    public long ZeroMerges { get { return Volatile.Read(ref _zeroMerges); } }
    /// <summary>Writes that broke the sharing of one mapping (a private copy was made).</summary>
    public long CowBreaks { get { return Volatile.Read(ref _cowBreaks); } }
    /// <summary>Merges abandoned after the write-protect: the page changed (second compare, or
    /// the entry no longer mapped the write-protected frame), or its entry changed before it.</summary>
    public long AbortedChanged { get { return Volatile.Read(ref _abortedChanged); } }
    /// <summary>Equal hashes whose first byte-for-byte compare failed (collision or a change
    /// before the write-protect): nothing was write-protected.</summary>
    public long CompareMismatches { get { return Volatile.Read(ref _compareMismatches); } }
    /// <summary>Frames that became shared (promoted from a candidate).</summary>
    public long StableFrames { get { return Volatile.Read(ref _stableFrames); } }

    internal static void Add(ref long counter, long value)
    {
        // Atomic: counters are bumped from several CPUs (scanner and faulting threads).
        Interlocked.Add(ref counter, value);
    }
}
