using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// A sleepable-RCU-style grace period (compare Linux's SRCU): readers mark a read-side section with
/// two atomic operations and never wait; <see cref="Synchronize{TPause}"/> returns once every
/// section that began before it has ended. Sections that begin later are not waited for, so a
/// writer cannot be starved by a steady stream of new readers.
/// </summary>
/// <remarks>
/// <para>Rules for using this: unpublish first (make the object unreachable for new readers), then
/// <see cref="Synchronize{TPause}"/>, then free. A reader reads the protected pointers only between
/// <see cref="ReadLock"/> and <see cref="ReadUnlock"/>, never waits for a synchronizer inside a
/// section, and may take spin locks inside a section.</para>
/// <para>How it works: two reader counters; <see cref="ReadLock"/> increments the one that
/// <c>_index</c> names. A synchronizer flips <c>_index</c> and waits for the counter it flipped away
/// from to drain, twice, so it has waited for each counter once after no new reader could choose it.
/// A reader that read the old index but incremented after the drain check is safe: its increment
/// is a full barrier that comes after the synchronizer's read of the counter, which comes after
/// the unpublish, so every pointer it then reads is already the new one.</para>
/// </remarks>
public sealed class GracePeriod
{
    // Every reader writes a counter (an atomic increment and decrement per section). The padding
    // keeps the counters off the cache lines of the objects allocated next to this one, which
    // other CPUs write on their own hot paths (an MMU lock taken on every fault, for one), so a
    // section costs two uncontended atomics. All fields are 8 bytes wide so that the runtime's
    // automatic layout keeps their declared order.
#pragma warning disable CS0169 // padding, never read
    private long _pad0, _pad1, _pad2, _pad3, _pad4, _pad5, _pad6, _pad7;
    private long _readers0;
    private long _readers1;
    private long _index;
    private long _synchronizing;
    private long _closed;
    private long _pad8, _pad9, _pad10, _pad11, _pad12, _pad13, _pad14, _pad15;
#pragma warning restore CS0169

    /// <summary>Begins a read-side section; pass the result to <see cref="ReadUnlock"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int ReadLock()
    {
        int index = (int)(Volatile.Read(ref _index) & 1);
        // Full barrier: the section's reads of protected pointers come after the increment; pairs
        // with the Interlocked.Exchange of _index and the counter reads in Synchronize.
        Interlocked.Increment(ref Readers(index));
        return index;
    }

    /// <summary>Ends the read-side section begun by <see cref="ReadLock"/> (same index).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ReadUnlock(int index)
    {
        // Release (full barrier): the section's reads happen before the synchronizer sees 0; pairs
        // with the Volatile.Read of the counter in Synchronize.
        Interlocked.Decrement(ref Readers(index));
    }

    /// <summary>
    /// True once <see cref="Close"/> ran: what the sections protect is gone, and a reader that sees
    /// this inside its section must not touch it. Kept on the counters' cache line, which a reader
    /// writes anyway, so the check costs no extra cache miss.
    /// </summary>
    public bool Closed
    {
        // Acquire; pairs with the Volatile.Write in Close.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get { return Volatile.Read(ref _closed) != 0; }
    }

    /// <summary>
    /// Marks the protected state gone (call before the <see cref="Synchronize{TPause}"/> that precedes
    /// freeing it). Release: everything the caller did before (zap, flush) is visible to a reader
    /// that sees <see cref="Closed"/>.
    /// </summary>
    public void Close()
    {
        Volatile.Write(ref _closed, 1L);
    }

    /// <summary>True while some read-side section is open (for assertions and tests).</summary>
    public bool HasReaders
    {
        get { return Volatile.Read(ref _readers0) != 0 || Volatile.Read(ref _readers1) != 0; }
    }

    /// <summary>
    /// Waits until every read-side section that began before this call has ended. Must not be
    /// called inside a section of the same grace period.
    /// </summary>
    public void Synchronize<TPause>(in TPause pause) where TPause : struct, ISpinPause
    {
        // One synchronizer at a time (the flips must not interleave). Acquire; pairs with the
        // Volatile.Write below.
        while (Interlocked.CompareExchange(ref _synchronizing, 1L, 0L) != 0)
            pause.SpinPause();
        for (int flip = 0; flip < 2; flip++)
        {
            long old = Volatile.Read(ref _index) & 1;
            // Full barrier: the caller's unpublish (before this call) and the flip are ordered
            // before the counter reads; pairs with the Interlocked.Increment in ReadLock.
            Interlocked.Exchange(ref _index, old ^ 1);
            while (Volatile.Read(ref Readers((int)old)) != 0)
                pause.SpinPause();
        }
        // Release; pairs with the CAS above of the next synchronizer.
        Volatile.Write(ref _synchronizing, 0L);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref long Readers(int index)
    {
        if (index == 0)
            return ref _readers0;
        return ref _readers1;
    }
}

/// <summary>The one thing a spin-wait needs from a platform: its pause hint.</summary>
public interface ISpinPause
{
    /// <summary>Spin-wait hint (PAUSE); called on every iteration of a contended spin.</summary>
    void SpinPause();
}
